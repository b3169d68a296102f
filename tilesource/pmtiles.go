package tilesource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/pmtiles"
)

// PMTilesStorage is an open archive's bytes: range reads, and Close when the source is done.
type PMTilesStorage interface {
	pmtiles.Storage
	Close() error
}

// PMTiles returns the source of a PMTiles archive whose bytes open opens (on the first tile,
// then kept open until Close and the reads in flight are done). key names this version of the
// bytes in cache, which keeps the archive's header and directories: a warm tile costs one range
// read, of its bytes. version is the ETag's stem; tiles above maxTileBytes are damaged.
func PMTiles(cache *pmtiles.Cache, key, version string, maxTileBytes int64, open func(context.Context) (PMTilesStorage, error)) Source {
	return &pmtilesSource{cache: cache, key: key, version: version, maxTileBytes: maxTileBytes, open: open,
		opening: make(chan struct{}, 1)}
}

// PMTilesFile is the source of the archive in the local file at path.
func PMTilesFile(cache *pmtiles.Cache, path, version string, maxTileBytes int64) Source {
	return PMTiles(cache, "file:"+path, version, maxTileBytes, func(context.Context) (PMTilesStorage, error) {
		return pmtiles.OpenFile(path)
	})
}

// PMTilesObject is the source of the archive in object key of store (a bucket or a directory).
func PMTilesObject(cache *pmtiles.Cache, store blobstore.Store, key, version string, maxTileBytes int64) Source {
	return PMTiles(cache, "object:"+store.String()+"/"+key, version, maxTileBytes, func(ctx context.Context) (PMTilesStorage, error) {
		o, err := store.Open(ctx, key)
		if err != nil {
			return nil, err
		}
		return blobStorage{o}, nil
	})
}

// blobStorage reads a blobstore.Object as a pmtiles.Storage.
type blobStorage struct{ blobstore.Object }

func (b blobStorage) Size() int64 { return b.Info().Size }

type pmtilesSource struct {
	cache        *pmtiles.Cache
	key, version string
	maxTileBytes int64
	open         func(context.Context) (PMTilesStorage, error)
	opening      chan struct{} // held by the one caller opening the storage
	mu           sync.Mutex
	storage      PMTilesStorage // nil until the first tile (or after a failed open)
	archive      *pmtiles.Archive
	users        int  // reads in flight
	closed       bool // Close was called: the last read closes storage
}

func (s *pmtilesSource) Tile(ctx context.Context, z, x, y int) (Tile, error) {
	a, err := s.acquire(ctx)
	if err != nil {
		return Tile{}, pmtilesError(err)
	}
	defer s.release()
	if z < 0 || z > 31 || x < 0 || y < 0 || x >= 1<<z || y >= 1<<z {
		return Tile{}, nil // the tile path checks coordinates; out of range is simply no tile
	}
	data, err := a.Tile(ctx, uint8(z), uint32(x), uint32(y))
	if err != nil {
		return Tile{}, pmtilesError(err)
	}
	if data == nil {
		return Tile{}, nil
	}
	t := Tile{Data: data}
	h, err := a.Header(ctx) // cached with the root the tile was found through
	if err != nil {
		return Tile{}, pmtilesError(err)
	}
	switch h.TileCompression {
	case pmtiles.CompressionGzip:
		t.Encoding = gzipEncoding
	case pmtiles.CompressionUnknown: // the archive does not say: as MBTiles tiles, by their bytes
		if mbtiles.IsGzip(data) {
			t.Encoding = gzipEncoding
		}
	}
	return t, nil
}

// acquire opens the archive's storage on first use and counts a read in flight. One caller
// opens (a bucket's open is a request); the others wait for it, each no longer than its ctx.
func (s *pmtilesSource) acquire(ctx context.Context) (*pmtiles.Archive, error) {
	if a := s.use(); a != nil {
		return a, nil
	}
	select {
	case s.opening <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.opening }()
	if a := s.use(); a != nil { // opened while this one waited
		return a, nil
	}
	st, err := s.open(ctx)
	if err != nil {
		return nil, err // not kept: the next tile tries again (storage may be back)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storage = st
	s.archive = pmtiles.NewArchive(st, s.key, s.cache, s.maxTileBytes)
	s.users++
	return s.archive, nil
}

// use counts a read in flight on the open storage; nil when it is not open.
func (s *pmtilesSource) use() *pmtiles.Archive {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.archive == nil {
		return nil
	}
	s.users++
	return s.archive
}

func (s *pmtilesSource) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.closed && s.users == 0 {
		s.closeStorage()
	}
}

func (s *pmtilesSource) closeStorage() {
	if s.storage != nil {
		_ = s.storage.Close()
		s.storage, s.archive = nil, nil
	}
}

// pmtilesError wraps a read error in its sentinel, as mbtilesError does; a cancelled or expired
// context stays as it is.
func pmtilesError(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, pmtiles.ErrDamaged), errors.Is(err, pmtiles.ErrInvalid), errors.Is(err, pmtiles.ErrTileTooLarge):
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, blobstore.ErrNotExist), errors.Is(err, blobstore.ErrChanged):
		// A changed object is a fault (keys are written once): read the dataset again, as for
		// a missing one.
		return fmt.Errorf("%w: %w", ErrMissing, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (s *pmtilesSource) Version() string { return s.version }

// Close lets the storage go once the reads in flight are done. The cache keeps the archive's
// directories (under its key, never reused) until they age out.
func (s *pmtilesSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.users == 0 {
		s.closeStorage()
	}
	return nil
}
