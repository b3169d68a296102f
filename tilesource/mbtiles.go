package tilesource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/tilegate/tilegate/mbtiles"
)

// MBTiles returns the source of the MBTiles file at path, read through pool (which keeps it
// open); version names the file's bytes (files are never changed in place). Close forgets the
// file in the pool; reads in flight finish on it.
func MBTiles(pool *mbtiles.Pool, path, version string) Source {
	return &mbtilesSource{pool: pool, path: path, version: version}
}

type mbtilesSource struct {
	pool          *mbtiles.Pool
	path, version string
}

var gzipEncoding = "gzip"

func (s *mbtilesSource) Tile(ctx context.Context, z, x, y int) (Tile, error) {
	data, err := s.pool.Tile(ctx, s.path, z, x, y)
	if err != nil {
		return Tile{}, mbtilesError(err)
	}
	t := Tile{Data: data}
	if mbtiles.IsGzip(data) {
		t.Encoding = gzipEncoding
	}
	return t, nil
}

// mbtilesError wraps a read error in its sentinel; a cancelled or expired context stays as it is.
func mbtilesError(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, mbtiles.ErrDamaged), errors.Is(err, mbtiles.ErrTileTooLarge):
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", ErrMissing, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (s *mbtilesSource) Version() string { return s.version }

func (s *mbtilesSource) Close() error {
	s.pool.Forget(s.path)
	return nil
}

// Path is the file the source reads.
func (s *mbtilesSource) Path() string { return s.path }
