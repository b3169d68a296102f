package sqliteproto

import (
	"container/list"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// libReader reads tiles through modernc.org/sqlite/lib directly: one connection, the tile
// SELECT prepared once, and per read only bind, step, column and reset. This is the shape a
// conn-level "prepare once, step many" reader in mbtiles would have; it links no driver, so
// it coexists with glebarez/go-sqlite.
type libReader struct {
	mu   sync.Mutex
	tls  *libc.TLS
	db   uintptr
	stmt uintptr
}

func openLib(path string) (*libReader, error) {
	r := &libReader{tls: libc.NewTLS()}
	name, err := libc.CString(roURI(path))
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(r.tls, name)
	pp := r.tls.Alloc(8)
	defer r.tls.Free(8)
	if rc := sqlite3.Xsqlite3_open_v2(r.tls, name, pp, sqlite3.SQLITE_OPEN_READONLY|sqlite3.SQLITE_OPEN_URI, 0); rc != sqlite3.SQLITE_OK {
		return nil, fmt.Errorf("open %s: rc %d", path, rc)
	}
	r.db = *(*uintptr)(ptr(pp))
	q, err := libc.CString(tileQuery)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(r.tls, q)
	if rc := sqlite3.Xsqlite3_prepare_v3(r.tls, r.db, q, -1, sqlite3.SQLITE_PREPARE_PERSISTENT, pp, 0); rc != sqlite3.SQLITE_OK {
		return nil, fmt.Errorf("prepare: rc %d", rc)
	}
	r.stmt = *(*uintptr)(ptr(pp))
	return r, nil
}

func (r *libReader) close() {
	sqlite3.Xsqlite3_finalize(r.tls, r.stmt)
	sqlite3.Xsqlite3_close_v2(r.tls, r.db)
	r.tls.Close()
}

var errNoTile = errors.New("no tile")

// tile calls use with the stored bytes, valid only during the call (they are SQLite's page
// memory): a caller copies them, or writes them out before returning.
func (r *libReader) tile(z, x, y int, use func([]byte)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer sqlite3.Xsqlite3_reset(r.tls, r.stmt)
	sqlite3.Xsqlite3_bind_int(r.tls, r.stmt, 1, int32(z))
	sqlite3.Xsqlite3_bind_int(r.tls, r.stmt, 2, int32(x))
	sqlite3.Xsqlite3_bind_int(r.tls, r.stmt, 3, int32(y))
	switch rc := sqlite3.Xsqlite3_step(r.tls, r.stmt); rc {
	case sqlite3.SQLITE_ROW:
	case sqlite3.SQLITE_DONE:
		return errNoTile
	default:
		return fmt.Errorf("step: rc %d", rc)
	}
	p := sqlite3.Xsqlite3_column_blob(r.tls, r.stmt, 0)
	n := sqlite3.Xsqlite3_column_bytes(r.tls, r.stmt, 0)
	if p == 0 {
		use(nil)
		return nil
	}
	use(unsafe.Slice((*byte)(ptr(p)), n))
	return nil
}

func benchLib(b *testing.B, f *tileFile, copyOut bool) {
	r, err := openLib(f.path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	order := mrand.Perm(len(f.coords))
	b.ReportAllocs()
	b.ResetTimer()
	var sink int
	for i := range b.N {
		c := f.coords[order[i%len(order)]]
		err := r.tile(c[0], c[1], c[2], func(data []byte) {
			if copyOut {
				data = append([]byte(nil), data...)
			}
			sink += len(data)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if sink == 0 {
		b.Fatal("no bytes read")
	}
}

// BenchmarkLibCopy: prepared once, the tile copied into a fresh Go slice (a drop-in for
// Pool.Tile's contract).
func BenchmarkLibCopy(b *testing.B) {
	for _, n := range []string{"small", "large"} {
		b.Run(n, func(b *testing.B) { benchLib(b, files[n], true) })
	}
}

// BenchmarkLibNoCopy: prepared once, the tile used in place (a handler writing it from
// SQLite's memory under the connection's lock).
func BenchmarkLibNoCopy(b *testing.B) {
	for _, n := range []string{"small", "large"} {
		b.Run(n, func(b *testing.B) { benchLib(b, files[n], false) })
	}
}

// hotCache is a bounded LRU of tiles keyed by file and z/x/y: the cheapest shape of a hot-tile
// cache in front of the reader (one mutex; a sharded one would scale across cores).
type hotCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	items map[cacheKey]*list.Element
	lru   list.List
}

type cacheKey struct {
	file    string
	z, x, y int32
}

type cacheEntry struct {
	key  cacheKey
	data []byte
}

func (c *hotCache) get(k cacheKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).data, true
}

func (c *hotCache) put(k cacheKey, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		old := c.lru.Back()
		ent := old.Value.(*cacheEntry)
		c.lru.Remove(old)
		delete(c.items, ent.key)
		c.size -= int64(len(ent.data))
	}
}

// BenchmarkHotCacheHit: a read served from the cache once every tile of the file is in it.
func BenchmarkHotCacheHit(b *testing.B) {
	for _, n := range []string{"small", "large"} {
		b.Run(n, func(b *testing.B) {
			f := files[n]
			r, err := openLib(f.path)
			if err != nil {
				b.Fatal(err)
			}
			defer r.close()
			c := &hotCache{max: 64 << 20, items: map[cacheKey]*list.Element{}}
			for _, co := range f.coords {
				_ = r.tile(co[0], co[1], co[2], func(d []byte) {
					c.put(cacheKey{f.path, int32(co[0]), int32(co[1]), int32(co[2])}, append([]byte(nil), d...))
				})
			}
			order := mrand.Perm(len(f.coords))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				co := f.coords[order[i%len(order)]]
				if _, ok := c.get(cacheKey{f.path, int32(co[0]), int32(co[1]), int32(co[2])}); !ok {
					b.Fatal("miss")
				}
			}
		})
	}
}

// ptr turns an address in libc's (non-Go) memory into a pointer; the memory is not moved or
// collected by Go, so holding it as uintptr in between is safe.
func ptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }
