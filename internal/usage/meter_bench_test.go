package usage

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The tile path's share of the meter: counting a served tile, and admitting a request of a key
// with a rate limit and a quota (no SQL in either; run in parallel to see lock contention).
func BenchmarkServed(b *testing.B) {
	m := &Meter{counter: newCounter(), cfg: Config{}}
	m.loopOnce.Do(func() {}) // no flusher: nothing to write to
	keys := make([]uuid.UUID, 64)
	for i := range keys {
		keys[i] = uuid.New()
	}
	dataset := uuid.New()
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Served(now, keys[i%len(keys)], dataset, Key, 2048)
			i++
		}
	})
}

func BenchmarkAdmit(b *testing.B) {
	start := time.Now()
	m := &Meter{counter: newCounter(), cfg: Config{FlushInterval: time.Hour}, kick: make(chan struct{}, 1),
		elapsed: func() time.Duration { return time.Since(start) }}
	m.loopOnce.Do(func() {})
	m.beatOnce.Do(func() {}) // no heartbeat: one replica
	key := uuid.New()
	rl := &RateLimit{RPS: 100000, Burst: 1000000}
	quota := int64(1 << 60)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := start // the server passes the time it took for the request
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if v := m.Admit(context.Background(), now, key, rl, &quota); v.Reason == ReasonQuotaExceeded {
				b.Fatal("quota")
			}
		}
	})
}
