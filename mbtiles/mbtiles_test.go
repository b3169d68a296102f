package mbtiles

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

var (
	pngTile = []byte("\x89PNG\r\n\x1a\n fake png")
	mvtTile = []byte("\x1a\x05water fake mvt")
	layers  = `[{"id":"water","fields":{"name":"String"},"minzoom":0,"maxzoom":5}]`
)

func vectorFixture() TestFile {
	return TestFile{
		Name:         "Test vector",
		Format:       "pbf",
		MinZoom:      0,
		MaxZoom:      5,
		Bounds:       [4]float64{-10, -20, 30, 40},
		VectorLayers: layers,
		Attribution:  "© tilegate",
		Gzip:         true,
		Tiles: map[[3]int][]byte{
			{0, 0, 0}: mvtTile,
			{1, 0, 0}: []byte("\x1a\x02z1 north-west"),
			{1, 0, 1}: []byte("\x1a\x02z1 south-west"),
		},
	}
}

func rasterFixture() TestFile {
	return TestFile{
		Format:  "png",
		MinZoom: 2,
		MaxZoom: 3,
		Tiles:   map[[3]int][]byte{{2, 1, 1}: pngTile},
	}
}

func writeFixture(t testing.TB, name string, opts TestFile) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := WriteTestFile(path, opts); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeSQLite creates a SQLite database from raw statements, for files
// WriteTestFile cannot describe.
func writeSQLite(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestInspectVector(t *testing.T) {
	path := writeFixture(t, "vector.mbtiles", vectorFixture())
	md, _, err := Inspect(context.Background(), path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if md.Name != "Test vector" || md.Format != "pbf" || md.Kind != "vector" || md.Attribution != "© tilegate" {
		t.Errorf("got %+v", md)
	}
	if md.MinZoom == nil || *md.MinZoom != 0 || md.MaxZoom == nil || *md.MaxZoom != 5 {
		t.Errorf("zooms = %v, %v", md.MinZoom, md.MaxZoom)
	}
	if md.Bounds == nil || *md.Bounds != [4]float64{-10, -20, 30, 40} {
		t.Errorf("bounds = %v", md.Bounds)
	}
	if md.Center == nil || *md.Center != [3]float64{10, 10, 0} {
		t.Errorf("center = %v", md.Center)
	}
	var got, want any
	if err := json.Unmarshal(md.VectorLayers, &got); err != nil {
		t.Fatalf("vector layers %q: %v", md.VectorLayers, err)
	}
	json.Unmarshal([]byte(layers), &want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("vector layers = %s, want %s", md.VectorLayers, layers)
	}
}

func TestInspectRaster(t *testing.T) {
	path := writeFixture(t, "raster.mbtiles", rasterFixture())
	md, _, err := Inspect(context.Background(), path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if md.Format != "png" || md.Kind != "raster" || md.VectorLayers != nil || md.Bounds != nil || md.Center != nil {
		t.Errorf("got %+v", md)
	}
	if md.Name != "raster" {
		t.Errorf("name = %q, want file name", md.Name)
	}
}

func TestInspectFormat(t *testing.T) {
	for _, tc := range []struct {
		format string
		tile   []byte
		gzip   bool
		want   string
	}{
		{"MVT", mvtTile, true, "pbf"},
		{" JPEG ", []byte{0xff, 0xd8, 0xff, 0xe0}, false, "jpg"},
		{"webp", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), false, "webp"},
		// Inferred from the first tile.
		{"", mvtTile, true, "pbf"},
		{"", mvtTile, false, "pbf"},
		{"", pngTile, false, "png"},
		{"", []byte{0xff, 0xd8, 0xff, 0xdb}, false, "jpg"},
		{"", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), false, "webp"},
	} {
		t.Run(tc.format+"/"+tc.want, func(t *testing.T) {
			path := writeFixture(t, "f.mbtiles", TestFile{
				Format: tc.format, MaxZoom: 1, Gzip: tc.gzip,
				Tiles: map[[3]int][]byte{{0, 0, 0}: tc.tile},
			})
			md, _, err := Inspect(context.Background(), path, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if md.Format != tc.want {
				t.Errorf("format = %q, want %q", md.Format, tc.want)
			}
		})
	}
}

func TestInspectInvalid(t *testing.T) {
	garbage := make([]byte, 8192)
	rand.NewChaCha8([32]byte{1}).Read(garbage)
	valid, err := os.ReadFile(writeFixture(t, "valid.mbtiles", vectorFixture()))
	if err != nil {
		t.Fatal(err)
	}
	withMeta := func(mutate func(*TestFile)) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			f := vectorFixture()
			mutate(&f)
			if err := WriteTestFile(path, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	bytesFile := func(data []byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const (
		createTiles    = `CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`
		createMetadata = `CREATE TABLE metadata (name TEXT, value TEXT)`
	)

	for _, tc := range []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"garbage", bytesFile(garbage)},
		{"empty", bytesFile(nil)},
		{"header only", bytesFile([]byte("SQLite format 3\x00"))},
		{"SQLite header then garbage", bytesFile(append([]byte("SQLite format 3\x00"), garbage...))},
		{"truncated", bytesFile(valid[:len(valid)-4096])},
		{"truncated mid-page", bytesFile(valid[:len(valid)-100])},
		{"a page of zeros after the end", bytesFile(append(slices.Clone(valid), make([]byte, 4096)...))},
		{"pages of garbage after the end", bytesFile(append(slices.Clone(valid), garbage...))},
		{"a valid file after the end", bytesFile(append(slices.Clone(valid), valid...))},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"no tables", func(t *testing.T, path string) {
			writeSQLite(t, path, `CREATE TABLE other (x)`)
		}},
		{"no tiles", func(t *testing.T, path string) {
			writeSQLite(t, path, createMetadata, `INSERT INTO metadata VALUES ('format', 'png')`)
		}},
		{"no metadata", func(t *testing.T, path string) {
			writeSQLite(t, path, createTiles)
		}},
		{"tiles missing columns", func(t *testing.T, path string) {
			writeSQLite(t, path, createMetadata, `CREATE TABLE tiles (zoom_level, tile_data)`)
		}},
		{"no format, no tiles", func(t *testing.T, path string) {
			writeSQLite(t, path, createMetadata, createTiles)
		}},
		{"no format, unknown tile", withMeta(func(f *TestFile) {
			f.Format, f.Gzip = "", false
			f.Tiles = map[[3]int][]byte{{0, 0, 0}: []byte("hello")}
		})},
		{"unsupported format", withMeta(func(f *TestFile) { f.Format = "tiff" })},
		{"bad json", withMeta(func(f *TestFile) { f.VectorLayers = `[{"id":` })},
		{"vector_layers not array", withMeta(func(f *TestFile) { f.VectorLayers = `{"id":"water"}` })},
		{"minzoom > 24", withMeta(func(f *TestFile) { f.MinZoom, f.MaxZoom = 25, 26 })},
		{"maxzoom > 24", withMeta(func(f *TestFile) { f.MaxZoom = 30 })},
		{"negative zoom", withMeta(func(f *TestFile) { f.MinZoom = -1 })},
		{"minzoom > maxzoom", withMeta(func(f *TestFile) { f.MinZoom, f.MaxZoom = 5, 3 })},
		{"zoom not a number", func(t *testing.T, path string) {
			writeSQLite(t, path, createMetadata, createTiles,
				`INSERT INTO metadata VALUES ('format', 'png'), ('minzoom', 'low')`)
		}},
		{"bounds longitude", withMeta(func(f *TestFile) { f.Bounds = [4]float64{-200, -20, 30, 40} })},
		{"bounds latitude", withMeta(func(f *TestFile) { f.Bounds = [4]float64{-10, -20, 30, 95} })},
		{"bounds south > north", withMeta(func(f *TestFile) { f.Bounds = [4]float64{-10, 40, 30, 20} })},
		{"bounds three numbers", func(t *testing.T, path string) {
			writeSQLite(t, path, createMetadata, createTiles,
				`INSERT INTO metadata VALUES ('format', 'png'), ('bounds', '1,2,3')`)
		}},
		{"bounds NaN", func(t *testing.T, path string) {
			writeSQLite(t, path, createMetadata, createTiles,
				`INSERT INTO metadata VALUES ('format', 'png'), ('bounds', '1,2,NaN,4')`)
		}},
		{"center out of range", func(t *testing.T, path string) {
			writeSQLite(t, path, createMetadata, createTiles,
				`INSERT INTO metadata VALUES ('format', 'png'), ('center', '0,100,2')`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.mbtiles")
			tc.write(t, path)
			md, _, err := Inspect(context.Background(), path, Limits{})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Inspect = %+v, %v; want ErrInvalid", md, err)
			}
			t.Log(err)
		})
	}
}

// TestCorruptNoPanic overwrites random bytes of a valid file and checks that
// Inspect and Tile return errors rather than crash. Most damage lands in tile
// data and goes unnoticed, which is fine: the point is not to crash.
func TestCorruptNoPanic(t *testing.T) {
	tiles := map[[3]int][]byte{}
	for z := range 4 {
		for x := range 1 << z {
			for y := range 1 << z {
				tiles[[3]int{z, x, y}] = bytes.Repeat([]byte{byte(z)}, 500)
			}
		}
	}
	valid, err := os.ReadFile(writeFixture(t, "valid.mbtiles", TestFile{Format: "pbf", MaxZoom: 3, Tiles: tiles}))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	p := NewPool(1)
	defer p.Close()
	for i := range 50 {
		data := bytes.Clone(valid)
		for range 1 + rng.IntN(50) {
			data[100+rng.IntN(len(data)-100)] = byte(rng.Uint32())
		}
		path := filepath.Join(dir, fmt.Sprintf("%d.mbtiles", i))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Inspect(context.Background(), path, Limits{}); err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Inspect: %v; want nil or ErrInvalid", err)
		}
		for zxy := range tiles {
			p.Tile(context.Background(), path, zxy[0], zxy[1], zxy[2])
		}
	}
}

func TestInspectLenient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lenient.mbtiles")
	writeSQLite(t, path,
		`CREATE TABLE metadata (name TEXT, value TEXT)`,
		`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`,
		`INSERT INTO metadata VALUES ('format', 'png'), ('minzoom', 3), ('maxzoom', '7.0'),
			('bounds', ' 170, -10, -170, 10 '), ('center', '180,0'), ('json', '{"other":1}'), ('name', NULL)`)
	md, _, err := Inspect(context.Background(), path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if *md.MinZoom != 3 || *md.MaxZoom != 7 {
		t.Errorf("zooms = %d, %d", *md.MinZoom, *md.MaxZoom)
	}
	if *md.Bounds != [4]float64{170, -10, -170, 10} {
		t.Errorf("bounds = %v", *md.Bounds)
	}
	if *md.Center != [3]float64{180, 0, 3} {
		t.Errorf("center = %v", *md.Center)
	}
	if md.VectorLayers != nil {
		t.Errorf("vector layers = %s", md.VectorLayers)
	}
}

// TestWALModeFile checks that a file last written in WAL mode is readable on
// its own: immutable opens must not need the -wal and -shm side files.
func TestWALModeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal.mbtiles")
	writeSQLite(t, path, `PRAGMA journal_mode=WAL`,
		`CREATE TABLE metadata (name TEXT, value TEXT)`,
		`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`,
		`INSERT INTO metadata VALUES ('format', 'png')`,
		`INSERT INTO tiles VALUES (0, 0, 0, 'x')`)
	if _, _, err := Inspect(context.Background(), path, Limits{}); err != nil {
		t.Fatal(err)
	}
	p := NewPool(1)
	defer p.Close()
	if got, err := p.Tile(context.Background(), path, 0, 0, 0); err != nil || string(got) != "x" {
		t.Errorf("Tile = %q, %v", got, err)
	}
}

func TestInspectNotInvalid(t *testing.T) {
	_, _, err := Inspect(context.Background(), filepath.Join(t.TempDir(), "missing.mbtiles"), Limits{})
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: %v; want fs.ErrNotExist", err)
	}

	path := writeFixture(t, "ok.mbtiles", vectorFixture())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = Inspect(ctx, path, Limits{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalid) {
		t.Errorf("cancelled: %v; want context.Canceled", err)
	}
}

// TestTileFlip checks the XYZ to TMS conversion against rows written with
// plain SQL, so that it does not depend on WriteTestFile doing the same flip.
func TestTileFlip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flip.mbtiles")
	writeSQLite(t, path,
		`CREATE TABLE metadata (name TEXT, value TEXT)`,
		`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`,
		// TMS row 0 is the southernmost row.
		`INSERT INTO tiles VALUES (2, 1, 0, 'south'), (2, 1, 3, 'north'), (2, 3, 1, 'x3 row1'), (0, 0, 0, '')`)
	p := NewPool(4)
	defer p.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		z, x, y int
		want    []byte
	}{
		{2, 1, 3, []byte("south")},
		{2, 1, 0, []byte("north")},
		{2, 3, 2, []byte("x3 row1")},
		{0, 0, 0, []byte{}},
		// Missing or outside the grid.
		{2, 1, 1, nil},
		{1, 0, 0, nil},
		{2, 4, 0, nil},
		{2, 0, 4, nil},
		{-1, 0, 0, nil},
		{2, -1, 0, nil},
		{31, 0, 0, nil},
		{64, 0, 0, nil},
	} {
		got, err := p.Tile(ctx, path, tc.z, tc.x, tc.y)
		if err != nil {
			t.Fatalf("%d/%d/%d: %v", tc.z, tc.x, tc.y, err)
		}
		if !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%d/%d/%d = %q, want %q", tc.z, tc.x, tc.y, got, tc.want)
		}
	}
}

func TestTileFixture(t *testing.T) {
	path := writeFixture(t, "vector.mbtiles", vectorFixture())
	p := NewPool(4)
	defer p.Close()
	got, err := p.Tile(context.Background(), path, 1, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !IsGzip(got) {
		t.Fatalf("tile not gzipped: %q", got)
	}
	raw, err := gunzip(got)
	if err != nil || string(raw) != "\x1a\x02z1 south-west" {
		t.Errorf("tile = %q, %v", raw, err)
	}
}

func TestTileErrors(t *testing.T) {
	p := NewPool(4)
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "missing.mbtiles")
	if _, err := p.Tile(ctx, missing, 0, 0, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v; want fs.ErrNotExist", err)
	}
	// A failed open is not cached: the file may appear later.
	if err := WriteTestFile(missing, rasterFixture()); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Tile(ctx, missing, 2, 1, 1); err != nil || !bytes.Equal(got, pngTile) {
		t.Errorf("after creating file: %q, %v", got, err)
	}

	noTiles := filepath.Join(t.TempDir(), "notiles.mbtiles")
	writeSQLite(t, noTiles, `CREATE TABLE metadata (name, value)`)
	if _, err := p.Tile(ctx, noTiles, 0, 0, 0); err == nil {
		t.Error("no tiles table: no error")
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Tile(ctx, missing, 2, 1, 1); !errors.Is(err, errPoolClosed) {
		t.Errorf("after Close: %v; want errPoolClosed", err)
	}
}

func TestTileSpecialPath(t *testing.T) {
	path := writeFixture(t, "a?b#c%20 d&mode=rw.mbtiles", rasterFixture())
	if _, _, err := Inspect(context.Background(), path, Limits{}); err != nil {
		t.Fatal(err)
	}
	p := NewPool(1)
	defer p.Close()
	if got, err := p.Tile(context.Background(), path, 2, 1, 1); err != nil || !bytes.Equal(got, pngTile) {
		t.Errorf("Tile = %q, %v", got, err)
	}
}

func TestForgetAfterReplace(t *testing.T) {
	path := writeFixture(t, "data.mbtiles", TestFile{Format: "png", Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("v1")}})
	p := NewPool(4)
	defer p.Close()
	ctx := context.Background()
	if got, err := p.Tile(ctx, path, 0, 0, 0); err != nil || string(got) != "v1" {
		t.Fatalf("before replace: %q, %v", got, err)
	}
	if err := WriteTestFile(path, TestFile{Format: "png", Tiles: map[[3]int][]byte{{0, 0, 0}: []byte("v2")}}); err != nil {
		t.Fatal(err)
	}
	p.Forget(path)
	if got, err := p.Tile(ctx, path, 0, 0, 0); err != nil || string(got) != "v2" {
		t.Fatalf("after replace: %q, %v", got, err)
	}

	// After deletion the next read reports the missing file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	p.Forget(path)
	if _, err := p.Tile(ctx, path, 0, 0, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after delete: %v; want fs.ErrNotExist", err)
	}
	p.Forget("never opened") // no-op
}

// TestForgetDuringRead holds a handle as an in-flight read does and checks
// that Forget leaves it usable until it is released.
func TestForgetDuringRead(t *testing.T) {
	path := writeFixture(t, "data.mbtiles", rasterFixture())
	p := NewPool(4)
	defer p.Close()
	ctx := context.Background()
	h, err := p.acquire(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	p.Forget(path)
	c, err := h.conns.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, _, _, err := c.tile(DefaultMaxTileBytes, 2, 1, 2)
	h.conns.put(c)
	if err != nil || !bytes.Equal(data, pngTile) {
		t.Fatalf("read on forgotten handle: %q, %v", data, err)
	}
	h.release()
	if c.db != 0 || c.stmt != 0 {
		t.Error("connection still open after the handle's last release")
	}
	if _, err := h.conns.get(ctx); !errors.Is(err, errPoolClosed) {
		t.Errorf("get after close: %v, want errPoolClosed", err)
	}
}

func TestEviction(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 3 {
		path := filepath.Join(dir, fmt.Sprintf("%d.mbtiles", i))
		if err := WriteTestFile(path, TestFile{Format: "png", Tiles: map[[3]int][]byte{{0, 0, 0}: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	p := NewPool(2)
	defer p.Close()
	ctx := context.Background()
	read := func(i int) {
		t.Helper()
		if got, err := p.Tile(ctx, paths[i], 0, 0, 0); err != nil || !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("file %d: %q, %v", i, got, err)
		}
	}
	handleOf := func(i int) *handle {
		p.mu.Lock()
		defer p.mu.Unlock()
		if e, ok := p.files[paths[i]]; ok {
			return e.Value.(*handle)
		}
		return nil
	}

	read(0)
	read(1)
	h0 := handleOf(0)
	read(0) // 0 is now more recently used than 1
	h1 := handleOf(1)
	read(2) // evicts 1
	if handleOf(1) != nil || handleOf(0) == nil || handleOf(2) == nil {
		t.Fatalf("after eviction: open = %v, %v, %v", handleOf(0) != nil, handleOf(1) != nil, handleOf(2) != nil)
	}
	if !h1.conns.isClosed() {
		t.Error("evicted handle not closed")
	}
	if h0.conns.isClosed() {
		t.Error("kept handle closed")
	}
	read(1) // reopens, evicting 0
	if handleOf(0) != nil {
		t.Error("file 0 still open")
	}
}

// TestConcurrent reads from many goroutines while files are forgotten and
// evicted underneath them; run it with -race.
// (The hot-tile cache in front of the pool has its own: tilesource.TestHotTilesConcurrent.)
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	const files = 3
	var paths []string
	tile := func(file, z, x, y int) []byte { return fmt.Appendf(nil, "%d:%d/%d/%d", file, z, x, y) }
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
		if err := WriteTestFile(path, TestFile{Format: "pbf", MaxZoom: 3, Tiles: tiles}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	p := NewPool(files - 1) // force evictions
	defer p.Close()
	ctx := context.Background()

	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for g := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for range 200 {
				z := rng.IntN(5) // z=4 is missing
				x, y := rng.IntN(1<<z), rng.IntN(1<<z)
				i := rng.IntN(files)
				got, err := p.Tile(ctx, paths[i], z, x, y)
				var want []byte
				if z < 4 {
					want = tile(i, z, x, y)
				}
				if err != nil || !bytes.Equal(got, want) {
					errc <- fmt.Errorf("%s %d/%d/%d = %q, %v; want %q", paths[i], z, x, y, got, err, want)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			p.Forget(paths[i%files])
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func TestIsGzip(t *testing.T) {
	if !IsGzip([]byte{0x1f, 0x8b, 8}) || IsGzip([]byte{0x1f}) || IsGzip(nil) || IsGzip(pngTile) {
		t.Error("IsGzip wrong")
	}
}

func TestContentType(t *testing.T) {
	for format, want := range map[string]string{
		"pbf":  "application/vnd.mapbox-vector-tile",
		"png":  "image/png",
		"jpg":  "image/jpeg",
		"jpeg": "image/jpeg",
		"webp": "image/webp",
		"PNG":  "image/png",
		"tiff": "application/octet-stream",
	} {
		if got := ContentType(format); got != want {
			t.Errorf("ContentType(%q) = %q, want %q", format, got, want)
		}
	}
}

// BenchmarkTile reads random tiles of a file whose pages are in the OS cache, from parallel
// goroutines, as a busy server does: small tiles (100 B, where the per-read cost is all there
// is) and large ones (48 KiB, where copying dominates). The hot-tile cache in front of the
// pool has its own: tilesource.BenchmarkHotTile.
func BenchmarkTile(b *testing.B) {
	for _, size := range []int{100, 48 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchmarkTile(b, size) })
	}
}

func benchmarkTile(b *testing.B, size int) {
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
	path := writeFixture(b, "bench.mbtiles", TestFile{Format: "pbf", MaxZoom: maxZoom, Tiles: tiles})
	p := NewPool(8)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background()) // cancellable, like a request's
	defer cancel()
	if _, err := p.Tile(ctx, path, 0, 0, 0); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	b.SetBytes(int64(len(tile)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			z := rng.IntN(maxZoom + 1)
			got, err := p.Tile(ctx, path, z, rng.IntN(1<<z), rng.IntN(1<<z))
			if err != nil || len(got) != len(tile) {
				b.Fatalf("Tile = %d bytes, %v", len(got), err)
			}
		}
	})
}
