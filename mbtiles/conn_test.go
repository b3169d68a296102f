package mbtiles

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// A file's connections: at most maxInUse at once (a further reader waits, until its ctx ends),
// reused, and closed once idle for connMaxIdle.
func TestConnSet(t *testing.T) {
	path := writeFixture(t, "data.mbtiles", rasterFixture())
	first, err := openTileConn(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newConnSet(path, 2, first)
	defer s.close()
	ctx := context.Background()
	a, err := s.get(ctx)
	if err != nil || a != first {
		t.Fatalf("first get: %p, %v; want the idle connection %p", a, err, first)
	}
	b, err := s.get(ctx)
	if err != nil || b == a {
		t.Fatalf("second get: %p, %v; want a new connection", b, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if c, err := s.get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third get with two in use: %p, %v; want to wait until the deadline", c, err)
	}
	for _, c := range []*tileConn{a, b} {
		data, _, found, err := c.tile(DefaultMaxTileBytes, 2, 1, 2)
		if err != nil || !found || !bytes.Equal(data, pngTile) {
			t.Fatalf("read: %q, %v, %v", data, found, err)
		}
	}
	s.put(a)
	s.put(b)
	if c, err := s.get(ctx); err != nil || c != b {
		t.Fatalf("get after put: %p, %v; want the most recently used %p", c, err, b)
	} else {
		s.put(c)
	}

	// Age the idle connections past connMaxIdle: the reaper closes them.
	s.mu.Lock()
	for i := range s.idle {
		s.idle[i].since = time.Now().Add(-2 * connMaxIdle)
	}
	s.mu.Unlock()
	s.reap()
	s.mu.Lock()
	idle := len(s.idle)
	s.mu.Unlock()
	if idle != 0 || a.db != 0 || b.db != 0 {
		t.Fatalf("after reaping: %d idle, connections open %v %v", idle, a.db != 0, b.db != 0)
	}
	// A read after that opens a connection again.
	c, err := s.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, found, err := c.tile(DefaultMaxTileBytes, 2, 1, 2); err != nil || !found {
		t.Fatalf("read on a reopened connection: %v, %v", found, err)
	}
	s.put(c)
}
