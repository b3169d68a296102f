package pmtiles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"

	"github.com/tilegate/tilegate/mbtiles"
)

// Storage is an archive's bytes, read by range: a local file (File) or an object in a bucket
// (blobstore.Object behind an adapter). ReadAt behaves as io.ReaderAt's: n < len(p) only with
// an error (io.EOF at the end).
type Storage interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Size() int64
}

// File is a local archive as Storage. Reads ignore the context: a local read is not
// interruptible, and is short (a tile or a directory, both bounded).
type File struct {
	f    *os.File
	size int64
}

// OpenFile opens the archive at path for reading.
func OpenFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w: not a regular file", path, ErrInvalid)
	}
	return &File{f: f, size: fi.Size()}, nil
}

func (f *File) ReadAt(_ context.Context, p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }
func (f *File) Size() int64                                                { return f.size }
func (f *File) Close() error                                               { return f.f.Close() }

// readFull reads len(p) bytes at off; a short read at the end of the archive is ErrInvalid (a
// section the header places beyond the bytes there are), any other failure is returned as it is.
func readFull(ctx context.Context, s Storage, p []byte, off int64) error {
	n, err := s.ReadAt(ctx, p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return invalidf("truncated: %d of %d bytes at offset %d", n, len(p), off)
	}
	return err
}

// Cache keeps archives' headers and directories, at most a number of bytes of them, least
// recently used evicted first; one Cache serves every archive of a process. Entries are keyed by
// the archive's key (which must name one version of its bytes: tilegate's file and object names
// are unique per upload) and the directory's offset, and are never stale: an archive replaced by
// an upload has a new key, and its old entries age out.
//
// golang-lru bounds entries by count; a directory's cost varies from a few entries to
// maxDirectoryEntries, so the byte bound is kept here around its simplelru.
type Cache struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[dirKey, *directory]
	bytes    int64
	maxBytes int64
	flight   singleflight.Group
}

// DefaultCacheBytes is a Cache's bound when NewCache is given none: the roots (at most 16 KiB
// stored, typically a few thousand entries) of hundreds of archives and their hot leaves.
const DefaultCacheBytes = 64 << 20

// NewCache returns a cache of at most maxBytes (DefaultCacheBytes when <= 0).
func NewCache(maxBytes int64) *Cache {
	if maxBytes <= 0 {
		maxBytes = DefaultCacheBytes
	}
	c := &Cache{maxBytes: maxBytes}
	// The count bound is never the one reached: the byte bound evicts first.
	c.lru, _ = simplelru.NewLRU[dirKey, *directory](1<<30, func(_ dirKey, d *directory) { c.bytes -= d.cost })
	return c
}

type dirKey struct {
	archive string
	offset  uint64 // 0: the header and root directory (no directory starts at 0: the header does)
}

// directory is a cached directory; for the root, the archive's header too.
type directory struct {
	header  Header
	entries []Entry
	cost    int64
}

// directoryOverhead approximates a cached directory's memory besides its entries: the struct,
// its key (the archive's key string), the LRU's element and map slot.
const directoryOverhead = 256

func (c *Cache) get(k dirKey) (*directory, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(k)
}

func (c *Cache) add(k dirKey, d *directory) {
	d.cost = int64(len(d.entries))*entryBytes + directoryOverhead + int64(len(k.archive))
	if d.cost > c.maxBytes/4 {
		return // one huge directory must not flush every other archive's
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lru.Contains(k) {
		return
	}
	c.lru.Add(k, d)
	c.bytes += d.cost
	for c.bytes > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// load returns the directory at k from the cache, or reads it once however many readers ask
// at the same time (a cold archive under load costs one read per directory).
func (c *Cache) load(k dirKey, read func() (*directory, error)) (*directory, error) {
	if d, ok := c.get(k); ok {
		return d, nil
	}
	v, err, _ := c.flight.Do(k.archive+"\x00"+strconv.FormatUint(k.offset, 10), func() (any, error) {
		if d, ok := c.get(k); ok {
			return d, nil
		}
		d, err := read()
		if err != nil {
			return nil, err
		}
		c.add(k, d)
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*directory), nil
}

// Archive serves the tiles of one archive with range reads. It is safe for concurrent use.
// Its reads check the bytes they meet as Inspect does (a file damaged after upload is
// ErrDamaged, never a panic or a tile from outside the tile data), but do not repeat Inspect's
// whole-archive checks.
type Archive struct {
	src          Storage
	key          string
	cache        *Cache
	maxTileBytes int64
}

// NewArchive returns the archive whose bytes src reads. key names this version of the bytes in
// cache (unique per upload); tiles above maxTileBytes (mbtiles.DefaultMaxTileBytes when <= 0) are refused with ErrTileTooLarge. No I/O
// happens until the first call.
func NewArchive(src Storage, key string, cache *Cache, maxTileBytes int64) *Archive {
	if maxTileBytes <= 0 {
		maxTileBytes = mbtiles.DefaultMaxTileBytes
	}
	return &Archive{src: src, key: key, cache: cache, maxTileBytes: maxTileBytes}
}

// damaged marks a format error met while serving as ErrDamaged.
func damaged(err error) error {
	if errors.Is(err, ErrInvalid) {
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return err
}

// root returns the header and root directory: one read of the archive's first 16 KiB.
func (a *Archive) root(ctx context.Context) (*directory, error) {
	return a.cache.load(dirKey{archive: a.key}, func() (*directory, error) {
		h, root, err := readRoot(ctx, a.src)
		if err != nil {
			return nil, damaged(err)
		}
		return &directory{header: h, entries: root}, nil
	})
}

// readRoot reads and checks the header and decodes the root directory, in one read.
func readRoot(ctx context.Context, src Storage) (Header, []Entry, error) {
	size := src.Size()
	buf := make([]byte, min(size, rootReadLen))
	if err := readFull(ctx, src, buf, 0); err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(buf, size)
	if err != nil {
		return h, nil, err
	}
	raw, err := decompress(buf[h.RootOffset:h.RootOffset+h.RootLength], h.InternalCompression, maxDirectoryBytes)
	if err != nil {
		return h, nil, fmt.Errorf("root directory: %w", err)
	}
	entries, err := decodeDirectory(raw)
	if err != nil {
		return h, nil, fmt.Errorf("root directory: %w", err)
	}
	return h, entries, nil
}

// Header returns the archive's header.
func (a *Archive) Header(ctx context.Context) (Header, error) {
	r, err := a.root(ctx)
	if err != nil {
		return Header{}, err
	}
	return r.header, nil
}

// leaf returns the leaf directory e points to.
func (a *Archive) leaf(ctx context.Context, h Header, e Entry) (*directory, error) {
	return a.cache.load(dirKey{archive: a.key, offset: h.LeafOffset + e.Offset}, func() (*directory, error) {
		entries, err := readLeaf(ctx, a.src, h, e)
		if err != nil {
			return nil, damaged(err)
		}
		return &directory{entries: entries}, nil
	})
}

// readLeaf reads and decodes the leaf directory e points to, held inside the leaf section.
func readLeaf(ctx context.Context, src Storage, h Header, e Entry) ([]Entry, error) {
	if e.Offset > h.LeafLength || uint64(e.Length) > h.LeafLength-e.Offset {
		return nil, invalidf("a leaf directory (offset %d, %d bytes) is outside the leaf section (%d bytes)", e.Offset, e.Length, h.LeafLength)
	}
	if e.Length > maxDirectoryBytes {
		return nil, invalidf("a leaf directory of %d bytes (at most %d)", e.Length, maxDirectoryBytes)
	}
	buf := make([]byte, e.Length)
	if err := readFull(ctx, src, buf, int64(h.LeafOffset+e.Offset)); err != nil {
		return nil, err
	}
	raw, err := decompress(buf, h.InternalCompression, maxDirectoryBytes)
	if err != nil {
		return nil, fmt.Errorf("leaf directory: %w", err)
	}
	entries, err := decodeDirectory(raw)
	if err != nil {
		return nil, fmt.Errorf("leaf directory: %w", err)
	}
	return entries, nil
}

// Tile returns the tile at XYZ z/x/y as stored (compressed as the header's TileCompression
// says), or nil when the archive has none there. Coordinates must be valid for z.
func (a *Archive) Tile(ctx context.Context, z uint8, x, y uint32) ([]byte, error) {
	r, err := a.root(ctx)
	if err != nil {
		return nil, err
	}
	h := r.header
	if z < h.MinZoom || z > h.MaxZoom {
		return nil, nil
	}
	id := ZXYToID(z, x, y)
	dir := r
	for depth := 1; ; depth++ {
		e, ok := findEntry(dir.entries, id)
		if !ok {
			return nil, nil
		}
		if e.RunLength > 0 {
			return a.tileData(ctx, h, e, z, x, y)
		}
		if depth >= maxDepth {
			return nil, damaged(invalidf("leaf directories nested deeper than %d levels", maxDepth))
		}
		if dir, err = a.leaf(ctx, h, e); err != nil {
			return nil, err
		}
	}
}

func (a *Archive) tileData(ctx context.Context, h Header, e Entry, z uint8, x, y uint32) ([]byte, error) {
	if e.Offset > h.DataLength || uint64(e.Length) > h.DataLength-e.Offset {
		return nil, damaged(invalidf("tile %d/%d/%d (offset %d, %d bytes) is outside the tile data", z, x, y, e.Offset, e.Length))
	}
	if int64(e.Length) > a.maxTileBytes {
		return nil, fmt.Errorf("%w: tile %d/%d/%d is %d bytes, the limit %d", ErrTileTooLarge, z, x, y, e.Length, a.maxTileBytes)
	}
	buf := make([]byte, e.Length)
	if err := readFull(ctx, a.src, buf, int64(h.DataOffset+e.Offset)); err != nil {
		return nil, damaged(err)
	}
	return buf, nil
}
