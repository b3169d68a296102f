package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/servicetoken"
	"github.com/tilegate/tilegate/store"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseURL(t *testing.T) {
	cases := map[string]struct {
		dialect store.Dialect
		dsn     string
	}{
		"":                         {store.SQLite, store.DefaultSQLitePath},
		"postgres://u@h/db":        {store.Postgres, "postgres://u@h/db"},
		"postgresql://u@h/db?x=1":  {store.Postgres, "postgresql://u@h/db?x=1"},
		"POSTGRES://u@h/db":        {store.Postgres, "postgres://u@h/db"},
		"sqlite:/var/lib/tg.db":    {store.SQLite, "/var/lib/tg.db"},
		"sqlite:///var/lib/tg.db":  {store.SQLite, "/var/lib/tg.db"},
		"sqlite:tg.db":             {store.SQLite, "tg.db"},
		"./relative/path/tilegate": {store.SQLite, "./relative/path/tilegate"},
		"./a:b.db":                 {store.SQLite, "./a:b.db"},
		`C:\data\tilegate.db`:      {store.SQLite, `C:\data\tilegate.db`},
	}
	for in, want := range cases {
		d, dsn, err := store.ParseURL(in)
		if err != nil || d != want.dialect || dsn != want.dsn {
			t.Errorf("ParseURL(%q) = %s %q %v, want %s %q", in, d, dsn, err, want.dialect, want.dsn)
		}
	}
	// Unknown schemes are refused, named, and the URL (its password) is never repeated.
	for in, want := range map[string]string{
		"postgress://u:hunter2@h/db": `scheme "postgress"`,
		"mysql://u:hunter2@h/db":     `scheme "mysql"`,
		"file:tg.db":                 `scheme "file"`,
		"postgres:hunter2":           "postgres://user@host",
		"sqlite:":                    "names no file",
	} {
		_, _, err := store.ParseURL(in)
		if !errors.Is(err, store.ErrDatabaseURL) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q): %v, want ErrDatabaseURL mentioning %s", in, err, want)
		}
	}
}

func TestLocation(t *testing.T) {
	wd, err := os.Getwd()
	must(t, err)
	for in, want := range map[string]string{
		"":                      "sqlite:" + filepath.Join(wd, store.DefaultSQLitePath),
		"sqlite:x/t.db":         "sqlite:" + filepath.Join(wd, "x/t.db"),
		"sqlite:/var/lib/tg.db": "sqlite:/var/lib/tg.db",
		"postgres://u:hunter2@db.example:6543/tg": "postgres://db.example:6543/tg",
		"postgresql://u@[::1]/tg?sslmode=disable": "postgres://[::1]:5432/tg",
	} {
		got, err := store.Location(in)
		if err != nil || got != want {
			t.Errorf("Location(%q) = %q %v, want %q", in, got, err, want)
		}
	}
}

// TestOpenMustExist: a SQLite file that is not there is refused and not created.
func TestOpenMustExist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "none.db")
	_, err := store.Open(context.Background(), "sqlite:"+path, store.Options{MustExist: true})
	if !errors.Is(err, store.ErrNoDatabase) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(MustExist) of a missing file: %v, want ErrNoDatabase naming %s", err, path)
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused open created %s (%v)", filepath.Dir(path), err)
	}
	_, err = store.Open(context.Background(), "mysql://u@h/db", store.Options{})
	if !errors.Is(err, store.ErrDatabaseURL) {
		t.Errorf("Open(mysql://): %v, want ErrDatabaseURL", err)
	}
}

func TestCursorRoundTripAndRejects(t *testing.T) {
	c := store.Cursor{Created: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC), ID: uuid.New()}
	got, err := store.DecodeCursor(c.Encode())
	must(t, err)
	if !got.Created.Equal(c.Created) || got.ID != c.ID {
		t.Errorf("round trip: %+v != %+v", got, c)
	}
	for _, bad := range []string{"", "!!!", "bm9wZQ", "MTIzLm5vdC1hLXV1aWQ", "LTEuMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw"} {
		if _, err := store.DecodeCursor(bad); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		must(t, db.Store.Migrate(context.Background()))
		must(t, db.Store.Migrate(context.Background()))
	})
}

func TestServiceTokenLookup(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		issued, err := db.Store.CreateAccount(ctx, "acme")
		must(t, err)
		lookupID, hash, err := servicetoken.Parse(issued.Token)
		must(t, err)
		cred, err := db.Store.LookupCredential(ctx, lookupID)
		must(t, err)
		if cred.AccountID != issued.AccountID || cred.PrincipalID != issued.PrincipalID || cred.Role != store.RoleAdmin || cred.Revoked {
			t.Errorf("credential %+v for %+v", cred, issued)
		}
		if !servicetoken.Equal(cred.SecretHash, hash) {
			t.Error("stored hash differs from the token's")
		}
		if _, err := db.Store.LookupCredential(ctx, "aaaaaaaaaaaaaaaa"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
		n, err := db.Store.RevokePrincipalTokens(ctx, issued.PrincipalID)
		must(t, err)
		cred, err = db.Store.LookupCredential(ctx, lookupID)
		must(t, err)
		if n != 1 || !cred.Revoked {
			t.Errorf("after revoke: n=%d revoked=%v", n, cred.Revoked)
		}
		if _, err := db.Store.CreatePrincipal(ctx, uuid.New(), store.RoleViewer, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("principal in a missing account: %v", err)
		}
		if _, err := db.Store.CreatePrincipal(ctx, issued.AccountID, "owner", "x"); err == nil {
			t.Error("unknown role accepted")
		}
		// The token itself is nowhere in the database, only its hash.
		var count int64
		must(t, db.Store.DB().Raw("SELECT COUNT(*) FROM service_tokens WHERE lookup_id = ? AND secret_hash = ?", lookupID, []byte(issued.Token)).Scan(&count).Error)
		if count != 0 {
			t.Error("the plain token is stored")
		}
	})
}

// The access predicates of DESIGN.md, evaluated on rows the one statement returns.
func TestDatasetAccessRules(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		owner, err := st.CreateAccount(ctx, "owner")
		must(t, err)
		viewer, err := st.CreatePrincipal(ctx, owner.AccountID, store.RoleViewer, "v")
		must(t, err)
		editor, err := st.CreatePrincipal(ctx, owner.AccountID, store.RoleEditor, "e")
		must(t, err)
		partner, err := st.CreateAccount(ctx, "partner")
		must(t, err)
		stranger, err := st.CreateAccount(ctx, "stranger")
		must(t, err)
		mk := func(vis string) store.Dataset {
			d, err := st.CreateDataset(ctx, store.Dataset{AccountID: owner.AccountID, Name: vis, Kind: "vector", Visibility: vis, Format: "pbf", MaxZoom: 14})
			must(t, err)
			return d
		}
		private, restricted, public, shared := mk(store.Private), mk(store.Restricted), mk(store.Public), mk(store.Private)
		_, err = st.CreateGrant(ctx, owner.AccountID, shared.ID, &partner.AccountID, nil)
		must(t, err)
		_, err = st.CreateGrant(ctx, owner.AccountID, restricted.ID, nil, &viewer.PrincipalID)
		must(t, err)
		if _, err := st.CreateGrant(ctx, owner.AccountID, shared.ID, &partner.AccountID, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate grant: %v", err)
		}
		if _, err := st.CreateGrant(ctx, owner.AccountID, shared.ID, nil, &partner.PrincipalID); !errors.Is(err, store.ErrGrantTarget) {
			t.Errorf("grant to another account's principal: %v", err)
		}

		callers := map[string]store.Caller{
			"admin":    {AccountID: owner.AccountID, PrincipalID: owner.PrincipalID, Role: store.RoleAdmin},
			"editor":   {AccountID: owner.AccountID, PrincipalID: editor.PrincipalID, Role: store.RoleEditor},
			"viewer":   {AccountID: owner.AccountID, PrincipalID: viewer.PrincipalID, Role: store.RoleViewer},
			"partner":  {AccountID: partner.AccountID, PrincipalID: partner.PrincipalID, Role: store.RoleAdmin},
			"stranger": {AccountID: stranger.AccountID, PrincipalID: stranger.PrincipalID, Role: store.RoleAdmin},
		}
		ids := []uuid.UUID{private.ID, restricted.ID, public.ID, shared.ID, uuid.New()}
		// sees/may use per caller for private, restricted, public, shared.
		want := map[string]string{
			"admin":    "SU SU SU SU",
			"editor":   "SU S- SU SU",
			"viewer":   "SU SU SU SU",
			"partner":  "-- -- SU SU",
			"stranger": "-- -- SU --",
		}
		for name, c := range callers {
			before := db.Statements.Load()
			got, err := st.DatasetsAccess(ctx, c, ids)
			must(t, err)
			if n := db.Statements.Load() - before; n != 1 {
				t.Errorf("%s: %d statements", name, n)
			}
			if len(got) != 4 {
				t.Fatalf("%s: %d rows, want 4 (the missing id absent)", name, len(got))
			}
			var s string
			for i, id := range ids[:4] {
				if i > 0 {
					s += " "
				}
				a := got[id]
				s += map[bool]string{true: "S", false: "-"}[a.Sees(c)] + map[bool]string{true: "U", false: "-"}[a.MayUse(c)]
			}
			if s != want[name] {
				t.Errorf("%s: %s, want %s", name, s, want[name])
			}
		}
	})
}

func TestAccessVersionBumps(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		a, err := st.CreateAccount(ctx, "a")
		must(t, err)
		b, err := st.CreateAccount(ctx, "b")
		must(t, err)
		d, err := st.CreateDataset(ctx, store.Dataset{AccountID: a.AccountID, Name: "d", Kind: "vector", Visibility: store.Private, Format: "pbf"})
		must(t, err)
		version := func() int64 {
			got, err := st.DatasetAccessOne(ctx, store.Caller{AccountID: a.AccountID}, d.ID)
			must(t, err)
			return got.AccessVersion
		}
		g, err := st.CreateGrant(ctx, a.AccountID, d.ID, &b.AccountID, nil)
		must(t, err)
		if v := version(); v != 2 {
			t.Errorf("after grant: %d", v)
		}
		must(t, st.DeleteGrant(ctx, d.ID, g.ID))
		if v := version(); v != 3 {
			t.Errorf("after revoke: %d", v)
		}
		if err := st.DeleteGrant(ctx, d.ID, g.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second revoke: %v", err)
		}
		_, err = st.UpdateDataset(ctx, a.AccountID, d.ID, func(d *store.Dataset) (bool, error) { d.Name = "renamed"; return false, nil })
		must(t, err)
		if v := version(); v != 3 {
			t.Errorf("rename bumped: %d", v)
		}
		boom := errors.New("boom")
		if _, err := st.UpdateDataset(ctx, a.AccountID, d.ID, func(d *store.Dataset) (bool, error) { d.Name = "lost"; return true, boom }); !errors.Is(err, boom) {
			t.Errorf("failed change: %v", err)
		}
		got, _ := st.DatasetAccessOne(ctx, store.Caller{AccountID: a.AccountID}, d.ID)
		if got.Name != "renamed" || got.AccessVersion != 3 {
			t.Errorf("a failed change was applied: %+v", got.Dataset)
		}
		if _, err := st.UpdateDataset(ctx, b.AccountID, d.ID, func(*store.Dataset) (bool, error) { return true, nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("another account updated it: %v", err)
		}
	})
}

// Replicas starting together agree on one generated setting.
func TestGetOrCreateSettingConcurrently(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		name := "test-" + uuid.NewString()
		var wg sync.WaitGroup
		got := make([]string, 8)
		errs := make([]error, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = db.Store.GetOrCreateSetting(context.Background(), name, fmt.Sprint("value-", i))
			}()
		}
		wg.Wait()
		for i := range got {
			must(t, errs[i])
			if got[i] != got[0] {
				t.Fatalf("replicas disagree: %q vs %q", got[i], got[0])
			}
		}
	})
}

// Keyset pagination at the store: rows that exist throughout are seen once, in (created, id)
// order, including rows that share a created time.
func TestListAPIKeysKeyset(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		acct, err := db.Store.CreateAccount(ctx, "pager")
		must(t, err)
		same := store.Now()
		for i := range 25 {
			k := store.APIKey{ID: uuid.New(), AccountID: acct.AccountID, Token: uuid.NewString(), Name: fmt.Sprint("k", i), Created: same, Changed: same, Origins: store.StringList{}}
			must(t, db.Store.DB().Create(&k).Error)
		}
		seen := map[uuid.UUID]bool{}
		var cur *store.Cursor
		var last store.APIKey
		for range 10 {
			page, err := db.Store.ListAPIKeys(ctx, acct.AccountID, cur, 10)
			must(t, err)
			if page.Total != 25 {
				t.Fatalf("total %d", page.Total)
			}
			for _, k := range page.Items {
				if seen[k.ID] {
					t.Fatalf("%s seen twice", k.ID)
				}
				if last.ID != uuid.Nil && (k.Created.Before(last.Created) || k.Created.Equal(last.Created) && k.ID.String() <= last.ID.String()) {
					t.Fatalf("out of order: %s after %s", k.ID, last.ID)
				}
				seen[k.ID], last = true, k
			}
			if page.Next == nil {
				break
			}
			cur = page.Next
		}
		if len(seen) != 25 {
			t.Errorf("saw %d of 25", len(seen))
		}
	})
}

func TestIsUnavailable(t *testing.T) {
	if store.IsUnavailable(nil) || store.IsUnavailable(store.ErrNotFound) || store.IsUnavailable(errors.New("syntax error")) {
		t.Error("ordinary errors classified as unavailable")
	}
	if !store.IsUnavailable(context.DeadlineExceeded) || !store.IsUnavailable(fmt.Errorf("wrap: %w", context.DeadlineExceeded)) {
		t.Error("deadline not classified as unavailable")
	}
}

// Subscribers hear each committed change once, after commit; a rolled-back change is not heard.
func TestChangesReachSubscribersAfterCommit(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		var mu sync.Mutex
		var heard []store.Change
		unsubscribe := st.Subscribe(func(c store.Change) {
			mu.Lock()
			defer mu.Unlock()
			heard = append(heard, c)
		})
		defer unsubscribe()
		take := func() []store.Change {
			mu.Lock()
			defer mu.Unlock()
			out := heard
			heard = nil
			return out
		}
		a, err := st.CreateAccount(ctx, "a")
		must(t, err)
		b, err := st.CreateAccount(ctx, "b")
		must(t, err)
		k, err := st.CreateAPIKey(ctx, a.AccountID, nil, store.APIKey{})
		must(t, err)
		d, err := st.CreateDataset(ctx, store.Dataset{AccountID: a.AccountID, Name: "d", Kind: "vector", Visibility: store.Private, Format: "pbf"})
		must(t, err)
		if got := take(); len(got) != 0 {
			t.Errorf("creating announced %v", got)
		}
		keyCh := store.Change{Channel: store.KeyChannel, Payload: k.ID.String()}
		dsCh := store.Change{Channel: store.DatasetChannel, Payload: d.ID.String()}

		_, err = st.UpdateDataset(ctx, a.AccountID, d.ID, func(*store.Dataset) (bool, error) { return true, errors.New("no") })
		if err == nil || len(take()) != 0 {
			t.Errorf("a rolled-back change was announced (err %v)", err)
		}
		steps := []struct {
			name string
			do   func() error
			want store.Change
		}{
			{"update key", func() error {
				_, err := st.UpdateAPIKey(ctx, a.AccountID, k.ID, func(*store.APIKey) (bool, error) { return false, nil })
				return err
			}, keyCh},
			{"update dataset", func() error {
				_, err := st.UpdateDataset(ctx, a.AccountID, d.ID, func(*store.Dataset) (bool, error) { return false, nil })
				return err
			}, dsCh},
			{"grant", func() error { _, err := st.CreateGrant(ctx, a.AccountID, d.ID, &b.AccountID, nil); return err }, dsCh},
			{"delete key", func() error { return st.DeleteAPIKey(ctx, a.AccountID, k.ID) }, keyCh},
			{"delete dataset", func() error { _, err := st.DeleteDataset(ctx, a.AccountID, d.ID); return err }, dsCh},
		}
		for _, s := range steps {
			must(t, s.do())
			if got := take(); len(got) != 1 || got[0] != s.want {
				t.Errorf("%s announced %v, want [%v]", s.name, got, s.want)
			}
		}
		unsubscribe()
		_, err = st.UpdateAPIKey(ctx, a.AccountID, k.ID, func(*store.APIKey) (bool, error) { return false, nil })
		if !errors.Is(err, store.ErrNotFound) || len(take()) != 0 {
			t.Errorf("after unsubscribing: err %v", err)
		}
	})
}

// The pool is bounded and statements cannot run forever: PostgreSQL gets statement_timeout,
// SQLite a busy timeout (plus WAL and foreign keys).
func TestConnectionSettings(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		sqlDB, err := db.Store.DB().DB()
		must(t, err)
		if n := sqlDB.Stats().MaxOpenConnections; n != 20 {
			t.Errorf("pool allows %d connections, want 20", n)
		}
		get := func(q string) string {
			var v string
			must(t, db.Store.DB().Raw(q).Scan(&v).Error)
			return v
		}
		switch db.Store.Dialect() {
		case store.Postgres:
			if v := get("SHOW statement_timeout"); v != "10s" {
				t.Errorf("statement_timeout = %q, want 10s", v)
			}
		case store.SQLite:
			for q, want := range map[string]string{"PRAGMA busy_timeout": "10000", "PRAGMA journal_mode": "wal", "PRAGMA foreign_keys": "1"} {
				if v := get(q); v != want {
					t.Errorf("%s = %q, want %s", q, v, want)
				}
			}
		}
	})
}
