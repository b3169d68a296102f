package mbtiles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// tileConn is one read-only SQLite connection to an MBTiles file with the tile SELECT prepared
// once; a read only binds, steps, copies the blob out and resets.
//
// Why not database/sql: the driver in use (glebarez/go-sqlite, the "sqlite" name Inspect and
// the store use) prepares the statement again inside every query, even through a *sql.Stmt,
// and allocates for database/sql's plumbing. Measured on one file, one core, a tile already
// in the OS page cache (bench/peers/sqliteproto: cd bench/peers/sqliteproto && go test
// -bench . -benchmem): database/sql on glebarez 8.3 µs and 17 allocs per read; this shape,
// on modernc.org/sqlite/lib (the C SQLite glebarez itself is built on, already in the module
// graph), 1.9 µs and 1 alloc (the returned slice). Pool.read's comment has the
// figures through the pool.
//
// A tileConn is used by one goroutine at a time (the pool hands it out), so SQLite's own
// mutexes are off (SQLITE_OPEN_NOMUTEX) and its libc.TLS is its own.
type tileConn struct {
	tls  *libc.TLS
	db   uintptr // sqlite3*
	stmt uintptr // sqlite3_stmt* of tileQuery
}

// cmem turns an address in SQLite's (libc's) memory into a pointer. That memory is not Go's
// heap, so the garbage collector neither moves nor frees it; the conversion goes through
// memory so that vet's uintptr check, meant for Go pointers, does not apply.
func cmem(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// sqliteError is a failure SQLite reported, with its extended result code.
type sqliteError struct {
	code int
	msg  string
}

func (e *sqliteError) Error() string { return e.msg }

// Code is the extended result code (the primary code is its low byte), as the driver's
// errors give it, so classify reads both alike.
func (e *sqliteError) Code() int { return e.code }

// openTileConn opens path read-only and immutable (see dsn) and prepares tileQuery on it.
func openTileConn(path string) (*tileConn, error) {
	// SQLite's "unable to open database file" hides the cause; stat first so that a
	// missing file is reported as fs.ErrNotExist.
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	c := &tileConn{tls: libc.NewTLS()}
	if err := c.open(path); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *tileConn) open(path string) error {
	name, err := libc.CString(dsn(path))
	if err != nil {
		return err
	}
	defer libc.Xfree(c.tls, name)
	out := c.tls.Alloc(int(unsafe.Sizeof(uintptr(0))))
	defer c.tls.Free(int(unsafe.Sizeof(uintptr(0))))

	flags := int32(sqlite3.SQLITE_OPEN_READONLY | sqlite3.SQLITE_OPEN_URI | sqlite3.SQLITE_OPEN_NOMUTEX |
		sqlite3.SQLITE_OPEN_EXRESCODE)
	rc := sqlite3.Xsqlite3_open_v2(c.tls, name, out, flags, 0)
	// open_v2 returns a handle (to report the error with, then close) even when it fails.
	c.db = *(*uintptr)(cmem(out))
	if rc != sqlite3.SQLITE_OK {
		return c.err("open", rc)
	}
	q, err := libc.CString(tileQuery)
	if err != nil {
		return err
	}
	defer libc.Xfree(c.tls, q)
	// PERSISTENT: the statement lives as long as the connection.
	if rc := sqlite3.Xsqlite3_prepare_v3(c.tls, c.db, q, -1, sqlite3.SQLITE_PREPARE_PERSISTENT, out, 0); rc != sqlite3.SQLITE_OK {
		return c.err("prepare the tile query", rc)
	}
	c.stmt = *(*uintptr)(cmem(out))
	return nil
}

// tile reads the tile at TMS z/x/row: found is false when there is none; size is the stored
// blob's length, and data is nil (not loaded) when size is above limit. A NULL or empty
// tile_data is found with an empty, non-nil data.
func (c *tileConn) tile(limit int64, z, x, row int) (data []byte, size int64, found bool, err error) {
	defer sqlite3.Xsqlite3_reset(c.tls, c.stmt)
	for i, v := range [...]int64{limit, int64(z), int64(x), int64(row)} {
		if rc := sqlite3.Xsqlite3_bind_int64(c.tls, c.stmt, int32(i+1), v); rc != sqlite3.SQLITE_OK {
			return nil, 0, false, c.err("bind", rc)
		}
	}
	switch rc := sqlite3.Xsqlite3_step(c.tls, c.stmt); rc {
	case sqlite3.SQLITE_ROW:
	case sqlite3.SQLITE_DONE:
		return nil, 0, false, nil
	default:
		return nil, 0, false, c.err("step", rc)
	}
	size = sqlite3.Xsqlite3_column_int64(c.tls, c.stmt, 1)
	if size > limit {
		return nil, size, true, nil
	}
	p := sqlite3.Xsqlite3_column_blob(c.tls, c.stmt, 0)
	n := sqlite3.Xsqlite3_column_bytes(c.tls, c.stmt, 0)
	if p == 0 || n <= 0 {
		return []byte{}, size, true, nil
	}
	// The blob is SQLite's until the reset: copy it out (the one allocation of a read).
	data = make([]byte, n)
	copy(data, unsafe.Slice((*byte)(cmem(p)), n))
	return data, size, true, nil
}

// err describes a failed call with SQLite's result code and message.
func (c *tileConn) err(what string, rc int32) error {
	code := int(rc)
	msg := libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, rc))
	if c.db != 0 {
		code = int(sqlite3.Xsqlite3_extended_errcode(c.tls, c.db))
		if m := libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db)); m != "" && m != msg {
			msg += ": " + m
		}
	}
	return &sqliteError{code: code, msg: fmt.Sprintf("%s: %s (%d)", what, msg, code)}
}

// close finalizes the statement and closes the connection.
func (c *tileConn) close() error {
	var err error
	if c.stmt != 0 {
		sqlite3.Xsqlite3_finalize(c.tls, c.stmt)
		c.stmt = 0
	}
	if c.db != 0 {
		if rc := sqlite3.Xsqlite3_close_v2(c.tls, c.db); rc != sqlite3.SQLITE_OK {
			err = c.err("close", rc)
		}
		c.db = 0
	}
	if c.tls != nil {
		c.tls.Close()
		c.tls = nil
	}
	return err
}

// connSet is one file's connections: at most maxInUse in use at once, opened as reads need them,
// reused most recently used first (its page cache is warm), and each closed after connMaxIdle
// unused, so a file nobody reads holds no descriptors or page caches. All are closed with the
// file (close).
type connSet struct {
	path  string
	slots chan struct{} // one token per connection in use: bounds them to cap(slots)

	mu     sync.Mutex
	idle   []idleConn  // oldest first; guarded by mu
	reaper *time.Timer // closes connections idle too long; nil when none are idle; guarded by mu
	closed bool        // guarded by mu
}

type idleConn struct {
	c     *tileConn
	since time.Time
}

func newConnSet(path string, maxInUse int, first *tileConn) *connSet {
	s := &connSet{path: path, slots: make(chan struct{}, max(maxInUse, 1))}
	s.idle = []idleConn{{c: first, since: time.Now()}}
	s.reaper = time.AfterFunc(connMaxIdle, s.reap)
	return s
}

// get returns a connection for the caller's sole use until put; it waits for one while maxInUse
// are in use, until ctx ends.
func (s *connSet) get(ctx context.Context) (*tileConn, error) {
	select {
	case s.slots <- struct{}{}:
	default:
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1].c
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, nil
	}
	closed := s.closed
	s.mu.Unlock()
	if closed { // unreachable while the caller holds the file's handle; kept as a guard
		<-s.slots
		return nil, errPoolClosed
	}
	c, err := openTileConn(s.path)
	if err != nil {
		<-s.slots
		return nil, fmt.Errorf("open %s: %w", s.path, err)
	}
	return c, nil
}

// put gives back a connection get returned.
func (s *connSet) put(c *tileConn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.close()
	} else {
		s.idle = append(s.idle, idleConn{c: c, since: time.Now()})
		if s.reaper == nil {
			s.reaper = time.AfterFunc(connMaxIdle, s.reap)
		}
		s.mu.Unlock()
	}
	<-s.slots
}

// reap closes the connections idle for connMaxIdle and sets itself to run when the next would.
func (s *connSet) reap() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	cutoff := time.Now().Add(-connMaxIdle)
	n := 0
	for n < len(s.idle) && !s.idle[n].since.After(cutoff) {
		n++
	}
	old := make([]idleConn, n)
	copy(old, s.idle)
	s.idle = append(s.idle[:0], s.idle[n:]...)
	if len(s.idle) > 0 {
		s.reaper.Reset(time.Until(s.idle[0].since.Add(connMaxIdle)))
	} else {
		s.reaper = nil
	}
	s.mu.Unlock()
	for _, ic := range old {
		ic.c.close()
	}
}

// close closes every connection; the caller guarantees none is in use (the file's last
// reference is gone).
func (s *connSet) close() error {
	s.mu.Lock()
	s.closed = true
	if s.reaper != nil {
		s.reaper.Stop()
		s.reaper = nil
	}
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	var errs []error
	for _, ic := range idle {
		errs = append(errs, ic.c.close())
	}
	return errors.Join(errs...)
}

// isClosed reports whether close has run (tests).
func (s *connSet) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
