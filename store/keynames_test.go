package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// names returns a name source that yields the given names in turn, then fresh unique ones.
func names(first ...string) func() (string, error) {
	var mu sync.Mutex
	var n int
	return func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n <= len(first) {
			return first[n-1], nil
		}
		return fmt.Sprintf("fresh-name-%d-%s", n, uuid.NewString()[:8]), nil
	}
}

func createKey(t *testing.T, st *store.Store, account uuid.UUID, name *string) store.APIKey {
	t.Helper()
	k, err := st.CreateAPIKey(context.Background(), account, name, store.APIKey{Enabled: true})
	must(t, err)
	return k
}

func ptr[T any](v T) *T { return &v }

// A generated name never repeats a name of the account, chosen or generated; chosen names may
// repeat (as they always could); running out of tries is ErrConflict, not a duplicate.
func TestGeneratedKeyNamesAreUnique(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		acct, err := db.Store.CreateAccount(ctx, "names")
		must(t, err)
		other, err := db.Store.CreateAccount(ctx, "other")
		must(t, err)

		defer store.SetNameSource(names("amber-atlas-1000", "amber-atlas-1000", "bold-bay-2000", "amber-atlas-1001", "amber-atlas-1000"))()
		a := createKey(t, db.Store, acct.AccountID, nil)
		chosen := createKey(t, db.Store, acct.AccountID, ptr("bold-bay-2000"))
		b := createKey(t, db.Store, acct.AccountID, nil) // draws amber-atlas-1000 (taken), bold-bay-2000 (chosen), 1001
		if a.Name != "amber-atlas-1000" || !a.NameGenerated || b.Name != "amber-atlas-1001" || !b.NameGenerated || chosen.NameGenerated {
			t.Fatalf("names %q (%v), %q (%v), chosen %q (%v)", a.Name, a.NameGenerated, b.Name, b.NameGenerated, chosen.Name, chosen.NameGenerated)
		}
		// Another account may hold the same generated name.
		if c := createKey(t, db.Store, other.AccountID, nil); c.Name != "amber-atlas-1000" {
			t.Errorf("other account got %q", c.Name)
		}
		// A chosen name may repeat, even a generated one.
		createKey(t, db.Store, acct.AccountID, ptr("amber-atlas-1000"))
		createKey(t, db.Store, acct.AccountID, ptr("amber-atlas-1000"))

		// Regenerating a name (change_settings with name null) follows the same rules.
		restore := store.SetNameSource(names("amber-atlas-1001", "calm-cape-3000"))
		got, err := db.Store.UpdateAPIKey(ctx, acct.AccountID, chosen.ID, func(*store.APIKey) (bool, error) { return true, nil })
		restore()
		must(t, err)
		if got.Name != "calm-cape-3000" || !got.NameGenerated {
			t.Errorf("regenerated %q (%v)", got.Name, got.NameGenerated)
		}
		// A chosen name replaces the mark.
		got, err = db.Store.UpdateAPIKey(ctx, acct.AccountID, chosen.ID, func(k *store.APIKey) (bool, error) { k.Name = "mine"; return false, nil })
		must(t, err)
		if reread, err := db.Store.GetAPIKey(ctx, acct.AccountID, chosen.ID); err != nil || reread.Name != "mine" || reread.NameGenerated {
			t.Errorf("renamed: %+v %v", reread, err)
		}

		defer store.SetNameSource(func() (string, error) { return "amber-atlas-1000", nil })()
		if _, err := db.Store.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("every try taken: %v, want ErrConflict", err)
		}
	})
}

// The unique index settles a race the lookup cannot see: a create whose name another,
// uncommitted transaction has just inserted waits for it, then draws again.
func TestGeneratedKeyNameRacingUncommittedInsert(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		acct, err := db.Store.CreateAccount(ctx, "race")
		must(t, err)
		tx := db.Store.DB().Begin()
		must(t, tx.Error)
		now := store.Now()
		rival := store.APIKey{ID: uuid.New(), AccountID: acct.AccountID, Token: uuid.NewString(), Name: "rosy-reef-4242",
			NameGenerated: true, Created: now, Changed: now, Origins: store.StringList{}, Enabled: true}
		if err := tx.Omit("DatasetIDs").Create(&rival).Error; err != nil {
			tx.Rollback()
			t.Fatal(err)
		}
		defer store.SetNameSource(names("rosy-reef-4242"))()
		done := make(chan store.APIKey, 1)
		errs := make(chan error, 1)
		go func() {
			k, err := db.Store.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{Enabled: true})
			errs <- err
			done <- k
		}()
		time.Sleep(300 * time.Millisecond) // let the create reach its insert (it then waits for tx)
		must(t, tx.Commit().Error)
		must(t, <-errs)
		if k := <-done; k.Name == rival.Name {
			t.Fatalf("two keys of the account named %q", k.Name)
		}
		var n int64
		must(t, db.Store.DB().Model(&store.APIKey{}).Where("account_id = ? AND name = ?", acct.AccountID, rival.Name).Count(&n).Error)
		if n != 1 {
			t.Errorf("%d keys named %q", n, rival.Name)
		}
	})
}

// Concurrent creates that all draw the same first name end with distinct names and no error.
func TestGeneratedKeyNamesConcurrent(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		acct, err := db.Store.CreateAccount(ctx, "concurrent")
		must(t, err)
		const writers = 8
		same := make([]string, writers)
		for i := range same {
			same[i] = "swift-harbor-4821"
		}
		defer store.SetNameSource(names(same...))()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := db.Store.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{Enabled: true}); err != nil {
					t.Error(err)
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		var rows []struct {
			Name string
			N    int
		}
		must(t, db.Store.DB().Raw("SELECT name, count(*) AS n FROM api_keys WHERE account_id = ? GROUP BY name", acct.AccountID.String()).Scan(&rows).Error)
		if len(rows) != writers-int(failed.Load()) {
			t.Errorf("%d distinct names for %d keys", len(rows), writers)
		}
		for _, r := range rows {
			if r.N != 1 {
				t.Errorf("%d keys named %q", r.N, r.Name)
			}
		}
	})
}

// freshStores opens a new, empty database of each dialect (not migrated).
func freshStores(t *testing.T) map[string]*store.Store {
	t.Helper()
	ctx := context.Background()
	out := map[string]*store.Store{}
	for _, d := range testenv.Databases() {
		url := "sqlite:" + filepath.Join(t.TempDir(), "fresh.db")
		if d.Name == "postgres" {
			pg, err := scratchdb.Create(ctx, scratchdb.BaseURL(), "tilegate_test_fresh")
			must(t, err)
			t.Cleanup(func() {
				if err := pg.Drop(); err != nil {
					fmt.Fprintln(os.Stderr, err)
				}
			})
			url = pg.URL
		}
		st, err := store.Open(ctx, url, store.Options{})
		must(t, err)
		t.Cleanup(func() { _ = st.Close() })
		out[d.Name] = st
	}
	return out
}

// A database from before the name index, whose account holds the same generated name twice,
// migrates: both keys keep their names, and new generated names avoid them.
func TestMigrateKeepsDuplicateGeneratedNames(t *testing.T) {
	for name, st := range freshStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			must(t, st.MigrateTo(ctx, 4))
			acct, err := st.CreateAccount(ctx, "old")
			must(t, err)
			now := store.Now()
			var dups []uuid.UUID
			for i := range 3 {
				id := uuid.New()
				name := "misty-mesa-7777"
				if i == 2 {
					name = "quiet-reef-1234"
				}
				must(t, st.DB().Exec(`INSERT INTO api_keys (id, account_id, token, name, origins, created, changed)
					VALUES (?, ?, ?, ?, '[]', ?, ?)`, id.String(), acct.AccountID.String(), uuid.NewString(), name, now, now).Error)
				dups = append(dups, id)
			}
			must(t, st.Migrate(ctx))
			for i, id := range dups[:2] {
				k, err := st.GetAPIKey(ctx, acct.AccountID, id)
				must(t, err)
				if k.Name != "misty-mesa-7777" || k.NameGenerated {
					t.Errorf("duplicate %d after migration: %q generated=%v", i, k.Name, k.NameGenerated)
				}
			}
			defer store.SetNameSource(names("misty-mesa-7777", "quiet-reef-1234", "misty-mesa-7778"))()
			if k := createKey(t, st, acct.AccountID, nil); k.Name != "misty-mesa-7778" {
				t.Errorf("new key named %q", k.Name)
			}
		})
	}
}

// The key page's hand-written scan reads every field as GORM's does (GetAPIKey): a key with
// every setting, a scope and a rotated token lists exactly as it reads.
func TestKeyPageScansEveryField(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		acct, err := db.Store.CreateAccount(ctx, "fields")
		must(t, err)
		d, err := db.Store.CreateDataset(ctx, store.Dataset{AccountID: acct.AccountID, Name: "d", Kind: "vector", Visibility: store.Private, Format: "pbf", MaxZoom: 14})
		must(t, err)
		exp := store.Now().Add(time.Hour)
		ranges := store.StringList{"10.0.0.0/8"}
		k, err := db.Store.CreateAPIKey(ctx, acct.AccountID, ptr("full"), store.APIKey{Enabled: false, Description: ptr("desc"),
			UserAgent: ptr("ua"), Origins: store.StringList{"example.com"}, ExpiresAt: &exp, DatasetIDs: []uuid.UUID{d.ID},
			IPRanges: &ranges, RateLimitRPS: ptr(5), RateLimitBurst: ptr(10), MonthlyQuota: ptr(int64(1000))})
		must(t, err)
		_, err = db.Store.RotateAPIKey(ctx, acct.AccountID, k.ID, time.Hour)
		must(t, err)
		createKey(t, db.Store, acct.AccountID, nil) // a plain one too
		page, err := db.Store.ListAPIKeys(ctx, acct.AccountID, nil, 10)
		must(t, err)
		if len(page.Items) != 2 {
			t.Fatalf("%d keys", len(page.Items))
		}
		for _, listed := range page.Items {
			got, err := db.Store.GetAPIKey(ctx, acct.AccountID, listed.ID)
			must(t, err)
			if !reflect.DeepEqual(listed, got) {
				t.Errorf("listed %+v\nread   %+v", listed, got)
			}
		}
	})
}
