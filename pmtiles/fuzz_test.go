package pmtiles

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tilegate/tilegate/mbtiles"
)

// FuzzOpen feeds arbitrary bytes to Inspect and to tile reads: neither may panic, hang, or
// return a tile larger than the limit; every refusal is ErrInvalid (Inspect) or ErrDamaged
// (reads). Run: go test ./pmtiles -run '^$' -fuzz FuzzOpen -fuzztime 1m
func FuzzOpen(f *testing.F) {
	for _, a := range []TestArchive{
		{TileType: TileTypeMVT, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("\x1a")}},
		{TileType: TileTypePNG, Tiles: map[[3]int][]byte{{1, 0, 0}: []byte("a"), {1, 1, 1}: []byte("a"), {2, 3, 3}: []byte("b")},
			InternalCompression: CompressionNone, Unclustered: true},
		{TileType: TileTypeMVT, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("x"), {1, 0, 0}: []byte("y"), {1, 0, 1}: []byte("y"),
			{1, 1, 1}: []byte("z"), {1, 1, 0}: []byte("w")}, LeafSize: 2, Levels: 2, InternalCompression: CompressionNone,
			Metadata: map[string]any{"name": "n", "vector_layers": []any{map[string]any{"id": "a"}}}},
		{TileType: TileTypeWebP, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("x")}, LeafSize: 1, Gzip: true,
			Bounds: [4]float64{-1, -1, 1, 1}},
	} {
		b, err := BuildTestArchive(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(validArchive(f))
	f.Add([]byte("PMTiles\x03"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lim := mbtiles.Limits{MaxTileBytes: 64, MaxMetadataBytes: 4096, MaxMetadataRows: 16, MaxMetadataValueBytes: 1024}
		md, _, err := Inspect(ctx, &memStorage{b: b}, lim)
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("Inspect: %v is not ErrInvalid", err)
		}
		if err == nil && (md.Format == "" || md.MinZoom == nil || *md.MinZoom > *md.MaxZoom) {
			t.Fatalf("accepted with metadata %+v", md)
		}
		a := NewArchive(&memStorage{b: b}, "k", NewCache(1<<20), 64)
		for z := range uint8(4) {
			for x := range uint32(1) << z {
				for y := range uint32(1) << z {
					tile, err := a.Tile(ctx, z, x, y)
					if err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrTileTooLarge) {
						t.Fatalf("Tile: %v", err)
					}
					if len(tile) > 64 {
						t.Fatalf("a tile of %d bytes", len(tile))
					}
				}
			}
		}
	})
}
