package tileaccess_test

// Made-up API keys and dataset ids at full speed (issue #15 item 4): their negative entries
// cannot push real ones out, a token of a form no key has costs no SQL, and the loads they cause
// are bounded. On both databases; the bound on loads through a TCP proxy in front of PostgreSQL.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/faultproxy"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/keytoken"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// loads counts the cache's lookups answered by a load from the database, per kind.
type loads struct{ key, dataset atomic.Int64 }

func (l *loads) observe(k tileaccess.Kind, o tileaccess.Outcome) {
	if o != tileaccess.Miss {
		return
	}
	if k == tileaccess.KindKey {
		l.key.Add(1)
	} else {
		l.dataset.Add(1)
	}
}

func newAccess(t *testing.T, st *store.Store, cfg tileaccess.Config) *tileaccess.Access {
	t.Helper()
	signer, err := tiletoken.New([]tiletoken.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Signer = st, signer
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	if cfg.LoadWait == 0 {
		cfg.LoadWait, cfg.DBTimeout = 5*time.Second, 5*time.Second
	}
	cfg.StaleIfError, cfg.PublicTileMaxAge, cfg.PrivateTileMaxAge = time.Minute, time.Minute, time.Minute
	cfg.LastUsedInterval, cfg.Logger = time.Hour, slog.Default()
	a := tileaccess.New(cfg)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// fixture makes an account with a private dataset and a key; it returns the dataset and the key.
func fixture(t *testing.T, st *store.Store) (store.Dataset, store.APIKey) {
	t.Helper()
	ctx := t.Context()
	acct, err := st.CreateAccount(ctx, "flood")
	must(t, err)
	d, err := st.CreateDataset(ctx, store.Dataset{AccountID: acct.AccountID, Name: "roads", Kind: "vector",
		Visibility: store.Private, Format: "pbf", MaxZoom: 14})
	must(t, err)
	k, err := st.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{Enabled: true})
	must(t, err)
	return d, k
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// legacyToken is a random token of the form keys had before the checksum (18 bytes, base64url).
func legacyToken(t *testing.T) string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decide asks whether the key may read the dataset.
func decide(t *testing.T, a *tileaccess.Access, d *tileaccess.DatasetEntry, key string) (tileaccess.Decision, error) {
	t.Helper()
	return a.Decide(t.Context(), d, &tileaccess.Credentials{Key: key, HasKey: true},
		tileaccess.Client{RemoteAddr: "127.0.0.1:1"}, time.Now())
}

// A flood of made-up keys and ids, far more than the caches hold, leaves the hot key and dataset
// cached: asking for them again loads nothing and runs no SQL.
func TestMissFloodKeepsHotEntries(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var n loads
		const size = 16
		a := newAccess(t, db.Store, tileaccess.Config{Observe: n.observe,
			Entries: tileaccess.Entries{Keys: size, Datasets: size, Missing: size}})
		ds, key := fixture(t, db.Store)
		hot := func() {
			t.Helper()
			d, err := a.Dataset(t.Context(), ds.ID)
			must(t, err)
			if !d.Found {
				t.Fatal("the dataset is not found")
			}
			dec, err := decide(t, a, d, key.Token)
			must(t, err)
			if !dec.Allowed() {
				t.Fatalf("the hot key is refused: %+v", dec.Refusal)
			}
		}
		hot()
		if n.key.Load() != 1 || n.dataset.Load() != 1 {
			t.Fatalf("warming loaded %d keys and %d datasets, want 1 and 1", n.key.Load(), n.dataset.Load())
		}
		if db.Name == "postgres" {
			// The invalidation listener starts with the first cached entry and flushes the caches
			// when it connects: warm again after that, or the flush would pass for an eviction.
			waitFor(t, 5*time.Second, a.Listening)
			hot()
			n.key.Store(1)
			n.dataset.Store(1)
		}
		hotD, err := a.Dataset(t.Context(), ds.ID)
		must(t, err)
		const flood = 10 * size
		for range flood {
			d, err := a.Dataset(t.Context(), uuid.New())
			must(t, err)
			if d.Found {
				t.Fatal("a made-up dataset id is found")
			}
			dec, err := decide(t, a, hotD, legacyToken(t))
			must(t, err)
			if dec.Refusal != tileaccess.RefuseUnknownKey {
				t.Fatalf("a made-up key: %+v, want unknown_key", dec.Refusal)
			}
		}
		if got := n.key.Load() - 1; got != flood {
			t.Fatalf("the flood loaded %d keys, want %d (each made-up key once)", got, flood)
		}
		before := db.Statements.Load()
		keysBefore, datasetsBefore := n.key.Load(), n.dataset.Load()
		hot()
		if k, d, s := n.key.Load()-keysBefore, n.dataset.Load()-datasetsBefore, db.Statements.Load()-before; k+d+s != 0 {
			t.Errorf("after a flood of %d made-up keys and ids the hot key and dataset needed %d key loads, %d dataset loads, %d statements; want 0",
				flood, k, d, s)
		}
	})
}

// A token of a form no key has (a bad checksum, the wrong length or alphabet) is refused with
// no SQL and no cache entry; a key of the form issued before the checksum still works, and a
// created or rotated key gets the current form.
func TestKeyTokenSelfCheck(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := t.Context()
		a := newAccess(t, db.Store, tileaccess.Config{})
		ds, key := fixture(t, db.Store)
		if keytoken.Check(key.Token) != keytoken.Current || !strings.HasPrefix(key.Token, keytoken.Prefix) {
			t.Fatalf("a created key's token %q is not of the current form", key.Token)
		}
		d, err := a.Dataset(ctx, ds.ID)
		must(t, err)
		garbage := []string{"", "x", key.Token[:len(key.Token)-1], key.Token + "a", strings.ToUpper(key.Token),
			"AAAAAAAAAAAA.AAAAAAAAAAA", "tgs_" + key.Token[4:]}
		for range 500 {
			tok, err := keytoken.New()
			must(t, err)
			// The same form with a wrong checksum: a made-up key of the current form.
			garbage = append(garbage, tok[:len(tok)-1]+string("ab"[int(tok[len(tok)-1])%2]))
		}
		keysBefore, _ := a.CacheEntries()
		before := db.Statements.Load()
		for _, g := range garbage {
			dec, err := decide(t, a, d, g)
			must(t, err)
			if dec.Allowed() {
				t.Fatalf("garbage key %q allowed", g)
			}
		}
		if n := db.Statements.Load() - before; n != 0 {
			t.Errorf("%d malformed keys ran %d SQL statements, want 0", len(garbage), n)
		}
		if keys, _ := a.CacheEntries(); keys != keysBefore {
			t.Errorf("malformed keys left %d cache entries", keys-keysBefore)
		}

		// A key issued before the checksum (its token written as it was then).
		legacy := legacyToken(t)
		must(t, db.Store.DB().Exec("UPDATE api_keys SET token = ? WHERE id = ?", legacy, key.ID.String()).Error)
		dec, err := decide(t, a, d, legacy)
		must(t, err)
		if !dec.Allowed() || dec.KeyID != key.ID {
			t.Errorf("a key of the form before the checksum: %+v, want allowed", dec.Refusal)
		}
		rotated, err := db.Store.RotateAPIKey(ctx, key.AccountID, key.ID, 0)
		must(t, err)
		if keytoken.Check(rotated.Token) != keytoken.Current {
			t.Errorf("a rotated legacy key's token %q is not of the current form", rotated.Token)
		}
	})
}

// With the database a black hole, made-up ids at full speed hold at most MaxLoads connections;
// every request beyond the bound is answered at once with ErrBusy.
func TestLoadsAreBounded(t *testing.T) {
	var pg *testenv.Database
	for _, db := range testenv.Databases() {
		if db.Name == "postgres" {
			pg = db
		}
	}
	if pg == nil {
		t.Skip("needs PostgreSQL")
	}
	u, err := url.Parse(pg.URL)
	must(t, err)
	proxy, err := faultproxy.Start(u.Host)
	must(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()
	st, err := store.Open(t.Context(), u.String(), store.Options{})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	open := proxy.Stats().Open // the store's first connection

	const maxLoads, requests = 3, 40
	a := newAccess(t, st, tileaccess.Config{MaxLoads: maxLoads, LoadWait: 300 * time.Millisecond, DBTimeout: 20 * time.Second})
	proxy.SetMode(faultproxy.BlackHole)
	var busy, waited atomic.Int64
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			start := time.Now()
			_, err := a.Dataset(context.Background(), uuid.New())
			switch {
			case errors.Is(err, tileaccess.ErrBusy):
				busy.Add(1)
				if d := time.Since(start); d > 250*time.Millisecond {
					t.Errorf("a refusal beyond the bound took %v", d)
				}
			case errors.Is(err, context.DeadlineExceeded):
				waited.Add(1) // a load under way, held by the black hole past LoadWait
			default:
				t.Errorf("a load behind a black hole: %v", err)
			}
		})
	}
	wg.Wait()
	conns := proxy.Stats().Open - open
	t.Logf("%d concurrent loads of made-up ids: %d held by the black hole, %d refused at once; %d new connections", requests, waited.Load(), busy.Load(), conns)
	if waited.Load() > maxLoads || busy.Load() < requests-maxLoads {
		t.Errorf("%d loads ran and %d were refused, want at most %d and at least %d", waited.Load(), busy.Load(), maxLoads, requests-maxLoads)
	}
	if conns > maxLoads {
		t.Errorf("the loads opened %d connections, want at most %d", conns, maxLoads)
	}
	proxy.SetMode(faultproxy.Pass)
	// The bound frees up as the held loads finish.
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := a.Dataset(context.Background(), uuid.New())
		if err == nil && !d.Found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loads after the black hole: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, failing t after within.
func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
