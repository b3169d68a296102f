package mbtiles

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// A replaced file's tiles are not served from the hot-tile cache once the pool is told
// (Forget), nor a deleted file's.
func TestHotTilesFollowTheFile(t *testing.T) {
	path := writeFixture(t, "data.mbtiles", TestFile{Format: "png", Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("v1")}})
	p := NewPool(4)
	p.SetHotTileBytes(1 << 20)
	defer p.Close()
	ctx := context.Background()
	for range 2 {
		if got, err := p.Tile(ctx, path, 0, 0, 0); err != nil || string(got) != "v1" {
			t.Fatalf("before replace: %q, %v", got, err)
		}
	}
	if st := p.HotTileStats(); st.Hits != 1 || st.Entries != 1 {
		t.Fatalf("stats after two reads: %+v, want 1 hit, 1 entry", st)
	}
	if err := WriteTestFile(path, TestFile{Format: "png", Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("v2")}}); err != nil {
		t.Fatal(err)
	}
	p.Forget(path)
	if st := p.HotTileStats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("forgotten file's tiles still cached: %+v", st)
	}
	if got, err := p.Tile(ctx, path, 0, 0, 0); err != nil || string(got) != "v2" {
		t.Fatalf("after replace: %q, %v", got, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	p.Forget(path)
	if got, err := p.Tile(ctx, path, 0, 0, 0); err == nil {
		t.Errorf("after delete: %q, want an error", got)
	}
}

// Missing tiles are remembered as missing, empty ones as empty (not missing).
func TestHotTilesMissingAndEmpty(t *testing.T) {
	path := writeFixture(t, "data.mbtiles", TestFile{Format: "png", MaxZoom: 1,
		Tiles: map[[3]int][]byte{{0, 0, 0}: {}, {1, 0, 0}: pngTile}})
	p := NewPool(4)
	p.SetHotTileBytes(1 << 20)
	defer p.Close()
	ctx := context.Background()
	for i := range 2 {
		if got, err := p.Tile(ctx, path, 0, 0, 0); err != nil || got == nil || len(got) != 0 {
			t.Errorf("read %d: empty tile = %#v, %v; want a non-nil empty slice", i, got, err)
		}
		if got, err := p.Tile(ctx, path, 1, 1, 1); err != nil || got != nil {
			t.Errorf("read %d: missing tile = %#v, %v; want nil", i, got, err)
		}
	}
	if st := p.HotTileStats(); st.Hits != 2 || st.Misses != 2 {
		t.Errorf("stats: %+v, want 2 hits and 2 misses", st)
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
	path := writeFixture(t, "data.mbtiles", TestFile{Format: "png", MaxZoom: 4, Tiles: tiles})
	p := NewPool(4)
	defer p.Close()
	ctx := context.Background()
	const bound = 256 << 10
	p.SetHotTileBytes(bound)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		x, y := rng.IntN(16), rng.IntN(16)
		got, err := p.Tile(ctx, path, 4, x, y)
		if err != nil || !bytes.Equal(got, tiles[[3]int{4, x, y}]) {
			t.Fatalf("4/%d/%d = %d bytes, %v", x, y, len(got), err)
		}
		if st := p.HotTileStats(); st.Bytes > bound {
			t.Fatalf("%d bytes cached, bound %d", st.Bytes, bound)
		}
	}
	st := p.HotTileStats()
	if st.Hits == 0 || st.Entries == 0 || st.Entries == 256 {
		t.Errorf("stats %+v: want some hits, and some but not all 256 tiles kept", st)
	}
	before := p.HotTileStats().Entries
	if _, err := p.Tile(ctx, path, 0, 0, 0); err != nil { // 8 KiB > bound/64
		t.Fatal(err)
	}
	if st := p.HotTileStats(); st.Entries > before {
		t.Errorf("a tile above the entry limit was cached: %+v", st)
	}

	p.SetHotTileBytes(0)
	if _, err := p.Tile(ctx, path, 4, 0, 0); err != nil {
		t.Fatal(err)
	}
	if st := p.HotTileStats(); st != (HotTileStats{}) {
		t.Errorf("cache off: stats %+v", st)
	}
}

// Dropping a file's entries keeps the others' and the recency ring intact.
func TestHotTilesDropFile(t *testing.T) {
	c := newHotTiles(1 << 20)
	var kept int64 // bytes of files 0 and 2
	for f := range uint64(3) {
		for i := range uint32(50) {
			data := fmt.Appendf(nil, "%d-%d", f, i)
			c.put(tileKey{file: f, z: 6, x: i, y: i}, data)
			if f != 1 {
				kept += int64(len(data)) + hotEntryOverhead
			}
		}
	}
	c.dropFile(1)
	for f := range uint64(3) {
		for i := range uint32(50) {
			data, ok := c.get(tileKey{file: f, z: 6, x: i, y: i})
			if want := f != 1; ok != want || ok && string(data) != fmt.Sprintf("%d-%d", f, i) {
				t.Fatalf("file %d tile %d: %q, %v; want cached %v", f, i, data, ok, want)
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
