package usage

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/store"
)

// With N replicas a bucket holds burst/N (at least 1) and refills at rps/N; a shrinking share
// caps what was saved up; a changed limit starts full.
func TestRateShare(t *testing.T) {
	var k keyLimits
	now := int64(1_000_000_000_000)
	rl := RateLimit{RPS: 10, Burst: 8}
	admitted := 0
	for range 10 {
		if k.admitRate(now, rl, 2).Reason == "" {
			admitted++
		}
	}
	if admitted != 4 {
		t.Errorf("two replicas, burst 8: %d admitted at once, want 4", admitted)
	}
	v := k.admitRate(now, rl, 2)
	if v.Reason != ReasonRateLimited || v.RetryAfter != 1 || v.Quota != 10 || v.Window != 1 {
		t.Errorf("refusal %+v", v)
	}
	// 5 tokens a second here: after 1 s, 4 (capped at burst/2), not 5.
	now += int64(time.Second)
	admitted = 0
	for range 10 {
		if k.admitRate(now, rl, 2).Reason == "" {
			admitted++
		}
	}
	if admitted != 4 {
		t.Errorf("after a second: %d admitted, want 4", admitted)
	}
	// 200 ms at 5/s is one token; a burst of 1 across 3 replicas still admits one at a time.
	now += int64(200 * time.Millisecond)
	if k.admitRate(now, rl, 2).Reason != "" || k.admitRate(now, rl, 2).Reason == "" {
		t.Error("200 ms later: want exactly one admitted")
	}
	var one keyLimits
	if one.admitRate(now, RateLimit{RPS: 1, Burst: 1}, 3).Reason != "" {
		t.Error("burst 1 over 3 replicas admits nothing")
	}
}

// Retry-After and the window of a quota refusal come from the month: to the next one, UTC.
func TestQuotaMonth(t *testing.T) {
	var k keyLimits
	at := time.Date(2028, 2, 29, 23, 0, 0, 0, time.UTC) // a leap year's February
	admit := func(at time.Time) (Verdict, bool) {
		fresh := k.enterMonth(at)
		return k.admitQuota(at, 1, 1, 1), fresh
	}
	if v, fresh := admit(at); v.Reason != "" || !fresh {
		t.Fatalf("first: %+v fresh %v", v, fresh)
	}
	v, fresh := admit(at)
	if v.Reason != ReasonQuotaExceeded || fresh || v.RetryAfter != 3600 || v.Window != 29*86400 {
		t.Errorf("over: %+v fresh %v", v, fresh)
	}
	k.release(at) // a reservation given back frees the tile again
	if v, _ := admit(at); v.Reason != "" {
		t.Errorf("after a release: %+v", v)
	}
	if v, fresh := admit(at.Add(time.Hour)); v.Reason != "" || !fresh {
		t.Errorf("March: %+v fresh %v", v, fresh)
	}
}

// A flush that fails keeps its counts for the next one (they stay pending), and nothing else.
func TestFailedFlushKeepsCounts(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	m := New(Config{Store: st, FlushInterval: time.Hour})
	key, dataset := uuid.New(), uuid.New()
	now := time.Now()
	m.Served(now, key, dataset, Key, 100)
	m.Served(now, key, dataset, Key, 50)
	m.Refused(now, key, dataset, "origin")
	_ = st.Close() // every statement fails from now on
	if err := m.Flush(ctx); err == nil {
		t.Fatal("a flush on a closed database succeeded")
	}
	if n := m.Pending(key, 0); n != 2 {
		t.Errorf("pending after a failed flush: %d, want 2", n)
	}
	rows := m.counter.take()
	var served, bytes, refused int64
	for _, r := range rows {
		served, bytes, refused = served+r.Served, bytes+r.Bytes, refused+r.Refused
	}
	if len(rows) != 2 || served != 2 || bytes != 150 || refused != 1 {
		t.Errorf("kept rows %+v", rows)
	}
	m.counter.putBack(rows)
	_ = m.Close(ctx) // its final flush fails too, and says so
}

// A key's limit state is forgotten an hour after its last request (deleted keys do not pile up);
// a key still in use keeps it.
func TestIdleLimitsForgotten(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2027, 5, 1, 12, 0, 0, 0, time.UTC)
	m := New(Config{Store: st, FlushInterval: time.Hour, Now: func() time.Time { return now }})
	defer m.Close(ctx)
	idle, busy := uuid.New(), uuid.New()
	rl := &RateLimit{RPS: 1, Burst: 1}
	m.Admit(ctx, now, idle, rl, nil)
	now = now.Add(2 * time.Hour)
	m.Admit(ctx, now, busy, rl, nil)
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.keys.Load(idle); ok {
		t.Error("a key idle for two hours is still held")
	}
	if _, ok := m.keys.Load(busy); !ok {
		t.Error("a key in use was forgotten")
	}
}
