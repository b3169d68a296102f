package tileaccess

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/store"
)

// lastUsed records when API keys carried tile requests without a database write per request:
// a request stores the current second in memory (an atomic store, and only when the second has
// changed), and a flusher writes the keys used since its previous run every interval — one
// UPDATE per key — and once more when the server closes.
type lastUsed struct {
	store    *store.Store
	log      *slog.Logger
	interval time.Duration

	keys sync.Map // uuid.UUID → *usage

	startOnce sync.Once
	mu        sync.Mutex // guards running and stopped, and serialises flushes
	running   bool
	stopped   bool
	stop      chan struct{}
	done      chan struct{}
}

type usage struct {
	last    atomic.Int64 // unix seconds of the latest use
	flushed int64        // what the last successful flush wrote; guarded by lastUsed.mu
}

// idleForget is how long a key's usage record outlives its last flush before it is dropped.
const idleForget = time.Hour

func newLastUsed(st *store.Store, log *slog.Logger, interval time.Duration) *lastUsed {
	return &lastUsed{store: st, log: log, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
}

// touch notes that key id was used at now (unix seconds).
func (l *lastUsed) touch(id uuid.UUID, now int64) {
	v, ok := l.keys.Load(id)
	if !ok {
		v, _ = l.keys.LoadOrStore(id, &usage{})
		l.startOnce.Do(l.start)
	}
	u := v.(*usage)
	if u.last.Load() < now {
		u.last.Store(now)
	}
}

func (l *lastUsed) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.running = true
	go l.run()
}

func (l *lastUsed) run() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := l.flush(ctx); err != nil {
				l.log.Warn("record API key use", "err", err)
			}
			cancel()
		}
	}
}

// flush writes every key used since its last flush. On failure the uses stay pending for the
// next run.
func (l *lastUsed) flush(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	batch := map[uuid.UUID]time.Time{}
	pending := map[*usage]int64{}
	cutoff := time.Now().Add(-idleForget).Unix()
	l.keys.Range(func(k, v any) bool {
		u := v.(*usage)
		last := u.last.Load()
		switch {
		case last > u.flushed:
			batch[k.(uuid.UUID)] = time.Unix(last, 0)
			pending[u] = last
		case last < cutoff:
			// Idle for long: forget it. A use racing with the delete re-adds the record.
			l.keys.Delete(k)
			if u.last.Load() != last {
				l.keys.LoadOrStore(k, u)
			}
		}
		return true
	})
	if err := l.store.TouchAPIKeys(ctx, batch); err != nil {
		return err
	}
	for u, last := range pending {
		u.flushed = last
	}
	return nil
}

// close stops the flusher and writes what is pending. It may be called more than once.
func (l *lastUsed) close(ctx context.Context) error {
	l.startOnce.Do(func() {}) // the flusher cannot start after this (or has started fully)
	l.mu.Lock()
	stopNow := l.running && !l.stopped
	l.stopped = true
	l.mu.Unlock()
	if stopNow {
		close(l.stop)
		<-l.done
	}
	return l.flush(ctx)
}
