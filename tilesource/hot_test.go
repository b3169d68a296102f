package tilesource

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tilegate/tilegate/mbtiles"
)

// writeFixture writes an MBTiles file in a temporary directory.
func writeFixture(tb testing.TB, name string, f mbtiles.TestFile) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := mbtiles.WriteTestFile(path, f); err != nil {
		tb.Fatal(err)
	}
	return path
}

var pngTile = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")

// A replaced dataset's tiles are not served from the cache once its source is closed: the new
// upload's source (a new file) serves its own tiles.
func TestHotTilesFollowTheSource(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1.mbtiles"), filepath.Join(dir, "v2.mbtiles")
	for path, data := range map[string]string{v1: "v1", v2: "v2"} {
		if err := mbtiles.WriteTestFile(path, mbtiles.TestFile{Format: "png", Tiles: map[[3]int][]byte{{0, 0, 0}: []byte(data)}}); err != nil {
			t.Fatal(err)
		}
	}
	p := mbtiles.NewPool(4)
	defer p.Close()
	hot := NewHot(1 << 20)
	ctx := context.Background()
	old := hot.Wrap(MBTiles(p, v1, "1"))
	for range 2 {
		if got, err := old.Tile(ctx, 0, 0, 0); err != nil || string(got.Data) != "v1" {
			t.Fatalf("before replace: %q, %v", got.Data, err)
		}
	}
	if st := hot.Stats(); st.Hits != 1 || st.Entries != 1 {
		t.Fatalf("stats after two reads: %+v, want 1 hit, 1 entry", st)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if st := hot.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("closed source's tiles still cached: %+v", st)
	}
	cur := hot.Wrap(MBTiles(p, v2, "2"))
	if got, err := cur.Tile(ctx, 0, 0, 0); err != nil || string(got.Data) != "v2" {
		t.Fatalf("after replace: %q, %v", got.Data, err)
	}
	if cur.Version() != "2" {
		t.Errorf("Version %q, want 2", cur.Version())
	}
}

// Missing tiles are remembered as missing, empty ones as empty (not missing), gzip as gzip.
func TestHotTilesMissingAndEmpty(t *testing.T) {
	gz := []byte{0x1f, 0x8b, 8, 0, 0, 0}
	path := writeFixture(t, "data.mbtiles", mbtiles.TestFile{Format: "png", MaxZoom: 1,
		Tiles: map[[3]int][]byte{{0, 0, 0}: {}, {1, 0, 0}: pngTile, {1, 0, 1}: gz}})
	p := mbtiles.NewPool(4)
	defer p.Close()
	hot := NewHot(1 << 20)
	src := hot.Wrap(MBTiles(p, path, "v"))
	ctx := context.Background()
	for i := range 2 {
		if got, err := src.Tile(ctx, 0, 0, 0); err != nil || got.Data == nil || len(got.Data) != 0 {
			t.Errorf("read %d: empty tile = %#v, %v; want a non-nil empty slice", i, got.Data, err)
		}
		if got, err := src.Tile(ctx, 1, 1, 1); err != nil || got.Data != nil {
			t.Errorf("read %d: missing tile = %#v, %v; want nil", i, got.Data, err)
		}
		if got, err := src.Tile(ctx, 1, 0, 1); err != nil || !bytes.Equal(got.Data, gz) || got.Encoding != "gzip" {
			t.Errorf("read %d: gzip tile = %#v %q, %v", i, got.Data, got.Encoding, err)
		}
	}
	if st := hot.Stats(); st.Hits != 3 || st.Misses != 3 {
		t.Errorf("stats: %+v, want 3 hits and 3 misses", st)
	}
}

// The bound holds however many tiles are read, tiles above a 64th of it are not kept, and a
// bound below 1 turns the cache off.
func TestHotTilesBound(t *testing.T) {
	tiles := map[[3]int][]byte{}
	for x := range 16 {
		for y := range 16 {
			tiles[[3]int{4, x, y}] = bytes.Repeat([]byte{byte(x), byte(y)}, 500)
		}
	}
	tiles[[3]int{0, 0, 0}] = make([]byte, 8<<10)
	path := writeFixture(t, "data.mbtiles", mbtiles.TestFile{Format: "png", MaxZoom: 4, Tiles: tiles})
	p := mbtiles.NewPool(4)
	defer p.Close()
	ctx := context.Background()
	const bound = 256 << 10
	hot := NewHot(bound)
	src := hot.Wrap(MBTiles(p, path, "v"))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		x, y := rng.IntN(16), rng.IntN(16)
		got, err := src.Tile(ctx, 4, x, y)
		if err != nil || !bytes.Equal(got.Data, tiles[[3]int{4, x, y}]) {
			t.Fatalf("4/%d/%d = %d bytes, %v", x, y, len(got.Data), err)
		}
		if st := hot.Stats(); st.Bytes > bound {
			t.Fatalf("%d bytes cached, bound %d", st.Bytes, bound)
		}
	}
	st := hot.Stats()
	if st.Hits == 0 || st.Entries == 0 || st.Entries == 256 {
		t.Errorf("stats %+v: want some hits, and some but not all 256 tiles kept", st)
	}
	before := hot.Stats().Entries
	if _, err := src.Tile(ctx, 0, 0, 0); err != nil { // 8 KiB > bound/64
		t.Fatal(err)
	}
	if st := hot.Stats(); st.Entries > before {
		t.Errorf("a tile above the entry limit was cached: %+v", st)
	}

	hot.SetBytes(0)
	if _, err := src.Tile(ctx, 4, 0, 0); err != nil {
		t.Fatal(err)
	}
	if st := hot.Stats(); st != (HotStats{}) {
		t.Errorf("cache off: stats %+v", st)
	}
}

// Dropping a source's entries keeps the others' and the recency ring intact.
func TestHotTilesDropFile(t *testing.T) {
	c := newHotTiles(1 << 20)
	var kept int64 // bytes of sources 0 and 2
	for f := range uint64(3) {
		for i := range uint32(50) {
			data := fmt.Appendf(nil, "%d-%d", f, i)
			c.put(tileKey{file: f, z: 6, x: i, y: i}, Tile{Data: data})
			if f != 1 {
				kept += int64(len(data)) + hotEntryOverhead
			}
		}
	}
	c.dropFile(1)
	for f := range uint64(3) {
		for i := range uint32(50) {
			got, ok := c.get(tileKey{file: f, z: 6, x: i, y: i})
			if want := f != 1; ok != want || ok && string(got.Data) != fmt.Sprintf("%d-%d", f, i) {
				t.Fatalf("source %d tile %d: %q, %v; want cached %v", f, i, got.Data, ok, want)
			}
		}
	}
	if st := c.stats(); st.Entries != 100 || st.Bytes != kept {
		t.Errorf("stats %+v, want 100 entries of %d bytes", st, kept)
	}
	c.dropFile(0)
	c.dropFile(2)
	if st := c.stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("after dropping all: %+v", st)
	}
	for i := range c.shards {
		if s := &c.shards[i]; s.lru.next != &s.lru || s.lru.prev != &s.lru || len(s.files) != 0 {
			t.Fatalf("shard %d not empty", i)
		}
	}
}

// Sources read concurrently while they are closed and replaced underneath: every tile read
// is its own source's, and the bound holds (run with -race).
func TestHotTilesConcurrent(t *testing.T) {
	for _, bound := range []int64{4 << 10, 1 << 20} {
		t.Run(fmt.Sprint(bound), func(t *testing.T) {
			dir := t.TempDir()
			const files = 3
			tile := func(file, z, x, y int) []byte { return fmt.Appendf(nil, "%d:%d/%d/%d", file, z, x, y) }
			var paths []string
			for i := range files {
				tiles := map[[3]int][]byte{}
				for z := range 4 {
					for x := range 1 << z {
						for y := range 1 << z {
							tiles[[3]int{z, x, y}] = tile(i, z, x, y)
						}
					}
				}
				path := filepath.Join(dir, fmt.Sprintf("%d.mbtiles", i))
				if err := mbtiles.WriteTestFile(path, mbtiles.TestFile{Format: "pbf", MaxZoom: 3, Tiles: tiles}); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, path)
			}
			p := mbtiles.NewPool(files - 1)
			defer p.Close()
			hot := NewHot(bound)
			var mu sync.Mutex
			srcs := make([]Source, files)
			for i := range srcs {
				srcs[i] = hot.Wrap(MBTiles(p, paths[i], fmt.Sprint(i)))
			}
			ctx := context.Background()
			var wg sync.WaitGroup
			errc := make(chan error, 64)
			for g := range 16 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 0))
					for range 200 {
						z := rng.IntN(5) // z=4 is missing
						x, y := rng.IntN(1<<z), rng.IntN(1<<z)
						i := rng.IntN(files)
						mu.Lock()
						src := srcs[i]
						mu.Unlock()
						got, err := src.Tile(ctx, z, x, y)
						var want []byte
						if z < 4 {
							want = tile(i, z, x, y)
						}
						if err != nil || !bytes.Equal(got.Data, want) {
							errc <- fmt.Errorf("%s %d/%d/%d = %q, %v; want %q", paths[i], z, x, y, got.Data, err, want)
							return
						}
					}
				})
			}
			wg.Go(func() {
				for i := range 100 {
					mu.Lock()
					old := srcs[i%files]
					srcs[i%files] = hot.Wrap(MBTiles(p, paths[i%files], fmt.Sprint(i)))
					mu.Unlock()
					_ = old.Close()
				}
			})
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Error(err)
			}
			if st := hot.Stats(); st.Bytes > st.MaxBytes {
				t.Errorf("hot tiles hold %d bytes, bound %d", st.Bytes, st.MaxBytes)
			}
		})
	}
}

// BenchmarkHotTile reads random tiles through the hot-tile cache in front of an MBTiles
// source (100 B and 48 KiB tiles), as mbtiles' BenchmarkTile does without it.
func BenchmarkHotTile(b *testing.B) {
	for _, size := range []int{100, 48 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			const maxZoom = 6
			tile := make([]byte, size)
			rand.NewChaCha8([32]byte{2}).Read(tile)
			tiles := map[[3]int][]byte{}
			for z := range maxZoom + 1 {
				for x := range 1 << z {
					for y := range 1 << z {
						tiles[[3]int{z, x, y}] = tile
					}
				}
			}
			path := writeFixture(b, "bench.mbtiles", mbtiles.TestFile{Format: "pbf", MaxZoom: maxZoom, Tiles: tiles})
			p := mbtiles.NewPool(8)
			defer p.Close()
			src := NewHot(64 << 20).Wrap(MBTiles(p, path, "v"))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			b.SetBytes(int64(len(tile)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
				for pb.Next() {
					z := rng.IntN(maxZoom + 1)
					got, err := src.Tile(ctx, z, rng.IntN(1<<z), rng.IntN(1<<z))
					if err != nil || len(got.Data) != len(tile) {
						b.Fatalf("Tile = %d bytes, %v", len(got.Data), err)
					}
				}
			})
		})
	}
}
