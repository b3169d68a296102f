package tilestore

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/tilesource"
)

// cache is a replica's local copies of tile files that live in a bucket, in <Dir>/cache: SQLite
// reads files by path, so an MBTiles file is fetched whole, once, before its first tile. The
// bucket is the source of truth; a copy is only ever a complete one (fetched into a hidden
// partial file, checked for size, renamed into place), so an empty or wiped directory only
// costs fetches.
//
// Its size is bounded (Config.CacheBytes): before a fetch, the least recently used copies not
// in use are removed. A copy is in use while a tile is being read from it (acquire to release),
// so eviction never pulls a file from under a read; the overshoot allowed when every copy is in
// use lasts as long as those reads.
type cache struct {
	dir    string
	bucket blobstore.Store
	pool   *mbtiles.Pool
	limit  int64
	wait   time.Duration // how long a tile waits for a fetch in progress
	log    *slog.Logger

	mu    sync.Mutex
	used  int64                 // bytes of the copies present and of the fetches running
	files map[string]*cacheFile // by name
	lru   list.List             // of *cacheFile present; front: most recently used
	fails map[string]fetchFail  // recent failed fetches, answered without a new one
	over  bool                  // the overshoot was logged

	// counters for CacheStats: tiles that found their copy, fetches started, copies evicted
	hits, fetches, evictions uint64

	lock *os.File // the directory, flocked while this process owns the cache
}

// ErrCacheInUse: another process has the cache directory (two replicas given one data
// directory with a bucket: each must have its own, the accounting of the cache is per process).
var ErrCacheInUse = errors.New("the cache of the bucket's files is in use by another tilegate process; with a bucket, give each replica its own TILEGATE_DATA_DIR")

// CacheStats are the counters of the cache of the bucket's files (metrics).
type CacheStats struct {
	Hits, Fetches, Evictions uint64 // tiles that found their copy; fetches started; copies evicted
	Files                    int
	Bytes, MaxBytes          int64
}

func (c *cache) stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits, Fetches: c.fetches, Evictions: c.evictions,
		Files: c.lru.Len(), Bytes: c.used, MaxBytes: c.limit}
}

type cacheFile struct {
	name  string
	size  int64
	inUse int
	elem  *list.Element // in lru once present
	fetch *fetch        // non-nil while being fetched
}

// fetch is one fetch of a file from the bucket, which every tile that needs the file waits for.
type fetch struct {
	done chan struct{} // closed when it ends
	err  error         // set before done is closed
}

type fetchFail struct {
	at  time.Time
	err error
}

const (
	// fetchPartialPrefix starts the names of fetches in progress in the cache directory.
	fetchPartialPrefix = ".fetch-"
	// fetchChunk is the size of each ranged GET of a fetch (and its one buffer).
	fetchChunk = 8 << 20
	// failMemory is how long a failed fetch answers for its file without a new one: during an
	// outage, tiles get their 503 at once and the bucket one request per file and second.
	failMemory = time.Second
)

// fetchTimeout bounds a fetch of n bytes: a minute plus a minute per 256 MiB (at least
// ~4.5 MB/s, far below any bucket's).
func fetchTimeout(n int64) time.Duration {
	return time.Minute + time.Duration(float64(n)/(256<<20)*float64(time.Minute))
}

// openCache takes over the copies already in dir (a restart keeps the cache warm, least
// recently modified first out) and removes what fetches cut short left.
func openCache(dir string, bucket blobstore.Store, pool *mbtiles.Pool, limit int64, wait time.Duration, log *slog.Logger) (*cache, error) {
	c := &cache{dir: dir, bucket: bucket, pool: pool, limit: limit, wait: wait, log: log,
		files: map[string]*cacheFile{}, fails: map[string]fetchFail{}}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	lock, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open cache directory: %w", err)
	}
	if err := lockUpload(lock); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		_ = lock.Close()
		if isLocked(err) {
			return nil, fmt.Errorf("%w (%s)", ErrCacheInUse, dir)
		}
		return nil, fmt.Errorf("lock cache directory: %w", err)
	}
	c.lock = lock
	entries, err := os.ReadDir(dir)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("read cache directory: %w", err)
	}
	type found struct {
		name string
		size int64
		mod  time.Time
	}
	var present []found
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, fetchPartialPrefix) {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		if !IsName(name) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		present = append(present, found{name, info.Size(), info.ModTime()})
	}
	// Oldest first, each pushed to the front: the newest ends at the front.
	sort.Slice(present, func(i, j int) bool { return present[i].mod.Before(present[j].mod) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range present {
		cf := &cacheFile{name: f.name, size: f.size}
		cf.elem = c.lru.PushFront(cf)
		c.files[f.name] = cf
		c.used += f.size
	}
	c.evictLocked()
	return c, nil
}

func (c *cache) path(name string) string { return filepath.Join(c.dir, name) }

// acquire returns the path of name's local copy, fetching it from the bucket first when it is
// not here (one fetch, whatever the number of tiles waiting for it), and marks it in use until
// release. A tile waits for the fetch at most Config.FetchWait and its own context; past
// either, tilesource.ErrUnavailable (503) while the fetch goes on for the next tiles.
func (c *cache) acquire(ctx context.Context, name string) (path string, release func(), err error) {
	timer := time.NewTimer(c.wait)
	defer timer.Stop()
	for waited := false; ; waited = true {
		c.mu.Lock()
		f := c.files[name]
		if f != nil && f.fetch == nil {
			if !waited {
				c.hits++ // (a tile that waited for the fetch counted in it)
			}
			f.inUse++
			c.lru.MoveToFront(f.elem)
			c.mu.Unlock()
			return c.path(name), func() { c.release(f) }, nil
		}
		if f == nil {
			if failed, ok := c.fails[name]; ok && time.Since(failed.at) < failMemory {
				c.mu.Unlock()
				return "", nil, failed.err
			}
			f = &cacheFile{name: name, fetch: &fetch{done: make(chan struct{})}}
			c.files[name] = f
			c.fetches++
			go c.run(f)
		}
		fe := f.fetch
		c.mu.Unlock()
		select {
		case <-fe.done:
			if fe.err != nil {
				return "", nil, fe.err
			}
			// present now: take it (or, evicted at once, fetch again)
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-timer.C:
			return "", nil, fmt.Errorf("%w: %s is still being fetched from the bucket", tilesource.ErrUnavailable, name)
		}
	}
}

func (c *cache) release(f *cacheFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.inUse--
	if c.used > c.limit {
		c.evictLocked()
	}
}

// run fetches f from the bucket into the cache, detached from the tile that started it (the
// next tiles need it too), under its own deadline.
func (c *cache) run(f *cacheFile) {
	err := c.fetch(f)
	c.mu.Lock()
	defer c.mu.Unlock()
	fe := f.fetch
	f.fetch = nil
	if err != nil {
		delete(c.files, f.name)
		c.used -= f.size
		c.fails[f.name] = fetchFail{at: time.Now(), err: err}
		fe.err = err
	} else {
		delete(c.fails, f.name)
		f.elem = c.lru.PushFront(f)
	}
	for name, failed := range c.fails {
		if time.Since(failed.at) >= failMemory {
			delete(c.fails, name)
		}
	}
	close(fe.done)
}

// fetch copies the object into a partial file with ranged GETs of fetchChunk (each bounded by
// the fetch's deadline, one buffer), checks its size, syncs it and renames it into place. Its
// error is what tiles get: tilesource.ErrMissing (not in the bucket), or ErrUnavailable.
func (c *cache) fetch(f *cacheFile) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout(0))
	defer cancel()
	start := time.Now()
	obj, err := c.bucket.Open(ctx, f.name)
	if err != nil {
		return c.fetchError(f.name, err)
	}
	defer obj.Close()
	size := obj.Info().Size
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), fetchTimeout(size))
	defer cancel()

	if size > c.limit {
		return c.fetchError(f.name, fmt.Errorf("%w: the file is %d bytes, the cache holds %d (raise TILEGATE_STORAGE_CACHE_BYTES)", errCacheTooSmall, size, c.limit))
	}
	c.mu.Lock()
	f.size = size
	c.used += size
	c.evictLocked()
	c.mu.Unlock()

	tmp, err := os.CreateTemp(c.dir, fetchPartialPrefix+f.name+"-*")
	if err != nil {
		return c.fetchError(f.name, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	buf := make([]byte, min(fetchChunk, max(size, 1)))
	var off int64
	for off < size {
		n, rerr := obj.ReadAt(ctx, buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 {
			if _, werr := tmp.WriteAt(buf[:n], off); werr != nil {
				return c.fetchError(f.name, werr)
			}
			off += int64(n)
		}
		if rerr != nil && !(errors.Is(rerr, io.EOF) && off == size) {
			return c.fetchError(f.name, rerr)
		}
		if n == 0 && rerr == nil {
			return c.fetchError(f.name, io.ErrNoProgress)
		}
	}
	if err := tmp.Sync(); err != nil {
		return c.fetchError(f.name, err)
	}
	if err := tmp.Close(); err != nil {
		return c.fetchError(f.name, err)
	}
	if err := os.Rename(tmp.Name(), c.path(f.name)); err != nil {
		return c.fetchError(f.name, err)
	}
	c.pool.Forget(c.path(f.name)) // a handle on an evicted copy must not be reused
	c.log.Info("tile file fetched from the bucket", "file", f.name, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// fetchError is a failed fetch as tiles see it, logged once (a fetch serves every waiting tile).
func (c *cache) fetchError(name string, err error) error {
	switch {
	case errors.Is(err, blobstore.ErrNotExist):
		c.log.Warn("tile file missing from the bucket", "file", name, "err", err)
		return fmt.Errorf("%w: %w", tilesource.ErrMissing, err)
	default:
		c.log.Warn("fetch tile file from the bucket", "file", name, "err", err)
		return fmt.Errorf("%w: fetch %s: %w", tilesource.ErrUnavailable, name, err)
	}
}

// errCacheTooSmall: a file larger than the whole cache cannot be served from it.
var errCacheTooSmall = errors.New("tile file larger than the cache")

// evictLocked removes least recently used copies not in use until what is counted (copies and
// fetches running) fits under the limit.
func (c *cache) evictLocked() {
	for e := c.lru.Back(); e != nil && c.used > c.limit; {
		f := e.Value.(*cacheFile)
		prev := e.Prev()
		if f.inUse == 0 {
			c.removeLocked(f)
			c.evictions++
			c.log.Info("tile file evicted from the cache", "file", f.name, "bytes", f.size)
		}
		e = prev
	}
	if c.used > c.limit && !c.over {
		c.over = true
		c.log.Warn("the tile file cache is over its size: the files in use need more (raise TILEGATE_STORAGE_CACHE_BYTES)",
			"used", c.used, "limit", c.limit)
	} else if c.used <= c.limit {
		c.over = false
	}
}

// removeLocked removes a present copy not in use.
func (c *cache) removeLocked(f *cacheFile) {
	path := c.path(f.name)
	c.pool.Forget(path)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("remove cached tile file", "file", path, "err", err)
	}
	c.lru.Remove(f.elem)
	delete(c.files, f.name)
	c.used -= f.size
}

// drop removes name's copy unless a tile is being read from it (a sweep or eviction takes it
// later) or it is being fetched.
func (c *cache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.files[name]; f != nil && f.fetch == nil && f.inUse == 0 {
		c.removeLocked(f)
	}
}

// forget stops new reads through the pool's open handle of name's copy.
func (c *cache) forget(name string) { c.pool.Forget(c.path(name)) }

// adopt takes the checked upload at path as name's copy (the replica that took an upload
// serves it without fetching it back); when the cache has it already, or it does not fit, the
// file is removed instead.
func (c *cache) adopt(name, path string) {
	info, err := os.Stat(path)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files[name] != nil || info.Size() > c.limit {
		mbtiles.RemoveFile(path)
		return
	}
	if err := os.Rename(path, c.path(name)); err != nil {
		c.log.Warn("keep uploaded tile file in the cache", "file", name, "err", err)
		mbtiles.RemoveFile(path)
		return
	}
	f := &cacheFile{name: name, size: info.Size()}
	f.elem = c.lru.PushFront(f)
	c.files[name] = f
	c.used += f.size
	c.evictLocked()
}

// names lists the copies present.
func (c *cache) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.files))
	for name, f := range c.files {
		if f.fetch == nil {
			out = append(out, name)
		}
	}
	return out
}

// close lets the cache directory go (for another process).
func (c *cache) close() { _ = c.lock.Close() }

// usage reports the bytes the copies take and the limit.
func (c *cache) usage() (used, limit int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.limit
}

// cachedSource reads an MBTiles file that lives in the bucket from this replica's copy.
type cachedSource struct {
	c       *cache
	name    string
	mbtiles tilesource.Source // the copy's reader
}

func (s *cachedSource) Tile(ctx context.Context, z, x, y int) (tilesource.Tile, error) {
	_, release, err := s.c.acquire(ctx, s.name)
	if err != nil {
		return tilesource.Tile{}, err
	}
	defer release()
	return s.mbtiles.Tile(ctx, z, x, y)
}

func (s *cachedSource) Version() string { return s.mbtiles.Version() }
func (s *cachedSource) Close() error    { return s.mbtiles.Close() }
