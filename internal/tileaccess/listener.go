package tileaccess

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tilegate/tilegate/store"
)

// listener evicts tile cache entries when any replica changes an API key or a dataset: on
// PostgreSQL those changes send NOTIFY inside their transaction (store.KeyChannel with the key's
// id, store.DatasetChannel with the dataset's id), delivered on commit. It holds one dedicated
// connection, reconnects with backoff, and flushes the whole cache (every entry is refreshed on
// its next use) after every (re)connect since notifications sent meanwhile are lost. While it is
// down the cache's TTL bounds staleness.
//
// It starts with the first cached entry (nothing needs invalidating before), so servers that
// never serve a tile hold no extra connection.
type listener struct {
	dsn   string
	cache *tileCache
	log   *slog.Logger

	connected atomic.Bool
	connects  atomic.Uint64 // sessions that got as far as listening (metrics)

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// Backoff between reconnect attempts, and how often an idle connection is checked.
const (
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 5 * time.Second
	listenPing       = 30 * time.Second
)

func newListener(dsn string, cache *tileCache, log *slog.Logger) *listener {
	return &listener{dsn: dsn, cache: cache, log: log, done: make(chan struct{})}
}

// start runs the listener unless it runs already or was closed.
func (l *listener) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.closed {
		return
	}
	l.started = true
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.run(ctx)
}

// close stops the listener and waits for it to let its connection go.
func (l *listener) close() {
	l.mu.Lock()
	l.closed = true
	started := l.started
	cancel := l.cancel
	l.mu.Unlock()
	if !started {
		return
	}
	cancel()
	<-l.done
}

func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	backoff := listenMinBackoff
	failures := 0 // consecutive failed sessions
	for {
		began := time.Now()
		err := l.session(ctx)
		wasConnected := l.connected.Swap(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = listenMinBackoff // it had been working: retry at once, quickly
		}
		if wasConnected {
			failures = 0
		}
		failures++
		// During an outage it retries every few seconds: the first failure and then about one
		// a minute are worth a WARN line, the rest only at Debug.
		level := slog.LevelDebug
		if failures == 1 || failures%12 == 0 {
			level = slog.LevelWarn
		}
		l.log.Log(ctx, level, "cache invalidation listener disconnected; retrying (cache entries expire after the TTL meanwhile)",
			"err", err, "retry_in", backoff, "attempts", failures)
		jitter := time.Duration(rand.Int64N(int64(backoff) / 2))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + jitter):
		}
		backoff = min(backoff*2, listenMaxBackoff)
	}
}

// session connects, listens on both channels, flushes the cache and then evicts what every
// notification names until the connection fails or ctx ends.
func (l *listener) session(ctx context.Context) error {
	// The pool's settings: connect_timeout and TCP keepalives (a silently dropped connection
	// is also caught by the idle ping below).
	cfg, err := store.PostgresConfig(l.dsn)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "tilegate-listener"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = conn.Close(cctx)
		cancel()
	}()
	// LISTEN has a deadline too: a connection that went silent right after connecting must
	// not keep the listener from reconnecting.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, ch := range []string{store.KeyChannel, store.DatasetChannel} {
		if _, err := conn.Exec(lctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
	}
	// Listening from here on: whatever changed before is dropped now, whatever changes later
	// is notified.
	l.cache.flush()
	l.connected.Store(true)
	l.connects.Add(1)
	l.log.Info("cache invalidation listener connected")
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.notified(n)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			// Idle: make sure the connection is still alive, or a silently dropped one would
			// leave the cache deaf until the TTL.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

func (l *listener) notified(n *pgconn.Notification) {
	l.cache.apply(store.Change{Channel: n.Channel, Payload: n.Payload})
}
