package store_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// Three changes of one key, each to a different field, run at once: every one is kept. The
// change function pauses between the read and the write, so without a row lock (PostgreSQL) or
// a write lock taken at BEGIN (SQLite) the three would read the same row and two would be lost
// (PostgreSQL) or fail with "database is locked" (SQLite).
func TestUpdateAPIKeyConcurrentFieldsAllKept(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "rmw")
		must(t, err)
		k, err := st.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{})
		must(t, err)
		desc := "described"
		changes := []func(k *store.APIKey){
			func(k *store.APIKey) { k.Name = "renamed" },
			func(k *store.APIKey) { k.Description = &desc },
			func(k *store.APIKey) { k.Origins = store.StringList{"example.com"} },
		}
		var wg sync.WaitGroup
		errs := make([]error, len(changes))
		for i, change := range changes {
			wg.Go(func() {
				_, errs[i] = st.UpdateAPIKey(ctx, acct.AccountID, k.ID, func(k *store.APIKey) (bool, error) {
					time.Sleep(50 * time.Millisecond)
					change(k)
					return false, nil
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("change %d: %v", i, err)
			}
		}
		got, err := st.GetAPIKey(ctx, acct.AccountID, k.ID)
		must(t, err)
		if got.Name != "renamed" || got.Description == nil || *got.Description != desc || len(got.Origins) != 1 || got.Origins[0] != "example.com" {
			t.Errorf("lost update: name %q description %v origins %v", got.Name, got.Description, got.Origins)
		}
	})
}

// A change that read the key before a delete committed must not report success for a key the
// delete removed: either the change commits first (the delete waits for it) or it is ErrNotFound.
func TestUpdateAPIKeyRacingDelete(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "race")
		must(t, err)
		k, err := st.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{})
		must(t, err)
		var deleted atomic.Bool
		var deleteErr error
		var wg sync.WaitGroup
		var deletedBeforeCommit bool
		_, err = st.UpdateAPIKey(ctx, acct.AccountID, k.ID, func(k *store.APIKey) (bool, error) {
			wg.Go(func() {
				deleteErr = st.DeleteAPIKey(ctx, acct.AccountID, k.ID)
				deleted.Store(true)
			})
			// Long enough for an unhindered delete to commit.
			time.Sleep(300 * time.Millisecond)
			deletedBeforeCommit = deleted.Load()
			k.Name = "changed"
			return false, nil
		})
		wg.Wait()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("change: %v", err)
		}
		if err == nil && deletedBeforeCommit {
			t.Error("the change reported success although the key was deleted while it ran")
		}
		must(t, deleteErr)
		if _, err := st.GetAPIKey(ctx, acct.AccountID, k.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after delete: %v", err)
		}
		// A change of a key already deleted is ErrNotFound.
		if _, err := st.UpdateAPIKey(ctx, acct.AccountID, k.ID, func(*store.APIKey) (bool, error) { return false, nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("change of a deleted key: %v", err)
		}
	})
}

// Dataset changes share the mechanism: concurrent changes to different fields are all kept.
func TestUpdateDatasetConcurrentFieldsAllKept(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "ds-rmw")
		must(t, err)
		d, err := st.CreateDataset(ctx, store.Dataset{AccountID: acct.AccountID, Name: "d", Kind: "vector", Visibility: store.Private, Format: "pbf", MaxZoom: 14})
		must(t, err)
		attr := "© someone"
		changes := []func(d *store.Dataset){
			func(d *store.Dataset) { d.Name = "renamed" },
			func(d *store.Dataset) { d.Attribution = &attr },
			func(d *store.Dataset) { d.MinZoom = 3 },
		}
		var wg sync.WaitGroup
		errs := make([]error, len(changes))
		for i, change := range changes {
			wg.Go(func() {
				_, errs[i] = st.UpdateDataset(ctx, acct.AccountID, d.ID, func(d *store.Dataset) (bool, error) {
					time.Sleep(50 * time.Millisecond)
					change(d)
					return false, nil
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("change %d: %v", i, err)
			}
		}
		got, err := st.DatasetAccessOne(ctx, store.Caller{AccountID: acct.AccountID}, d.ID)
		must(t, err)
		if got.Name != "renamed" || got.Attribution == nil || *got.Attribution != attr || got.MinZoom != 3 {
			t.Errorf("lost update: %+v", got.Dataset)
		}
	})
}

// concurrentWrites sets how many keys each writer of TestConcurrentWritersNoErrors creates; raise
// it to measure (-concurrent-writes 200 is 1,600 creates).
var concurrentWrites = flag.Int("concurrent-writes", 40, "keys each of the 8 writers creates")

// The embedded default takes concurrent writers: 8 goroutines create keys and change keys
// while others delete them, and a reader pages through the account meanwhile. Nothing fails,
// and every acknowledged write is there afterwards.
func TestConcurrentWritersNoErrors(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "writers")
		must(t, err)
		const writers = 8
		perWriter := *concurrentWrites
		start := time.Now()
		var (
			mu       sync.Mutex
			errs     []error
			created  = map[uuid.UUID]bool{}
			deleted  = map[uuid.UUID]bool{}
			failures atomic.Int64
			creates  atomic.Int64
		)
		fail := func(err error) {
			failures.Add(1)
			mu.Lock()
			defer mu.Unlock()
			if len(errs) < 5 {
				errs = append(errs, err)
			}
		}
		stop := make(chan struct{})
		var pager sync.WaitGroup
		pager.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var cur *store.Cursor
				for {
					page, err := st.ListAPIKeys(ctx, acct.AccountID, cur, 10)
					if err != nil {
						fail(fmt.Errorf("page: %w", err))
						return
					}
					if page.Next == nil {
						break
					}
					cur = page.Next
				}
			}
		})
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					creates.Add(1)
					k, err := st.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{})
					if err != nil {
						fail(fmt.Errorf("create: %w", err))
						continue
					}
					mu.Lock()
					created[k.ID] = true
					mu.Unlock()
					if w%2 == 0 || i%4 != 0 {
						continue
					}
					// Change racing a delete of the same key.
					name := fmt.Sprintf("w%d-%d", w, i)
					var inner sync.WaitGroup
					var changeErr, deleteErr error
					inner.Go(func() {
						_, changeErr = st.UpdateAPIKey(ctx, acct.AccountID, k.ID, func(k *store.APIKey) (bool, error) { k.Name = name; return false, nil })
					})
					inner.Go(func() { deleteErr = st.DeleteAPIKey(ctx, acct.AccountID, k.ID) })
					inner.Wait()
					if changeErr != nil && !errors.Is(changeErr, store.ErrNotFound) {
						fail(fmt.Errorf("change: %w", changeErr))
					}
					if deleteErr != nil {
						fail(fmt.Errorf("delete: %w", deleteErr))
						continue
					}
					mu.Lock()
					deleted[k.ID] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(stop)
		pager.Wait()
		t.Logf("%d writers, %d creates, %d change/delete races acknowledged, %d failed operations, %s",
			writers, creates.Load(), len(deleted), failures.Load(), time.Since(start).Round(time.Millisecond))
		if n := failures.Load(); n > 0 {
			t.Fatalf("%d operations failed, e.g. %v", n, errs)
		}
		all := map[uuid.UUID]bool{}
		var cur *store.Cursor
		for {
			page, err := st.ListAPIKeys(ctx, acct.AccountID, cur, 100)
			must(t, err)
			for _, k := range page.Items {
				all[k.ID] = true
			}
			if page.Next == nil {
				break
			}
			cur = page.Next
		}
		for id := range created {
			if all[id] == deleted[id] {
				t.Errorf("key %s: present %v, deleted %v", id, all[id], deleted[id])
			}
		}
		if len(all) != len(created)-len(deleted) {
			t.Errorf("%d keys stored, want %d", len(all), len(created)-len(deleted))
		}
	})
}

// Writing a key's dataset_ids races deleting a dataset it names, in both orders, many times:
// neither deadlocks (the lock order is key row, then scope rows; a delete never locks keys),
// and whatever commits, no key is left naming a deleted dataset.
func TestKeyScopeRacingDatasetDelete(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "scope")
		must(t, err)
		keep, err := st.CreateDataset(ctx, store.Dataset{AccountID: acct.AccountID, Name: "keep", Kind: "vector", Visibility: store.Private, Format: "pbf"})
		must(t, err)
		keys := make([]store.APIKey, 4)
		for i := range keys {
			keys[i], err = st.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{Enabled: true})
			must(t, err)
		}
		for round := range 15 {
			d, err := st.CreateDataset(ctx, store.Dataset{AccountID: acct.AccountID, Name: fmt.Sprint("gone", round), Kind: "vector", Visibility: store.Private, Format: "pbf"})
			must(t, err)
			// One key already names it (the delete's cascade must find it), the others are
			// being changed to name it while it is deleted.
			_, err = st.UpdateAPIKey(ctx, acct.AccountID, keys[0].ID, func(k *store.APIKey) (bool, error) {
				k.DatasetIDs = []uuid.UUID{keep.ID, d.ID}
				return false, nil
			})
			must(t, err)
			var wg sync.WaitGroup
			errs := make([]error, len(keys))
			// The key that names it is rewritten too (its scope rows are what the delete's
			// cascade must lock).
			wg.Go(func() {
				_, errs[0] = st.UpdateAPIKey(ctx, acct.AccountID, keys[0].ID, func(k *store.APIKey) (bool, error) {
					k.DatasetIDs = []uuid.UUID{d.ID}
					return false, nil
				})
			})
			for i := 1; i < len(keys); i++ {
				wg.Go(func() {
					_, errs[i] = st.UpdateAPIKey(ctx, acct.AccountID, keys[i].ID, func(k *store.APIKey) (bool, error) {
						k.DatasetIDs = []uuid.UUID{d.ID, keep.ID}
						return false, nil
					})
				})
			}
			var delErr error
			wg.Go(func() { _, delErr = st.DeleteDataset(ctx, acct.AccountID, d.ID) })
			wg.Wait()
			must(t, delErr)
			for i, err := range errs {
				var de *store.InvalidDatasetError
				if err != nil && !(errors.As(err, &de) && de.Index == 0) {
					t.Fatalf("round %d key %d: %v", round, i, err)
				}
			}
			for _, k := range keys {
				got, err := st.GetAPIKey(ctx, acct.AccountID, k.ID)
				must(t, err)
				for _, id := range got.DatasetIDs {
					if id == d.ID {
						t.Fatalf("round %d: key %s still names the deleted dataset", round, k.ID)
					}
				}
			}
		}
	})
}
