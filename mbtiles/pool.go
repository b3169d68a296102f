package mbtiles

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// tileQuery reads one tile. MBTiles rows are TMS: tile_row counts from the
// south.
// A tile above the size limit is not loaded: octet_length of a stored blob comes from its record
// header.
const tileQuery = `SELECT CASE WHEN octet_length(tile_data) <= ? THEN tile_data END, octet_length(tile_data)
	FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?`

// connMaxIdle is how long an idle SQLite connection stays open. Each
// connection holds a file descriptor and its own page cache, so connections of
// files nobody is reading are let go; busy files keep theirs.
const connMaxIdle = time.Minute

var errPoolClosed = errors.New("mbtiles: pool closed")

// Pool keeps read-only handles to MBTiles files open and shared between
// goroutines. It holds at most maxOpen files open, closing the least recently
// used beyond that.
//
// Handles are reference-counted: a handle dropped by Forget, eviction or
// Close is closed only when the last read using it has finished, so in-flight
// reads always complete against the file they started on.
//
// Create Pools with NewPool; the zero value is not usable.
type Pool struct {
	maxOpen int
	conns   int // SQLite connections per file
	maxTile atomic.Int64

	mu     sync.Mutex
	files  map[string]*list.Element // value *handle; guarded by mu
	lru    *list.List               // front is most recently used; guarded by mu
	closed bool                     // guarded by mu
}

// handle is one open MBTiles file.
type handle struct {
	pool  *Pool
	path  string
	ready chan struct{} // closed once db, stmt and err are set

	conns *connSet // nil when the open failed
	err   error    // why the open failed

	// refs counts the pool's own reference, held while the handle is in
	// Pool.files, plus one per read in progress. New references are only
	// taken under Pool.mu while the handle is in Pool.files, so once the
	// pool has dropped its reference the count can only fall, and whoever
	// brings it to zero closes the handle.
	refs atomic.Int64
}

// NewPool returns a Pool that keeps at most maxOpen files open; values below
// 1 mean 1.
func NewPool(maxOpen int) *Pool {
	p := &Pool{
		maxOpen: max(maxOpen, 1),
		// SQLite reads are CPU-bound once pages are in the OS cache, and a
		// few more connections than cores cover reads that wait for disk.
		conns: runtime.GOMAXPROCS(0) * 2,
		files: make(map[string]*list.Element),
		lru:   list.New(),
	}
	p.maxTile.Store(DefaultMaxTileBytes)
	return p
}

// SetMaxTileBytes sets the largest tile Tile returns (DefaultMaxTileBytes until set; values
// below 1 restore it). Uploads are checked against the same limit (Limits.MaxTileBytes); this
// bounds reads of files accepted under a higher one.
func (p *Pool) SetMaxTileBytes(n int64) {
	if n < 1 {
		n = DefaultMaxTileBytes
	}
	p.maxTile.Store(n)
}

// Tile returns the tile at XYZ z/x/y, or (nil, nil) when the file has no such
// tile; coordinates outside the tile grid also yield (nil, nil). A tile stored
// as empty or NULL is returned as a non-nil empty slice, so callers can tell
// it from a missing one. Errors opening the file keep their cause, so
// errors.Is(err, fs.ErrNotExist) works for a missing file. (The hot-tile cache is above the
// pool, in tilesource: it serves every kind of tile source.)
func (p *Pool) Tile(ctx context.Context, path string, z, x, y int) ([]byte, error) {
	if z < 0 || z > maxTileZoom || x < 0 || y < 0 || x >= 1<<z || y >= 1<<z {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := p.acquire(ctx, path)
	if err != nil {
		return nil, err
	}
	defer h.release()
	return p.read(ctx, h, z, x, y)
}

// read reads the tile from h's file.
//
// Reads go through tileConn (a statement prepared once per connection) rather than
// database/sql: go test ./mbtiles -run XXX -bench 'BenchmarkTile$' -benchmem -cpu 1 gave,
// on glebarez/go-sqlite through database/sql, 12.3 µs and 21 allocs per 100 B tile and 40 µs,
// 22 allocs, 99 KB per 48 KiB tile (the blob copied twice); on tileConn 2.05 µs and 1 alloc,
// and 21 µs, 1 alloc, 48 KB (2 shared cores, 2026-11-24).
func (p *Pool) read(ctx context.Context, h *handle, z, x, y int) ([]byte, error) {
	path := h.path
	// The query runs without ctx's cancellation (ctx only bounds the wait for a
	// connection): a point lookup is over in microseconds, nothing worth
	// interrupting. It is bounded in time by what an upload may be (Inspect, Prepare): plain tables or
	// tilegate's own view, read through an index.
	c, err := h.conns.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("read tile %d/%d/%d from %s: %w", z, x, y, path, err)
	}
	limit := p.maxTile.Load()
	data, size, found, err := c.tile(limit, z, x, (1<<z)-1-y)
	h.conns.put(c)
	switch {
	case err != nil:
		return nil, fmt.Errorf("read tile %d/%d/%d from %s: %w", z, x, y, path, classify(err))
	case !found:
		return nil, nil
	case size > limit:
		return nil, fmt.Errorf("read tile %d/%d/%d from %s: %w: %d bytes, limit %d", z, x, y, path, ErrTileTooLarge, size, limit)
	}
	return data, nil
}

// Forget closes and drops the handle of path, so the next Tile reopens the
// file. Call it after the file has been replaced or deleted. Reads in
// progress finish on the old handle.
//
// Until Forget is called after a replacement, reads may be served from
// either file: connections opened before the rename keep the old inode,
// connections the handle opens later get the new one.
func (p *Pool) Forget(path string) {
	p.mu.Lock()
	h := p.removeLocked(path)
	p.mu.Unlock()
	if h != nil {
		h.release()
	}
}

// Close closes all handles and makes later Tile calls fail. Handles still in
// use are closed when their reads finish; only errors from closing the others
// are returned.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var dropped []*handle
	for e := p.lru.Front(); e != nil; e = e.Next() {
		dropped = append(dropped, e.Value.(*handle))
	}
	p.files = make(map[string]*list.Element)
	p.lru.Init()
	p.mu.Unlock()

	var errs []error
	for _, h := range dropped {
		errs = append(errs, h.release())
	}
	return errors.Join(errs...)
}

// acquire returns the ready handle of path with a reference the caller must
// release, opening the file if it is not open.
func (p *Pool) acquire(ctx context.Context, path string) (*handle, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	var h *handle
	if e, ok := p.files[path]; ok {
		p.lru.MoveToFront(e)
		h = e.Value.(*handle)
		h.refs.Add(1)
		p.mu.Unlock()
	} else {
		// Register the handle before opening so that concurrent readers
		// of the same file wait for this open instead of starting their
		// own, then open outside the lock.
		h = &handle{pool: p, path: path, ready: make(chan struct{})}
		h.refs.Store(2) // the pool's and ours
		p.files[path] = p.lru.PushFront(h)
		evicted := p.evictLocked()
		p.mu.Unlock()
		for _, old := range evicted {
			old.release()
		}

		// One reader's cancellation must not fail the open for the others
		// waiting on it; opening a local file is quick anyway.
		h.conns, h.err = p.open(path)
		close(h.ready)
		if h.err != nil {
			// Drop the failed handle so that the next call retries: the file
			// may be about to appear.
			p.mu.Lock()
			if e, ok := p.files[path]; ok && e.Value.(*handle) == h {
				p.removeLocked(path)
				p.mu.Unlock()
				h.release()
			} else {
				p.mu.Unlock()
			}
		}
	}

	select {
	case <-h.ready:
	case <-ctx.Done():
		h.release()
		return nil, ctx.Err()
	}
	if h.err != nil {
		h.release()
		return nil, h.err
	}
	return h, nil
}

// open opens path's connection set with its first connection, so that a file that cannot be
// read (missing, damaged, without tiles) fails here, for every reader waiting on the open.
func (p *Pool) open(path string) (*connSet, error) {
	c, err := openTileConn(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, classify(err))
	}
	return newConnSet(path, p.conns, c), nil
}

// removeLocked takes path's handle out of the pool and returns it; the
// caller must release the pool's reference after unlocking.
func (p *Pool) removeLocked(path string) *handle {
	e, ok := p.files[path]
	if !ok {
		return nil
	}
	delete(p.files, path)
	p.lru.Remove(e)
	return e.Value.(*handle)
}

// evictLocked removes least recently used handles beyond maxOpen and returns
// them; the caller must release the pool's references after unlocking.
func (p *Pool) evictLocked() []*handle {
	var evicted []*handle
	for p.lru.Len() > p.maxOpen {
		h := p.lru.Back().Value.(*handle)
		p.removeLocked(h.path)
		evicted = append(evicted, h)
	}
	return evicted
}

// release drops one reference and closes the handle when it was the last.
func (h *handle) release() error {
	if h.refs.Add(-1) != 0 {
		return nil
	}
	<-h.ready // refs cannot reach zero while the opener holds its reference
	if h.conns == nil {
		return nil
	}
	return h.conns.close()
}
