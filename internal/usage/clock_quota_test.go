package usage

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/store"
)

// testClock is a machine's two clocks: the wall clock, which an operator or NTP may set back,
// and the monotonic one, which only goes forward.
type testClock struct {
	mu      sync.Mutex
	wall    time.Time
	elapsed time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *testClock) mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elapsed
}

// tick lets d pass; the wall clock moves by step besides (negative: set back).
func (c *testClock) tick(d, step time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d + step)
	c.elapsed += d
}

func sqliteStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// forEachStore runs fn on SQLite and, when it is there, a scratch PostgreSQL database.
func forEachStore(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteStore(t)) })
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		db, err := scratchdb.Create(ctx, scratchdb.BaseURL(), "tilegate_test_usage")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("PostgreSQL is required in CI: %v", err)
			}
			t.Skipf("PostgreSQL unavailable: %v", err)
		}
		t.Cleanup(func() { _ = db.Drop() })
		st, err := store.Open(ctx, db.URL, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		fn(t, st)
	})
}

// Issue #15 item 13: a wall clock set back 10 minutes does not stop a key's bucket from
// refilling: 600 requests at 1/100 of the limit over the next 10 minutes are all admitted.
func TestBucketRefillsWhenWallClockStepsBack(t *testing.T) {
	clock := &testClock{wall: time.Date(2027, 3, 10, 12, 0, 0, 0, time.UTC)}
	m := New(Config{Store: sqliteStore(t), FlushInterval: time.Hour, Now: clock.now, Elapsed: clock.mono})
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	key, rl := uuid.New(), &RateLimit{RPS: 100, Burst: 1}
	if v := m.Admit(t.Context(), clock.now(), key, rl, nil); v.Reason != "" {
		t.Fatalf("first request: %+v", v)
	}
	clock.tick(time.Second, -10*time.Minute)
	admitted := 0
	for range 600 {
		if m.Admit(t.Context(), clock.now(), key, rl, nil).Reason == "" {
			admitted++
		}
		clock.tick(time.Second, 0)
	}
	if admitted != 600 {
		t.Errorf("after the wall clock was set back 10 minutes: %d of 600 requests at 1/100 of the limit admitted, want 600", admitted)
	}
}

// Issue #15 item 14: a replica on which a key's quota is fresh (here: started after another had
// used 60 of 100 this month) waits for the month's count before admitting: it admits 40, not 100.
func TestFreshQuotaWaitsForTheCount(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		key, quota := uuid.New(), int64(100)
		now := time.Now()
		admit := func(m *Meter, n int) (admitted int) {
			for range n {
				if v := m.Admit(ctx, now, key, nil, &quota); v.Reason == "" {
					m.Served(now, key, uuid.Nil, Key, 1)
					admitted++
				}
			}
			return admitted
		}
		a := New(Config{Store: st, FlushInterval: time.Hour, Heartbeat: time.Hour})
		if n := admit(a, 60); n != 60 {
			t.Fatalf("the first replica admitted %d of 60", n)
		}
		if err := a.Close(ctx); err != nil { // written, and gone
			t.Fatal(err)
		}
		b := New(Config{Store: st, FlushInterval: time.Hour, Heartbeat: time.Hour})
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		if n := admit(b, 100); n != 40 {
			t.Errorf("a replica new to the key admitted %d of what was left of its quota, want 40 (100 - 60 used)", n)
		}
	})
}

// Issue #15 item 14: while a quota is fresh on N replicas, each admits at most ceil(left/N)
// until a read of the count at least a flush interval later (which sees what the others
// admitted); then the rest of the quota.
func TestFreshQuotaShare(t *testing.T) {
	st := sqliteStore(t)
	ctx := t.Context()
	clock := &testClock{wall: time.Date(2027, 3, 10, 12, 0, 0, 0, time.UTC)}
	m := New(Config{Store: st, FlushInterval: 10 * time.Second, Now: clock.now, Elapsed: clock.mono})
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	m.replicas.Store(3) // as three replicas' heartbeats would say
	key, quota := uuid.New(), int64(100)
	admit := func(n int) (admitted int, last Verdict) {
		for range n {
			v := m.Admit(ctx, clock.now(), key, nil, &quota)
			if v.Reason == "" {
				m.Served(clock.now(), key, uuid.Nil, Key, 1)
				admitted++
			}
			last = v
		}
		return admitted, last
	}
	n, v := admit(100)
	if n != 34 || v.Reason != ReasonQuotaExceeded || v.RetryAfter != 10 {
		t.Errorf("fresh on 3 replicas: %d admitted (last %+v), want 34 = ceil(100/3), then quota_exceeded with Retry-After 10", n, v)
	}
	clock.tick(5*time.Second, 0)
	must(t, m.Flush(ctx))
	if n, _ := admit(100); n != 0 {
		t.Errorf("half a flush interval later: %d admitted, want 0", n)
	}
	clock.tick(5*time.Second, 0)
	must(t, m.Flush(ctx))
	if n, _ := admit(100); n != 66 {
		t.Errorf("after a read a flush interval later: %d admitted, want the other 66", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
