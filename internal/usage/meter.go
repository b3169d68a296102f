package usage

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/store"
)

// Config is what a Meter needs; zero durations take the defaults.
type Config struct {
	Store *store.Store
	// FlushInterval is how often counts are written (default 10s): what a crash can lose.
	FlushInterval time.Duration
	// Retention is how long usage rows are kept (default 400 days); RetentionEvery how often
	// the deletion runs (default 1h), on one replica at a time.
	Retention, RetentionEvery time.Duration
	// Heartbeat is how often this replica announces itself to the others (default 2s); a replica
	// not heard of for 3 heartbeats no longer counts.
	Heartbeat time.Duration
	// Now is the wall clock of hours and months (default time.Now).
	Now func() time.Time
	// Elapsed is the monotonic clock of token buckets and of the quota's fresh period: the time
	// since a fixed start, never set back (default: the time since New by Go's monotonic
	// reading; when only Now is set, it follows Now). A wall clock stepped back therefore
	// cannot freeze a bucket.
	Elapsed func() time.Duration
	// SyncWait is the longest a request for a key whose quota is fresh here waits for the
	// month's count to be read (default 1s); past it the replica admits its share of the quota.
	SyncWait time.Duration
	Logger   *slog.Logger
	// Flushed is told of every successful flush: when, and how many rows it wrote (metrics).
	Flushed func(at time.Time, rows int)
	// FlushFailed is told of every flush that failed (its counts are kept for the next).
	FlushFailed func()
	// Off counts nothing and admits everything (no rate limits, no quotas): for comparisons.
	Off bool
}

// Meter counts tile traffic and enforces keys' limits. Create it with New; Close it when done.
type Meter struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	now     func() time.Time
	elapsed func() time.Duration
	counter *counter

	keys     sync.Map // uuid.UUID → *keyLimits
	replicas atomic.Int32
	id       uuid.UUID // this replica in the replicas table

	// flushMu serialises flushes (the loop's, Flush's and Close's); inflight are the rows a flush
	// is writing, still counted by Pending.
	flushMu  sync.Mutex
	inflight atomic.Pointer[[]store.UsageRow]

	loopOnce, beatOnce sync.Once
	kick               chan struct{}
	stop               chan struct{}
	wg                 sync.WaitGroup
	closed             atomic.Bool
}

// New builds a Meter. Its flusher starts with the first count, its heartbeat with the first
// rate-limited request, its retention job now.
func New(cfg Config) *Meter {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 10 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 400 * 24 * time.Hour
	}
	if cfg.RetentionEvery <= 0 {
		cfg.RetentionEvery = time.Hour
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	switch {
	case cfg.Elapsed != nil:
	case cfg.Now == nil:
		start := time.Now()
		cfg.Elapsed = func() time.Duration { return time.Since(start) }
	default:
		now, start := cfg.Now, cfg.Now()
		cfg.Elapsed = func() time.Duration { return now().Sub(start) }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SyncWait <= 0 {
		cfg.SyncWait = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Flushed == nil {
		cfg.Flushed = func(time.Time, int) {}
	}
	if cfg.FlushFailed == nil {
		cfg.FlushFailed = func() {}
	}
	m := &Meter{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: cfg.Now, elapsed: cfg.Elapsed, counter: newCounter(),
		id: uuid.New(), kick: make(chan struct{}, 1), stop: make(chan struct{})}
	m.wg.Add(1)
	go m.retentionLoop()
	if !cfg.Off {
		// From the start, not from the first limited request: a key's first admissions on
		// this replica take a share of its quota, which needs the number of replicas.
		m.beatOnce.Do(m.startHeartbeat)
	}
	return m
}

// Now is the meter's clock.
func (m *Meter) Now() time.Time { return m.now() }

// idleForget is how long a key's limit state outlives its last request.
const idleForget = time.Hour

func hourOf(t time.Time) int64 {
	u := t.Unix()
	return u - u%3600
}

// Served counts a tile answered (bytes of body) for dataset, with key (uuid.Nil for none).
func (m *Meter) Served(now time.Time, key, dataset uuid.UUID, cred Credential, bytes int) {
	if m.cfg.Off {
		return
	}
	m.counter.add(cell{hour: hourOf(now), key: key, dataset: dataset, cred: cred}, 1, int64(bytes), 0)
	m.loopOnce.Do(m.startLoop)
}

// Refused counts a refusal of a request that named the existing key.
func (m *Meter) Refused(now time.Time, key, dataset uuid.UUID, reason string) {
	if m.cfg.Off {
		return
	}
	m.counter.add(cell{hour: hourOf(now), key: key, dataset: dataset, cred: Key, reason: m.counter.reasons.code(reason)}, 0, 0, 1)
	m.loopOnce.Do(m.startLoop)
}

func (m *Meter) limits(key uuid.UUID) *keyLimits {
	if v, ok := m.keys.Load(key); ok {
		return v.(*keyLimits)
	}
	v, _ := m.keys.LoadOrStore(key, &keyLimits{})
	return v.(*keyLimits)
}

// Admit applies key's rate limit (nil: none) and monthly quota (nil: none) to a request at now
// (the wall clock: the quota's month). An admitted request with a quota holds a reservation:
// Release it if it is not served after all. The first requests of a key whose quota is fresh
// here wait (at most SyncWait, or until ctx ends) for the month's count to be read.
func (m *Meter) Admit(ctx context.Context, now time.Time, key uuid.UUID, rl *RateLimit, quota *int64) Verdict {
	if rl == nil && quota == nil || m.cfg.Off {
		return Verdict{}
	}
	k := m.limits(key)
	if quota != nil {
		m.awaitCount(ctx, k, key, now)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastAdmit = now.Unix()
	if rl != nil {
		m.beatOnce.Do(m.startHeartbeat)
		if v := k.admitRate(int64(m.elapsed()), *rl, m.share()); v.Reason != "" {
			return v
		}
	}
	if quota != nil {
		if k.enterMonth(now) { // the month turned since awaitCount
			m.fresh(k, key)
		}
		retry := int64(math.Ceil((m.cfg.FlushInterval - (m.elapsed() - k.freshAt)).Seconds()))
		return k.admitQuota(now, *quota, k.shareOf(*quota, m.share()), retry)
	}
	return Verdict{}
}

// share is the number of replicas sharing keys' limits (at least 1).
func (m *Meter) share() int { return max(1, int(m.replicas.Load())) }

// awaitCount waits, if the key's quota is fresh here and its count not read yet, for the read.
func (m *Meter) awaitCount(ctx context.Context, k *keyLimits, key uuid.UUID, now time.Time) {
	k.mu.Lock()
	k.lastAdmit = now.Unix() // in use: not to be forgotten as idle meanwhile
	if k.enterMonth(now) {
		m.fresh(k, key)
	}
	done, wait := k.syncDone, k.waitUntil-m.elapsed()
	k.mu.Unlock()
	if done == nil || wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// fresh starts a key's quota month on this replica (k.mu held): its count is to be read (at once,
// in the background) and until then, and for a flush interval, it takes a share.
func (m *Meter) fresh(k *keyLimits, key uuid.UUID) {
	// What this replica counted this month and has not flushed is not in the database.
	k.unflushed += m.counter.served(key, monthStart(k.month).Unix()) + m.inflightServed(key, monthStart(k.month).Unix())
	k.capped, k.freshAt, k.sinceFresh, k.freshBase, k.freshRead = true, m.elapsed(), 0, 0, false
	k.waitUntil = k.freshAt + m.cfg.SyncWait
	if k.syncDone == nil {
		k.syncDone = make(chan struct{})
	}
	m.loopOnce.Do(m.startLoop)
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Release gives back the quota reservation of an admitted request that was not served.
func (m *Meter) Release(now time.Time, key uuid.UUID) {
	if v, ok := m.keys.Load(key); ok {
		k := v.(*keyLimits)
		k.mu.Lock()
		k.release(now)
		k.mu.Unlock()
	}
}

// Pending is key's served tiles of hours from since on that this replica has not written yet.
func (m *Meter) Pending(key uuid.UUID, since int64) int64 {
	return m.counter.served(key, since) + m.inflightServed(key, since)
}

func (m *Meter) inflightServed(key uuid.UUID, since int64) int64 {
	p := m.inflight.Load()
	if p == nil {
		return 0
	}
	var n int64
	for _, r := range *p {
		if r.KeyID == key && r.Reason == "" && r.Hour >= since {
			n += r.Served
		}
	}
	return n
}

// Replicas is the number of live replicas this one shares rate limits with: always 1 on SQLite;
// on PostgreSQL 0 until the first heartbeat (which starts with the first rate-limited request)
// has answered, during which the replica takes the whole limit.
func (m *Meter) Replicas() int {
	if m.store.Dialect() != store.Postgres {
		return 1
	}
	return int(m.replicas.Load())
}

func (m *Meter) startLoop() {
	if m.closed.Load() {
		return
	}
	m.wg.Add(1)
	go m.loop()
}

func (m *Meter) loop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.background(m.Flush)
		case <-m.kick:
			m.background(m.syncNew)
		}
	}
}

func (m *Meter) background(fn func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fn(ctx); err != nil {
		m.log.Warn("usage", "err", err)
	}
}

// Flush writes the counts (one statement), then reads back the month's counts of the keys with
// a quota (one more, only when there are any). On failure the counts stay for the next flush.
func (m *Meter) Flush(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	rows := m.counter.take()
	if len(rows) > 0 {
		m.inflight.Store(&rows)
		err := m.store.AddUsage(ctx, rows)
		if err != nil {
			m.counter.putBack(rows)
			m.inflight.Store(nil)
			m.cfg.FlushFailed()
			return err
		}
		m.inflight.Store(nil) // written: in the database now, not pending
		m.cfg.Flushed(m.now(), len(rows))
	}
	return m.sync(ctx, rows, false)
}

// syncNew reads the month's counts of quota keys seen for the first time this month.
func (m *Meter) syncNew(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	return m.sync(ctx, nil, true)
}

// sync sets the quota keys' base to the database's count of this month, and takes what flushed
// (this replica's counts now in the database) out of their unflushed reservations.
func (m *Meter) sync(ctx context.Context, flushed []store.UsageRow, onlyNew bool) error {
	month := monthIndex(m.now())
	since := monthStart(month).Unix()
	keys := quotaKeys(&m.keys, month, onlyNew)
	written := map[uuid.UUID]int64{}
	for _, r := range flushed {
		if r.Reason == "" && r.KeyID != uuid.Nil && r.Hour >= since {
			written[r.KeyID] += r.Served
		}
	}
	tried := map[uuid.UUID]bool{}
	for _, k := range keys {
		tried[k] = true
	}
	read := map[uuid.UUID]bool{}
	var totals map[uuid.UUID]int64
	var err error
	if len(keys) > 0 {
		if totals, err = m.store.ServedSince(ctx, keys, since); err == nil {
			for _, k := range keys {
				read[k] = true
			}
		}
	}
	idleSince := m.now().Add(-idleForget).Unix()
	m.keys.Range(func(id, v any) bool {
		k := v.(*keyLimits)
		key := id.(uuid.UUID)
		k.mu.Lock()
		defer k.mu.Unlock()
		if !onlyNew && k.lastAdmit < idleSince && k.unflushed == 0 {
			// Not used for long (or deleted): forget it; a later request starts afresh (a full
			// bucket, the month's count read again).
			m.keys.CompareAndDelete(id, v)
			if k.syncDone != nil {
				close(k.syncDone)
				k.syncDone = nil
			}
			return true
		}
		if !k.quota || k.month != month {
			return true
		}
		w := written[key]
		k.unflushed = max(0, k.unflushed-w)
		if read[key] {
			k.base, k.synced = totals[key], true
			if !k.freshRead {
				k.freshBase, k.freshRead = k.base, true
			}
			if k.capped && m.elapsed()-k.freshAt >= m.cfg.FlushInterval {
				k.capped = false // this count includes what the others admitted meanwhile
			}
		} else {
			k.base += w // not read (or could not be): at least this replica's own counts
		}
		if tried[key] && k.syncDone != nil {
			close(k.syncDone) // read or failed: nobody waits for it any longer
			k.syncDone = nil
		}
		return true
	})
	return err
}

// MonthStart is the start of the current month (UTC) by the meter's clock, unix seconds.
func (m *Meter) MonthStart() int64 { return monthStart(monthIndex(m.now())).Unix() }

func (m *Meter) startHeartbeat() {
	if m.closed.Load() || m.store.Dialect() != store.Postgres {
		return
	}
	m.wg.Add(1)
	go m.heartbeatLoop()
}

func (m *Meter) heartbeatLoop() {
	defer m.wg.Done()
	beat := func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Heartbeat)
		defer cancel()
		n, err := m.store.Heartbeat(ctx, m.id, 3*m.cfg.Heartbeat)
		if err != nil {
			// Keep the last known share: a database outage does not change who is alive.
			m.log.Warn("usage: replica heartbeat", "err", err)
			return
		}
		m.replicas.Store(int32(n))
	}
	beat()
	t := time.NewTicker(m.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			beat()
		}
	}
}

func (m *Meter) retentionLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.RetentionEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.background(func(ctx context.Context) error {
				_, err := m.Purge(ctx)
				return err
			})
		}
	}
}

// Purge deletes usage older than the retention, unless another replica is doing it; it returns
// the rows deleted.
func (m *Meter) Purge(ctx context.Context) (int64, error) {
	before := hourOf(m.now().Add(-m.cfg.Retention))
	var n int64
	_, err := m.store.WithUsageLock(ctx, func(ctx context.Context) error {
		var err error
		n, err = m.store.DeleteUsageBefore(ctx, before)
		return err
	})
	return n, err
}

// Close stops the background work, writes what is counted, and leaves the replicas. It may be
// called more than once.
func (m *Meter) Close(ctx context.Context) error {
	if m.closed.Swap(true) {
		return nil
	}
	m.loopOnce.Do(func() {})
	m.beatOnce.Do(func() {})
	close(m.stop)
	m.wg.Wait()
	err := m.Flush(ctx)
	if m.store.Dialect() == store.Postgres {
		err = errors.Join(err, m.store.LeaveReplicas(ctx, m.id))
	}
	return err
}
