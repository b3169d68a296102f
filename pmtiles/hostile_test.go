package pmtiles

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tilegate/tilegate/mbtiles"
)

// validArchive is a small archive with a leaf level, every tile of zooms 0..3.
func validArchive(t testing.TB) []byte {
	t.Helper()
	tiles := map[[3]int][]byte{}
	for z := range 4 {
		for x := range 1 << z {
			for y := range 1 << z {
				tiles[[3]int{z, x, y}] = fmt.Appendf(nil, "\x1a%d/%d/%d", z, x, y)
			}
		}
	}
	b, err := BuildTestArchive(TestArchive{TileType: TileTypeMVT, Tiles: tiles, LeafSize: 16,
		Bounds: [4]float64{-1, -1, 1, 1}, Metadata: map[string]any{"name": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// patch returns a copy of b with f applied.
func patch(b []byte, f func(b []byte) []byte) []byte { return f(bytes.Clone(b)) }

func putU64(off int, v uint64) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
}

func putByte(off int, v byte) func([]byte) []byte {
	return func(b []byte) []byte { b[off] = v; return b }
}

func putI32(off int, v int32) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], uint32(v)); return b }
}

// custom assembles an archive from explicit directories (gzip-compressed) and sections.
func custom(t testing.TB, root []Entry, leaves [][]Entry, data []byte, maxZoom uint8) []byte {
	t.Helper()
	gz := func(b []byte) []byte {
		out, err := gzipBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	p := testParts{h: Header{InternalCompression: CompressionGzip, TileCompression: CompressionNone,
		TileType: TileTypeMVT, MaxZoom: maxZoom}, data: data, meta: gz([]byte("{}"))}
	p.root = gz(encodeDirectory(root))
	for _, l := range leaves {
		p.leaves = append(p.leaves, gz(encodeDirectory(l))...)
	}
	return p.assemble()
}

func gzLen(t testing.TB, entries []Entry) uint32 {
	b, err := gzipBytes(encodeDirectory(entries))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(len(b))
}

func withMetadata(t testing.TB, raw []byte, compress bool) []byte {
	t.Helper()
	ic := CompressionNone
	if compress {
		ic = CompressionGzip
	}
	b, err := BuildTestArchive(TestArchive{TileType: TileTypeMVT, Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("\x1a")},
		Raw: raw, InternalCompression: ic})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every rule of what an uploaded archive may be is enforced by Inspect with its own error, and
// serving the same bytes answers ErrDamaged (or a tile, or none), never a panic.
func TestInspectRefusesHostileArchives(t *testing.T) {
	valid := validArchive(t)
	if _, _, err := Inspect(context.Background(), &memStorage{b: valid}, mbtiles.Limits{}); err != nil {
		t.Fatalf("the valid archive: %v", err)
	}
	bigRoot := func() []byte {
		tiles := map[[3]int][]byte{}
		for x := range 64 {
			for y := range 64 {
				tiles[[3]int{6, x, y}] = fmt.Appendf(nil, "%d-%d", x, y)
			}
		}
		b, err := BuildTestArchive(TestArchive{TileType: TileTypePNG, Tiles: tiles, InternalCompression: CompressionNone})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	deep, err := BuildTestArchive(TestArchive{TileType: TileTypeMVT, Tiles: testTiles(), LeafSize: 4, Levels: 3})
	if err != nil {
		t.Fatal(err)
	}
	bomb, err := gzipBytes(make([]byte, maxDirectoryBytes+1))
	if err != nil {
		t.Fatal(err)
	}
	leaf := []Entry{{TileID: 0, Offset: 0, Length: 1, RunLength: 1}}
	// A leaf that points to itself.
	selfLeaf := []Entry{{TileID: 0, Offset: 0, RunLength: 0}}
	selfLeaf[0].Length = gzLen(t, selfLeaf)
	for selfLeaf[0].Length != gzLen(t, selfLeaf) {
		selfLeaf[0].Length = gzLen(t, selfLeaf)
	}

	def := mbtiles.Limits{}
	for _, c := range []struct {
		name string
		b    []byte
		lim  mbtiles.Limits
		want string
		loc  string // the FieldError's location, for those
	}{
		{"no magic", patch(valid, putByte(0, 'X')), def, "no PMTiles magic number", ""},
		{"version 2", patch(valid, putByte(7, 2)), def, "version 2", ""},
		{"empty file", nil, def, "truncated header", ""},
		{"truncated header", valid[:100], def, "truncated header", ""},
		{"truncated archive", valid[:len(valid)-1], def, "truncated: the tile data ends", ""},
		{"bytes after the last section", append(bytes.Clone(valid), "trailer"...), def, "7 bytes follow", ""},
		{"root past the file", patch(valid, putU64(16, 1<<40)), def, "truncated: the root directory", ""},
		{"offset overflow", patch(valid, putU64(56, 1<<63+5)), def, "the tile data (offset", ""},
		{"section in the header", patch(valid, putU64(24, 3)), def, "the metadata (offset 3", ""},
		{"empty root", patch(valid, putU64(16, 0)), def, "empty root directory", ""},
		{"root beyond 16 KiB", bigRoot, def, "within 16384", ""},
		{"clustered flag 2", patch(valid, putByte(96, 2)), def, "clustered flag 2", ""},
		{"brotli directories", patch(valid, putByte(97, 3)), def, "brotli-compressed; tilegate reads only gzip or none", ""},
		{"zstd directories", patch(valid, putByte(97, 4)), def, "zstd-compressed", ""},
		{"unknown internal compression", patch(valid, putByte(97, 0)), def, "internal compression unknown", ""},
		{"internal compression 9", patch(valid, putByte(97, 9)), def, "internal compression 9 (1 none, 2 gzip)", ""},
		{"brotli tiles", patch(valid, putByte(98, 3)), def, "tiles are brotli-compressed", ""},
		{"tile compression 7", patch(valid, putByte(98, 7)), def, "tile compression 7 (0 unknown, 1 none, 2 gzip)", ""},
		{"unknown tile type", patch(valid, putByte(99, 0)), def, "tile type 0", ""},
		{"tile type 6", patch(valid, putByte(99, 6)), def, "tile type 6", ""},
		{"max zoom 25", patch(valid, putByte(101, 25)), def, "max zoom 25 out of range", ""},
		{"min zoom above max", patch(valid, putByte(100, 3)), mbtiles.Limits{}, "min zoom 3 > max zoom 3", ""}, // fixed below
		{"latitude 100", patch(valid, putI32(114, 100e7)), def, "bounds", ""},
		{"south above north", patch(valid, putI32(106, 5e7)), def, "bounds", ""},
		{"center longitude 200", patch(valid, putI32(119, 2000000000)), def, "center", ""},
		{"center zoom 25", patch(valid, putByte(118, 25)), def, "center", ""},
		{"tiles beyond max zoom", patch(valid, putByte(101, 2)), def, "a tile at zoom 3, outside the header's zooms 0..2", ""},
		{"tiles below min zoom", patch(valid, putByte(100, 1)), def, "a tile at zoom 0, outside the header's zooms 1..3", ""},
		{"tile too large", valid, mbtiles.Limits{MaxTileBytes: 4}, "the tile at z 0, x 0, y 0 is 6 bytes; the limit is 4", "tiles"},
		{"leaves nested 4 deep", deep, mbtiles.Limits{}, "nested deeper than 3 levels", ""},
		{"leaf cycle", custom(t, []Entry{{TileID: 0, Offset: 0, Length: selfLeaf[0].Length}}, [][]Entry{selfLeaf}, []byte("x"), 0),
			mbtiles.Limits{}, "nested deeper than 3 levels", ""},
		{"empty directory", custom(t, []Entry{}, nil, []byte("x"), 0), def, "empty directory", ""},
		{"zero-length tile", custom(t, []Entry{{TileID: 0, Offset: 0, Length: 0, RunLength: 1}}, nil, []byte("x"), 0), def, "length 0 at entry 0", ""},
		{"repeated tile id", custom(t, []Entry{{0, 0, 1, 1}, {0, 0, 1, 1}}, nil, []byte("x"), 1), def, "not ascending", ""},
		{"overlapping runs", custom(t, []Entry{{0, 0, 1, 3}, {2, 0, 1, 1}}, nil, []byte("x"), 1), def, "run of entry 0 overlaps", ""},
		{"tile outside the tile data", custom(t, []Entry{{0, 1, 1, 1}}, nil, []byte("x"), 0), def, "outside the tile data", ""},
		{"leaf outside the leaf section", custom(t, []Entry{{0, 5, gzLen(t, leaf), 0}}, [][]Entry{leaf}, []byte("x"), 0), def, "outside the leaf section", ""},
		{"leaf out of its range", custom(t, []Entry{{0, 0, gzLen(t, []Entry{{3, 0, 1, 1}}), 0}, {2, 0, 1, 1}},
			[][]Entry{{{3, 0, 1, 1}}}, []byte("x"), 1), def, "tile ids out of order across directories", ""},
		{"directory decompression bomb", func() []byte {
			p := testParts{h: Header{InternalCompression: CompressionGzip, TileType: TileTypeMVT}, data: []byte("x")}
			p.leaves = bomb
			p.root, _ = gzipBytes(encodeDirectory([]Entry{{0, 0, uint32(len(bomb)), 0}}))
			return p.assemble()
		}(), def, "more than 33554432 bytes once decompressed", ""},
		{"directory garbage", func() []byte {
			p := testParts{h: Header{InternalCompression: CompressionGzip, TileType: TileTypeMVT}, data: []byte("x")}
			p.root = []byte("not gzip at all")
			return p.assemble()
		}(), def, "root directory: not a valid PMTiles archive: gzip", ""},
		{"directory count beyond its bytes", func() []byte {
			p := testParts{h: Header{InternalCompression: CompressionNone, TileType: TileTypeMVT}, data: []byte("x")}
			p.root = binary.AppendUvarint(nil, 1<<40)
			return p.assemble()
		}(), def, "directory of 1099511627776 entries", ""},
		{"directory trailing bytes", func() []byte {
			p := testParts{h: Header{InternalCompression: CompressionNone, TileType: TileTypeMVT}, data: []byte("x")}
			p.root = append(encodeDirectory([]Entry{{0, 0, 1, 1}}), 0, 0, 0, 0)
			return p.assemble()
		}(), def, "4 bytes after its last entry", ""},

		{"metadata over the limit", withMetadata(t, []byte(`{"name":"`+strings.Repeat("x", 200)+`"}`), false),
			mbtiles.Limits{MaxMetadataBytes: 100}, "211 bytes; the limit is 100", "metadata"},
		{"metadata decompression bomb", withMetadata(t, []byte(`{"name":"`+strings.Repeat("x", 10000)+`"}`), true),
			mbtiles.Limits{MaxMetadataBytes: 1000}, "more than 1000 bytes once decompressed", "metadata"},
		{"metadata not JSON", withMetadata(t, []byte(`{"name":`), true), def, "not a JSON object", "metadata"},
		{"metadata an array", withMetadata(t, []byte(`["name"]`), true), def, "not a JSON object", "metadata"},
		{"metadata null", withMetadata(t, []byte(`null`), true), def, "not a JSON object", "metadata"},
		{"too many keys", withMetadata(t, []byte(`{"a":1,"b":2,"c":3,"d":4}`), true), mbtiles.Limits{MaxMetadataRows: 3}, "more than 3 keys", "metadata"},
		{"value too large", withMetadata(t, []byte(`{"d":"0123456789a"}`), true),
			mbtiles.Limits{MaxMetadataValueBytes: 10}, "the value is 13 bytes; the limit is 10", "metadata.d"},
		{"key too large", withMetadata(t, []byte(`{"0123456789a":1}`), true), mbtiles.Limits{MaxMetadataValueBytes: 10}, "a key is 11 bytes", "metadata"},
		{"NUL in a key", withMetadata(t, []byte(`{"a\u0000":1}`), true), def, "a key contains a NUL character", "metadata"},
		{"NUL in an unused value", withMetadata(t, []byte(`{"description":"a\u0000"}`), true), def, "contains a NUL", "metadata.description"},
		{"NUL in a vector layer", withMetadata(t, []byte(`{"vector_layers":[{"id":"a\u0000"}]}`), true), def, "contains a NUL", "metadata.vector_layers.0.id"},
		{"name not a string", withMetadata(t, []byte(`{"name":5}`), true), def, "not a string", "metadata.name"},
		{"attribution not a string", withMetadata(t, []byte(`{"attribution":["a"]}`), true), def, "not a string", "metadata.attribution"},
		{"vector_layers not an array", withMetadata(t, []byte(`{"vector_layers":{"id":"a"}}`), true), def, "not an array", "metadata.vector_layers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := c.b
			if c.name == "min zoom above max" {
				b = patch(valid, func(b []byte) []byte { b[100], b[101] = 3, 2; return b })
				c.want = "min zoom 3 > max zoom 2"
			}
			_, _, err := Inspect(context.Background(), &memStorage{b: b}, c.lim)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Inspect: %v; want ErrInvalid with %q", err, c.want)
			}
			var fe *FieldError
			if errors.As(err, &fe) != (c.loc != "") || (fe != nil && loc(fe.Loc) != c.loc) {
				t.Fatalf("Inspect: %v (%#v), want location %q", err, fe, c.loc)
			}
			// Served anyway (a file damaged after upload): no panic, no tile from outside its data.
			a := NewArchive(&memStorage{b: b}, "k", NewCache(0), 4)
			for _, zxy := range [][3]uint32{{0, 0, 0}, {1, 0, 0}, {1, 1, 1}, {3, 5, 2}} {
				tile, err := a.Tile(context.Background(), uint8(zxy[0]), zxy[1], zxy[2])
				if err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrTileTooLarge) {
					t.Errorf("Tile %v: %v", zxy, err)
				}
				if len(tile) > 4 {
					t.Errorf("Tile %v: %d bytes", zxy, len(tile))
				}
			}
		})
	}
}

func loc(l []any) string {
	parts := make([]string, len(l))
	for i, p := range l {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, ".")
}

// A read failure is returned as it is, never as a damaged archive.
func TestReadFailureNotDamaged(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := NewArchive(failing{boom}, "k", NewCache(0), 0).Tile(context.Background(), 0, 0, 0)
	if !errors.Is(err, boom) || errors.Is(err, ErrDamaged) || errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v", err)
	}
	_, _, err = Inspect(context.Background(), failing{boom}, mbtiles.Limits{})
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Fatalf("Inspect: %v", err)
	}
}

type failing struct{ err error }

func (f failing) ReadAt(context.Context, []byte, int64) (int, error) { return 0, f.err }
func (f failing) Size() int64                                        { return 1000 }
