package tilesource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/pmtiles"
)

func sourceTiles() map[[3]int][]byte {
	tiles := map[[3]int][]byte{}
	for z := range 5 {
		for x := range 1 << z {
			for y := range 1 << z {
				if (x+y+z)%5 != 2 { // holes
					tiles[[3]int{z, x, y}] = fmt.Appendf(nil, "\x1a\x05tile %d/%d/%d", z, x, y)
				}
			}
		}
	}
	return tiles
}

// The same tiles answer alike from an MBTiles file and a PMTiles archive, bytes and encoding,
// gzipped or not, present or not.
func TestPMTilesLikeMBTiles(t *testing.T) {
	tiles := sourceTiles()
	pool := mbtiles.NewPool(4)
	defer pool.Close()
	cache := pmtiles.NewCache(0)
	ctx := context.Background()
	for _, gz := range []bool{false, true} {
		dir := t.TempDir()
		mb, pm := filepath.Join(dir, "a.mbtiles"), filepath.Join(dir, "a.pmtiles")
		if err := mbtiles.WriteTestFile(mb, mbtiles.TestFile{Format: "pbf", MaxZoom: 4, Tiles: tiles, Gzip: gz}); err != nil {
			t.Fatal(err)
		}
		if err := pmtiles.WriteTestArchive(pm, pmtiles.TestArchive{TileType: pmtiles.TileTypeMVT, Tiles: tiles, Gzip: gz, LeafSize: 20}); err != nil {
			t.Fatal(err)
		}
		m, p := MBTiles(pool, mb, "v"), PMTilesFile(cache, pm, "v", 1<<20)
		for z := range 6 {
			for x := range 1 << z {
				for y := range 1 << z {
					want, err := m.Tile(ctx, z, x, y)
					if err != nil {
						t.Fatal(err)
					}
					got, err := p.Tile(ctx, z, x, y)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Data, want.Data) || got.Encoding != want.Encoding {
						t.Fatalf("gzip %v, %d/%d/%d: PMTiles %q %q, MBTiles %q %q", gz, z, x, y, got.Data, got.Encoding, want.Data, want.Encoding)
					}
				}
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Read failures come out as the sentinel errors the tile path maps to statuses.
func TestPMTilesErrors(t *testing.T) {
	dir := t.TempDir()
	cache := pmtiles.NewCache(0)
	ctx := context.Background()
	good := filepath.Join(dir, "good.pmtiles")
	if err := pmtiles.WriteTestArchive(good, pmtiles.TestArchive{TileType: pmtiles.TileTypePNG, Tiles: map[[3]int][]byte{{0, 0, 0}: make([]byte, 100)}}); err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(dir, "damaged.pmtiles")
	b, _ := os.ReadFile(good)
	b[0] = 'X'
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection reset by peer")
	for _, c := range []struct {
		name string
		src  Source
		want error
	}{
		{"missing file", PMTilesFile(cache, filepath.Join(dir, "gone.pmtiles"), "v", 1<<20), ErrMissing},
		{"damaged file", PMTilesFile(cache, damaged, "v", 1<<20), ErrDamaged},
		{"tile over the limit", PMTilesFile(cache, good, "v", 99), ErrDamaged},
		{"missing object", PMTilesObject(cache, blobstore.NewLocal(dir), "gone.pmtiles", "v", 1<<20), ErrMissing},
		{"read failure", PMTiles(cache, "failing", "v", 1<<20, func(context.Context) (PMTilesStorage, error) {
			return failingStorage{boom}, nil
		}), ErrUnavailable},
		{"open failure", PMTiles(cache, "unopenable", "v", 1<<20, func(context.Context) (PMTilesStorage, error) {
			return nil, fmt.Errorf("open: %w", blobstore.ErrUnavailable)
		}), ErrUnavailable},
	} {
		_, err := c.src.Tile(ctx, 0, 0, 0)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A cancelled read is the context's error, not the storage's fault.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := PMTiles(cache, "cancelled", "v", 1<<20, func(ctx context.Context) (PMTilesStorage, error) {
		return failingStorage{ctx.Err()}, nil
	}).Tile(cctx, 0, 0, 0)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("cancelled: %v", err)
	}
	// An object in a blob store serves its tiles.
	src := PMTilesObject(cache, blobstore.NewLocal(dir), "good.pmtiles", "v", 1<<20)
	if tile, err := src.Tile(ctx, 0, 0, 0); err != nil || len(tile.Data) != 100 || tile.Encoding != "" {
		t.Errorf("object: %d bytes %q, %v", len(tile.Data), tile.Encoding, err)
	}
}

type failingStorage struct{ err error }

func (f failingStorage) ReadAt(context.Context, []byte, int64) (int, error) { return 0, f.err }
func (f failingStorage) Size() int64                                        { return 1 << 20 }
func (f failingStorage) Close() error                                       { return nil }

// Close lets a read in flight finish on the open storage, then closes it, once.
func TestPMTilesCloseAfterReads(t *testing.T) {
	b, err := pmtiles.BuildTestArchive(pmtiles.TestArchive{TileType: pmtiles.TileTypePNG, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("png")}})
	if err != nil {
		t.Fatal(err)
	}
	st := &blockingStorage{b: b, reading: make(chan struct{}), proceed: make(chan struct{})}
	opens := 0
	src := PMTiles(pmtiles.NewCache(0), "k", "v", 1<<20, func(context.Context) (PMTilesStorage, error) {
		opens++
		return st, nil
	})
	done := make(chan error)
	go func() {
		_, err := src.Tile(context.Background(), 0, 0, 0)
		done <- err
	}()
	<-st.reading
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if st.closed.Load() != 0 {
		t.Fatal("storage closed under a read in flight")
	}
	close(st.proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st.closed.Load() != 1 || opens != 1 {
		t.Fatalf("closed %d times, opened %d", st.closed.Load(), opens)
	}
}

type blockingStorage struct {
	b                []byte
	reading, proceed chan struct{}
	once             atomic.Bool
	closed           atomic.Int32
}

func (s *blockingStorage) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if s.closed.Load() != 0 {
		return 0, os.ErrClosed
	}
	if s.once.CompareAndSwap(false, true) {
		close(s.reading)
		<-s.proceed
	}
	n := copy(p, s.b[min(off, int64(len(s.b))):])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (s *blockingStorage) Size() int64  { return int64(len(s.b)) }
func (s *blockingStorage) Close() error { s.closed.Add(1); return nil }

// The first tiles of a source open its storage once however many ask at once, and a caller
// waiting for that open gives up when its own context ends.
func TestPMTilesOpensOnce(t *testing.T) {
	b, err := pmtiles.BuildTestArchive(pmtiles.TestArchive{TileType: pmtiles.TileTypePNG, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("png")}})
	if err != nil {
		t.Fatal(err)
	}
	var opens atomic.Int32
	release := make(chan struct{})
	src := PMTiles(pmtiles.NewCache(0), "k", "v", 1<<20, func(context.Context) (PMTilesStorage, error) {
		opens.Add(1)
		<-release
		st := &blockingStorage{b: b}
		st.once.Store(true) // never blocks a read
		return st, nil
	})
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := src.Tile(context.Background(), 0, 0, 0)
			errs <- err
		}()
	}
	for opens.Load() == 0 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := src.Tile(ctx, 0, 0, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter past its deadline: %v", err)
	}
	close(release)
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := opens.Load(); n != 1 {
		t.Fatalf("opened %d times", n)
	}
}
