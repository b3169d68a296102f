package tilestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tilegate/tilegate/blobstore"
)

// With a bucket (Config.Bucket), tile files live there under their names (Name: the object's
// key below the storage URL's prefix), shared by replicas that share nothing else but the
// database:
//
//   - an upload is received and checked in the data directory exactly as without a bucket (the
//     SQLite checks need a local file: the one local copy of it), streamed to the bucket under
//     its new name (blobstore.Put: multipart, one part buffer, visible only once complete), and
//     only then does the dataset row take the name; the checked file then becomes this
//     replica's cached copy;
//   - a replica serves a file from its copy in the cache (cache.go), fetched on the first tile;
//   - a replaced or deleted file's object is deleted after the grace period by the replica that
//     replaced it, and by the sweep of any replica otherwise (bucketSweep).

// CacheStats reads the counters of the cache of the bucket's files; ok is false without a
// bucket.
func (s *Store) CacheStats() (st CacheStats, ok bool) {
	if s.cache == nil {
		return CacheStats{}, false
	}
	return s.cache.stats(), true
}

// ErrBucket wraps a failure to reach the bucket (Check): /readyz names it.
var ErrBucket = errors.New("tile storage bucket unavailable")

// putTimeout bounds the Put of an n-byte upload to the bucket: five minutes plus five per GiB
// (at least ~3.5 MB/s).
func putTimeout(n int64) time.Duration {
	return 5*time.Minute + time.Duration(float64(n)/(1<<30)*float64(5*time.Minute))
}

// incompleteAge is how old a multipart upload must be for the sweep to abort it: older than
// any Put still running on any replica (putTimeout of the largest upload accepted), and then
// some.
func (s *Store) incompleteAge() time.Duration {
	if s.cfg.IncompleteAge > 0 {
		return s.cfg.IncompleteAge
	}
	return putTimeout(max(s.cfg.MaxUpload, 1<<30)) + 10*time.Minute
}

// orphanAge is how long a bucket object must have been seen unreferenced before a sweep deletes
// it: the grace period for reads in flight, and at least the longest a dataset row may take to
// take an upload's object once it is complete (CommitTimeout), or a second.
func (s *Store) orphanAge() time.Duration {
	return max(s.cfg.Grace, s.cfg.CommitTimeout, time.Second)
}

// publishBucket streams the checked file to the bucket under name. The object is the upload's
// until Keep (Cleanup deletes it).
func (up *Upload) publishBucket(ctx context.Context, name string) (string, error) {
	f, err := os.Open(up.Path)
	if err != nil {
		return "", fmt.Errorf("open checked upload: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("open checked upload: %w", err)
	}
	// A bucket that does not answer is found out in seconds, before the upload's Put (whose
	// deadline is sized for a slow link) starts waiting on it.
	if err := up.s.checkBucket(ctx); err != nil {
		return "", fmt.Errorf("store the upload in the bucket: %w: %w", blobstore.ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, putTimeout(fi.Size()))
	defer cancel()
	start := time.Now()
	body := newStallReader(ctx, f, stallTimeout)
	defer body.stop()
	info, err := up.s.cfg.Bucket.Put(body.ctx, name, body)
	if err != nil {
		up.s.deadPut(name)
		if body.stalled() {
			err = fmt.Errorf("%w: no progress for %v: %w", blobstore.ErrUnavailable, stallTimeout, err)
		}
		return "", fmt.Errorf("store the upload in the bucket: %w", err)
	}
	if info.Size != fi.Size() {
		// Cannot happen with a well-behaved store; never let a short object be served.
		up.object = name
		return "", fmt.Errorf("store the upload in the bucket: %w: %d bytes stored of %d", blobstore.ErrUnavailable, info.Size, fi.Size())
	}
	up.object = name
	up.s.log.Info("tile file stored in the bucket", "file", name, "bytes", info.Size, "took", time.Since(start).Round(time.Millisecond))
	return name, nil
}

// deleteObject deletes name's object now (a refused upload's), detached from the request that
// may have ended; a failure leaves it to the sweep.
func (s *Store) deleteObject(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.cfg.Bucket.Delete(ctx, name); err != nil {
		s.log.Warn("delete tile file from the bucket; the sweep will", "file", name, "err", err)
	}
}

// bucketRetired deletes replaced and deleted files' objects (and this replica's copies) after
// the grace period, so that reads in flight on them — here, and on replicas that have not
// heard of the change yet — finish. Timers still waiting at Close are dropped: the sweep (of
// any replica) deletes those objects once no dataset references them.
type bucketRetired struct {
	s     *Store
	mu    sync.Mutex
	timer map[string]*time.Timer // nil once closed
}

func (r *bucketRetired) retire(name string) {
	r.s.cache.forget(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil {
		return
	}
	if _, ok := r.timer[name]; ok {
		return
	}
	r.timer[name] = time.AfterFunc(max(r.s.cfg.Grace, 0), func() {
		r.mu.Lock()
		if r.timer == nil {
			r.mu.Unlock()
			return
		}
		delete(r.timer, name)
		r.mu.Unlock()
		r.s.cache.drop(name)
		r.s.deleteObject(name)
		r.s.log.Info("removed replaced tile file from the bucket", "file", name)
	})
}

func (r *bucketRetired) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.timer {
		t.Stop()
	}
	r.timer = nil
}

// checkBucket reports whether the bucket answers and the credentials are accepted.
func (s *Store) checkBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.cfg.Bucket.Check(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrBucket, err)
	}
	return nil
}

// sweepBucket deletes the bucket's tile files no dataset references, once seen so on sweeps at
// least orphanAge apart (a file's object is complete before its row takes it, and the row
// takes it within CommitTimeout; reads in flight on a replaced one finish within the grace);
// aborts multipart uploads older than incompleteAge (what a crashed replica's Put left); and
// drops this replica's copies of files no dataset references, on the same rule.
//
// Two replicas sweeping at once is safe: each lists before it reads the references, deletes
// only what it has seen unreferenced for orphanAge, and deleting a deleted object is no error.
func (f *sweeper) sweepBucket(ctx context.Context, now time.Time) {
	s := f.s
	s.abortDeadPuts(ctx)
	if n, err := s.cfg.Bucket.SweepIncomplete(ctx, now.Add(-s.incompleteAge())); err != nil {
		s.log.Warn("sweep the bucket's incomplete uploads", "err", err)
	} else if n > 0 {
		s.log.Info("aborted abandoned uploads to the bucket", "count", n)
	}
	var objects []string
	for info, err := range s.cfg.Bucket.List(ctx, "") {
		if err != nil {
			s.log.Warn("sweep tile files: list the bucket", "err", err)
			return
		}
		if IsName(info.Key) {
			objects = append(objects, info.Key)
		}
	}
	copies := s.cache.names()
	if len(objects) == 0 && len(copies) == 0 {
		return
	}
	refs, err := s.cfg.Referenced(ctx)
	if err != nil {
		s.log.Warn("sweep tile files: read the datasets' files", "err", err)
		return
	}
	f.mu.Lock()
	gone := orphans(f.orphanSeen, objects, refs, now, s.orphanAge())
	dropped := orphans(f.copySeen, copies, refs, now, s.orphanAge())
	f.mu.Unlock()
	for _, name := range gone {
		if err := s.cfg.Bucket.Delete(ctx, name); err != nil {
			s.log.Warn("remove unreferenced tile file from the bucket", "file", name, "err", err)
			continue
		}
		s.log.Info("removed unreferenced tile file from the bucket", "file", name)
	}
	for _, name := range dropped {
		s.cache.drop(name)
	}
}

// orphans returns the names no dataset references that seen says were first found so at least
// age before now, and updates seen (forgetting referenced and vanished names).
func orphans(seen map[string]time.Time, names []string, refs map[string]bool, now time.Time, age time.Duration) []string {
	var out []string
	present := make(map[string]bool, len(names))
	for _, name := range names {
		present[name] = true
		if refs[name] {
			delete(seen, name)
			continue
		}
		first, ok := seen[name]
		if !ok {
			seen[name] = now
			continue
		}
		if now.Sub(first) >= age {
			out = append(out, name)
			delete(seen, name)
		}
	}
	for name := range seen {
		if !present[name] {
			delete(seen, name)
		}
	}
	return out
}

// stallTimeout is how long a Put may go without reading more of the file (the client reads a
// part, then sends it) before it is given up: a bucket gone silent mid-upload. A 16 MiB part
// in two minutes is ~140 kB/s.
const stallTimeout = 2 * time.Minute

// stallReader cancels its context when nobody has read from it for a while.
type stallReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	r      io.Reader
	last   atomic.Int64 // UnixNano of the last read
	gaveUp atomic.Bool
	done   chan struct{}
}

func newStallReader(ctx context.Context, r io.Reader, limit time.Duration) *stallReader {
	ctx, cancel := context.WithCancel(ctx)
	s := &stallReader{ctx: ctx, cancel: cancel, r: r, done: make(chan struct{})}
	s.last.Store(time.Now().UnixNano())
	go func() {
		t := time.NewTicker(limit / 8)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, s.last.Load())) > limit {
					s.gaveUp.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	return s
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.last.Store(time.Now().UnixNano())
	return n, err
}

func (s *stallReader) stalled() bool { return s.gaveUp.Load() }

func (s *stallReader) stop() {
	close(s.done)
	s.cancel()
}

// incompleteAborter is a bucket that can abort one key's multipart uploads (blobstore.S3).
type incompleteAborter interface {
	AbortIncomplete(ctx context.Context, key string) (int, error)
}

// deadPut remembers that the Put of name failed here: when the bucket could not be reached, the
// client's own abort of its multipart upload may not have either, and waiting for
// incompleteAge to sweep it would leave its parts for hours. Names are written once, so any
// upload of name still in progress is this dead one.
func (s *Store) deadPut(name string) {
	if _, ok := s.cfg.Bucket.(incompleteAborter); !ok {
		return
	}
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	if s.deadPuts == nil {
		s.deadPuts = map[string]time.Time{}
	}
	s.deadPuts[name] = time.Now()
}

// abortDeadPuts aborts what the failed Puts may have left, forgetting each once done (or once
// incompleteAge has passed, when SweepIncomplete takes it).
func (s *Store) abortDeadPuts(ctx context.Context) {
	ab, ok := s.cfg.Bucket.(incompleteAborter)
	if !ok {
		return
	}
	s.deadMu.Lock()
	names := make(map[string]time.Time, len(s.deadPuts))
	for k, v := range s.deadPuts {
		names[k] = v
	}
	s.deadMu.Unlock()
	for name, at := range names {
		n, err := ab.AbortIncomplete(ctx, name)
		if err != nil && time.Since(at) < s.incompleteAge() {
			continue // the bucket still cannot be reached: next sweep
		}
		if n > 0 {
			s.log.Info("aborted a failed upload's parts in the bucket", "file", name, "uploads", n)
		}
		s.deadMu.Lock()
		delete(s.deadPuts, name)
		s.deadMu.Unlock()
	}
}
