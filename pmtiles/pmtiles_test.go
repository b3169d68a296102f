package pmtiles

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/tilegate/tilegate/mbtiles"
)

// memStorage is an archive in memory that counts its reads.
type memStorage struct {
	b     []byte
	reads atomic.Int64
}

func (m *memStorage) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	m.reads.Add(1)
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memStorage) Size() int64 { return int64(len(m.b)) }

// Tile ids are positions on the zooms' Hilbert curves, zoom after zoom (the values the
// specification's reference implementations use), and IDToZXY inverts ZXYToID.
func TestTileIDs(t *testing.T) {
	for _, c := range []struct {
		z    uint8
		x, y uint32
		id   uint64
	}{
		{0, 0, 0, 0}, {1, 0, 0, 1}, {1, 0, 1, 2}, {1, 1, 1, 3}, {1, 1, 0, 4}, {2, 0, 0, 5},
		{12, 3423, 1763, 19078479},
	} {
		if got := ZXYToID(c.z, c.x, c.y); got != c.id {
			t.Errorf("ZXYToID(%d,%d,%d) = %d, want %d", c.z, c.x, c.y, got, c.id)
		}
		if z, x, y, ok := IDToZXY(c.id); !ok || z != c.z || x != c.x || y != c.y {
			t.Errorf("IDToZXY(%d) = %d/%d/%d %v", c.id, z, x, y, ok)
		}
	}
	// Every tile up to zoom 6 has its own id, and the ids of a zoom are exactly its range.
	seen := map[uint64]bool{}
	for z := uint8(0); z <= 6; z++ {
		n := uint32(1) << z
		for x := range n {
			for y := range n {
				id := ZXYToID(z, x, y)
				if id < firstID(z) || id >= firstID(z+1) || seen[id] {
					t.Fatalf("%d/%d/%d: id %d", z, x, y, id)
				}
				seen[id] = true
				if gz, gx, gy, _ := IDToZXY(id); gz != z || gx != x || gy != y {
					t.Fatalf("IDToZXY(ZXYToID(%d/%d/%d)) = %d/%d/%d", z, x, y, gz, gx, gy)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		z := uint8(r.IntN(32))
		x, y := uint32(r.Uint64N(1<<z)), uint32(r.Uint64N(1<<z))
		if gz, gx, gy, ok := IDToZXY(ZXYToID(z, x, y)); !ok || gz != z || gx != x || gy != y {
			t.Fatalf("round trip of %d/%d/%d: %d/%d/%d", z, x, y, gz, gx, gy)
		}
	}
	if _, _, _, ok := IDToZXY(firstID(32)); ok {
		t.Error("IDToZXY accepted an id beyond zoom 31")
	}
}

// testTiles is every tile of zooms 0..5 (1,365), with repeated contents: runs of identical
// tiles (run-length entries) and identical tiles apart (shared bytes).
func testTiles() map[[3]int][]byte {
	tiles := map[[3]int][]byte{}
	for z := range 6 {
		for x := range 1 << z {
			for y := range 1 << z {
				data := fmt.Appendf(nil, "\x1atile %d/%d/%d", z, x, y)
				if z == 5 && x < 16 {
					data = []byte("\x1aocean") // many, some consecutive on the curve
				}
				if (x+y)%7 == 3 {
					data = []byte("\x1aland")
				}
				tiles[[3]int{z, x, y}] = data
			}
		}
	}
	return tiles
}

// Archives of every layout the writer makes read back every tile, and nothing where there is
// none.
func TestRoundTrip(t *testing.T) {
	tiles := testTiles()
	// One hole, so "no tile" is tested inside the zooms too.
	delete(tiles, [3]int{4, 3, 3})
	cache := NewCache(0)
	for _, layout := range []struct {
		name string
		a    TestArchive
	}{
		{"root only, clustered", TestArchive{}},
		{"root only, unclustered, plain directories", TestArchive{Unclustered: true, InternalCompression: CompressionNone}},
		{"leaves", TestArchive{LeafSize: 50}},
		{"leaves, unclustered", TestArchive{LeafSize: 50, Unclustered: true}},
		{"leaves of leaves, plain directories", TestArchive{LeafSize: 10, Levels: 2, InternalCompression: CompressionNone}},
		{"leaves, gzipped tiles", TestArchive{LeafSize: 64, Gzip: true}},
	} {
		t.Run(layout.name, func(t *testing.T) {
			a := layout.a
			a.TileType = TileTypeMVT
			a.Tiles = tiles
			a.Metadata = map[string]any{"name": "Test", "attribution": "© Test",
				"vector_layers": []any{map[string]any{"id": "roads", "fields": map[string]any{}}}}
			a.Bounds = [4]float64{-10, -20, 30, 40}
			path := filepath.Join(t.TempDir(), "a.pmtiles")
			if err := WriteTestArchive(path, a); err != nil {
				t.Fatal(err)
			}
			f, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			md, h, err := Inspect(context.Background(), f, mbtiles.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if md.Format != "pbf" || md.Kind != "vector" || md.Name != "Test" || md.Attribution != "© Test" ||
				*md.MinZoom != 0 || *md.MaxZoom != 5 || *md.Bounds != [4]float64{-10, -20, 30, 40} ||
				*md.Center != [3]float64{10, 10, 0} || string(md.VectorLayers) != `[{"fields":{},"id":"roads"}]` {
				t.Errorf("metadata %+v (bounds %v, center %v, layers %s)", md, *md.Bounds, *md.Center, md.VectorLayers)
			}
			if layout.a.LeafSize > 0 && h.LeafLength == 0 {
				t.Fatal("no leaves written")
			}
			ar := NewArchive(f, path, cache, 0)
			for z := range 7 {
				for x := range 1 << z {
					for y := range 1 << z {
						got, err := ar.Tile(context.Background(), uint8(z), uint32(x), uint32(y))
						if err != nil {
							t.Fatalf("%d/%d/%d: %v", z, x, y, err)
						}
						want := tiles[[3]int{z, x, y}]
						if a.Gzip && got != nil {
							if got, err = gunzip(got); err != nil {
								t.Fatalf("%d/%d/%d: %v", z, x, y, err)
							}
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("%d/%d/%d: %q, want %q", z, x, y, got, want)
						}
					}
				}
			}
		})
	}
}

func gunzip(b []byte) ([]byte, error) {
	return decompress(b, CompressionGzip, 1<<20)
}

// A cold tile costs a read of the header and root, one per leaf level and one for its bytes; a
// warm one only its bytes, also through a new Archive of the same key (a dataset loaded again).
func TestWarmTileOneRead(t *testing.T) {
	b, err := BuildTestArchive(TestArchive{TileType: TileTypePNG, Tiles: testTiles(), LeafSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	m := &memStorage{b: b}
	cache := NewCache(0)
	ctx := context.Background()
	reads := func(a *Archive, z uint8, x, y uint32) int64 {
		t.Helper()
		before := m.reads.Load()
		if tile, err := a.Tile(ctx, z, x, y); err != nil || tile == nil {
			t.Fatalf("%d/%d/%d: %q, %v", z, x, y, tile, err)
		}
		return m.reads.Load() - before
	}
	a := NewArchive(m, "k1", cache, 0)
	if n := reads(a, 5, 10, 11); n != 3 {
		t.Errorf("cold tile: %d reads, want 3 (root, leaf, tile)", n)
	}
	if n := reads(a, 5, 10, 11); n != 1 {
		t.Errorf("warm tile: %d reads, want 1", n)
	}
	if n := reads(NewArchive(m, "k1", cache, 0), 5, 10, 11); n != 1 {
		t.Errorf("warm tile through a new archive of the same key: %d reads, want 1", n)
	}
	if n := reads(NewArchive(m, "k2", cache, 0), 5, 10, 11); n != 3 {
		t.Errorf("another key: %d reads, want 3", n)
	}
}

// The cache holds at most its bytes, however many archives pass through it.
func TestCacheBound(t *testing.T) {
	b, err := BuildTestArchive(TestArchive{TileType: TileTypePNG, Tiles: testTiles(), LeafSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	m := &memStorage{b: b}
	cache := NewCache(16 << 10)
	for i := range 200 {
		a := NewArchive(m, fmt.Sprint("archive-", i), cache, 0)
		for x := range 32 {
			if _, err := a.Tile(context.Background(), 5, uint32(x), 7); err != nil {
				t.Fatal(err)
			}
		}
		cache.mu.Lock()
		n, l := cache.bytes, cache.lru.Len()
		cache.mu.Unlock()
		if n > 16<<10 || n <= 0 || l == 0 {
			t.Fatalf("cache at %d bytes, %d directories", n, l)
		}
	}
}

// Tiles over the limit are refused when read (an archive accepted under a higher limit).
func TestTileTooLarge(t *testing.T) {
	b, err := BuildTestArchive(TestArchive{TileType: TileTypePNG, Tiles: map[[3]int][]byte{{0, 0, 0}: make([]byte, 100)}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewArchive(&memStorage{b: b}, "k", NewCache(0), 99).Tile(context.Background(), 0, 0, 0)
	if !errors.Is(err, ErrTileTooLarge) {
		t.Fatalf("got %v, want ErrTileTooLarge", err)
	}
}

// Every tile type maps to the format MBTiles uploads name, raster or vector.
func TestTileTypes(t *testing.T) {
	for tt, want := range map[TileType]string{TileTypeMVT: "pbf", TileTypePNG: "png", TileTypeJPEG: "jpg", TileTypeWebP: "webp", TileTypeAVIF: "avif"} {
		b, err := BuildTestArchive(TestArchive{TileType: tt, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		md, _, err := Inspect(context.Background(), &memStorage{b: b}, mbtiles.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		kind := "raster"
		if want == "pbf" {
			kind = "vector"
		}
		if md.Format != want || md.Kind != kind || md.VectorLayers != nil || md.Bounds != nil || md.Center != nil {
			t.Errorf("tile type %d: %+v", tt, md)
		}
	}
}

// metadata JSON of every shape reaches mbtiles.Metadata as MBTiles metadata does.
func TestMetadataShapes(t *testing.T) {
	for _, c := range []struct {
		raw                string
		name, attr, layers string
	}{
		{``, "", "", ""},
		{`{}`, "", "", ""},
		{`{"name": null, "vector_layers": null, "other": {"deep": [1, 2]}}`, "", "", ""},
		{`{"name":"N","attribution":"<a href=\"x\">A</a>","vector_layers":[{"id":"w"}],"description":"d"}`, "N", `<a href="x">A</a>`, `[{"id":"w"}]`},
	} {
		b, err := BuildTestArchive(TestArchive{TileType: TileTypeMVT, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("x")}, Raw: []byte(c.raw)})
		if err != nil {
			t.Fatal(err)
		}
		md, _, err := Inspect(context.Background(), &memStorage{b: b}, mbtiles.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", c.raw, err)
		}
		if md.Name != c.name || md.Attribution != c.attr || string(md.VectorLayers) != c.layers {
			t.Errorf("%s: %+v", c.raw, md)
		}
		if fmt.Sprint(md.VectorLayersLoc) != "[metadata vector_layers]" {
			t.Errorf("VectorLayersLoc %v", md.VectorLayersLoc)
		}
	}
}

// The metadata the writer is given is what it writes (the writer itself is tested here, since
// the other tests trust it).
func TestWriterMetadata(t *testing.T) {
	p, err := buildTestParts(TestArchive{TileType: TileTypeMVT, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("x")}, Metadata: map[string]any{"a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := gunzip(p.meta)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil || doc["a"] != 1.0 {
		t.Fatalf("%s %v", raw, err)
	}
}
