package mbtiles

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// inspectSoon runs Inspect with a deadline, so that a file the rules fail to stop makes the
// test fail instead of hanging it (rows.Next is not interruptible: a hang still needs the
// test binary's timeout, which also fails it).
func inspectSoon(t *testing.T, path string, lim Limits) (*Metadata, Layout, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	md, l, err := Inspect(ctx, path, lim)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Inspect took %v", d)
	}
	return md, l, err
}

func manyTiles(n int) map[[3]int][]byte {
	tiles := map[[3]int][]byte{}
	for i := 0; len(tiles) < n; i++ {
		z := 8
		tiles[[3]int{z, i % 256, i / 256}] = bytes.Repeat([]byte(fmt.Sprintf("\x1a%04d", i)), 200)
	}
	return tiles
}

// Files whose schema runs SQL of their own on every read are refused before any read of it.
func TestInspectRefusesHostileSchemas(t *testing.T) {
	for name, stmts := range map[string][]string{
		"endless tiles view":            HostileEndlessView,
		"64 MiB per tile view":          HostileHugeTilesView,
		"3 million metadata rows view":  HostileMetadataView,
		"generated tile_data column":    HostileGeneratedTileData,
		"virtual tiles table":           HostileVirtualTiles,
		"tiles view without map/images": {`DROP TABLE tiles`, `CREATE VIEW tiles AS SELECT 0 AS zoom_level, 0 AS tile_column, 0 AS tile_row, x'1a' AS tile_data`},
	} {
		t.Run(name, func(t *testing.T) {
			f := vectorFixture()
			f.SQL = stmts
			path := writeFixture(t, "hostile.mbtiles", f)
			_, _, err := inspectSoon(t, path, Limits{})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Inspect: %v, want ErrInvalid", err)
			}
			t.Log(err)
		})
	}
}

// The map/images layout is accepted whatever its view says: Prepare replaces the view by
// tilegate's own, and tiles are read through it by index.
func TestDeduplicatedLayout(t *testing.T) {
	f := vectorFixture()
	f.Deduplicated = true
	f.Tiles[[3]int{1, 1, 1}] = mvtTile // shares an image with 0/0/0
	// The file's own view computes its tiles: it must never be what is read.
	f.SQL = []string{`DROP VIEW tiles`, `CREATE VIEW tiles AS SELECT map.zoom_level AS zoom_level,
		map.tile_column AS tile_column, map.tile_row AS tile_row, randomblob(67108864) AS tile_data FROM map`}
	path := writeFixture(t, "dedup.mbtiles", f)
	md, layout, err := inspectSoon(t, path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if layout != LayoutDeduplicated || md.Format != "pbf" {
		t.Fatalf("layout %v, metadata %+v", layout, md)
	}
	if err := Prepare(context.Background(), path, layout); err != nil {
		t.Fatal(err)
	}
	p := NewPool(2)
	defer p.Close()
	for _, zxy := range [][3]int{{0, 0, 0}, {1, 1, 1}} {
		got, err := p.Tile(context.Background(), path, zxy[0], zxy[1], zxy[2])
		if err != nil {
			t.Fatal(err)
		}
		if raw, err := gunzip(got); err != nil || !bytes.Equal(raw, mvtTile) {
			t.Errorf("tile %v: %d bytes, %v", zxy, len(got), err)
		}
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var view string
	if err := db.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'tiles'`).Scan(&view); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(view, "randomblob") {
		t.Errorf("the file's view survived: %s", view)
	}
}

// A partial index does not count as the tile index: Prepare creates one a tile read uses.
func TestPrepareIgnoresPartialIndexes(t *testing.T) {
	f := vectorFixture()
	f.SQL = HostilePartialIndex
	path := writeFixture(t, "partial.mbtiles", f)
	_, layout, err := inspectSoon(t, path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Prepare(context.Background(), path, layout); err != nil {
		t.Fatalf("Prepare: %v; want a usable index to be created", err)
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var plan string
	if err := db.QueryRow("EXPLAIN QUERY PLAN "+tileQuery, 1, 0, 0, 0).Scan(new(any), new(any), new(any), &plan); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plan, "SEARCH") {
		t.Errorf("tile read plan: %s", plan)
	}
}

func TestInspectLimits(t *testing.T) {
	big := vectorFixture()
	big.Gzip = false
	big.Tiles[[3]int{1, 1, 0}] = bytes.Repeat([]byte{0x1a}, 5000)
	manyRows := vectorFixture()
	for i := 0; i < 1000; i++ {
		manyRows.SQL = append(manyRows.SQL, fmt.Sprintf(`INSERT INTO metadata VALUES ('extra%d', 'x')`, i))
	}
	longValue := vectorFixture()
	longValue.Attribution = strings.Repeat("©", 600) // 1200 bytes
	for _, tc := range []struct {
		name string
		f    TestFile
		lim  Limits
		loc  string
	}{
		{"tile over the limit", big, Limits{MaxTileBytes: 4096}, "[tiles]"},
		{"too many metadata rows", manyRows, Limits{}, "[metadata]"},
		{"metadata value over the limit", longValue, Limits{MaxMetadataValueBytes: 1000}, "[metadata attribution]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := inspectSoon(t, writeFixture(t, "f.mbtiles", tc.f), tc.lim)
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Inspect: %v, want a FieldError", err)
			}
			if fmt.Sprint(fe.Loc) != tc.loc {
				t.Errorf("loc %v, want %s (%v)", fe.Loc, tc.loc, err)
			}
		})
	}
	// At the limits, accepted.
	if _, _, err := inspectSoon(t, writeFixture(t, "ok.mbtiles", big), Limits{MaxTileBytes: 5000}); err != nil {
		t.Errorf("a tile at the limit: %v", err)
	}
}

// NUL in any string the file brings in is refused, naming the field.
func TestInspectRefusesNUL(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(f *TestFile)
		loc  string
	}{
		{"name", func(f *TestFile) { f.Name = "roads\x00" }, "[metadata name]"},
		{"attribution", func(f *TestFile) { f.Attribution = "©\x00" }, "[metadata attribution]"},
		{"description", func(f *TestFile) { f.Description = "a\x00b" }, "[metadata description]"},
		{"format", func(f *TestFile) { f.Format = "pbf\x00" }, "[metadata format]"},
		{"vector layer id", func(f *TestFile) { f.VectorLayers = `[{"id":"wa\u0000ter"}]` }, "[metadata json vector_layers 0 id]"},
		{"vector layer field name", func(f *TestFile) { f.VectorLayers = `[{"id":"w","fields":{"n\u0000":"String"}}]` }, "[metadata json vector_layers 0 fields n\x00]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := vectorFixture()
			tc.edit(&f)
			_, _, err := inspectSoon(t, writeFixture(t, "nul.mbtiles", f), Limits{})
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Inspect: %v, want a FieldError", err)
			}
			if fmt.Sprint(fe.Loc) != tc.loc || !strings.Contains(fe.Msg, "NUL") {
				t.Errorf("%v, want loc %q", err, tc.loc)
			}
		})
	}
}

// A file with damaged pages is refused at upload; one damaged later reads as ErrDamaged,
// never as a passing failure.
func TestDamagedFile(t *testing.T) {
	f := vectorFixture()
	f.Gzip = false
	f.Tiles = manyTiles(300)
	path := writeFixture(t, "damaged.mbtiles", f)
	if _, _, err := inspectSoon(t, path, Limits{}); err != nil {
		t.Fatalf("the intact file: %v", err)
	}
	if err := DamageTestFile(path, 40, 8); err != nil {
		t.Fatal(err)
	}
	_, _, err := inspectSoon(t, path, Limits{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Inspect of the damaged file: %v", err)
	}

	p := NewPool(2)
	defer p.Close()
	damaged := 0
	for zxy := range f.Tiles {
		_, err := p.Tile(context.Background(), path, zxy[0], zxy[1], zxy[2])
		switch {
		case err == nil:
		case errors.Is(err, ErrDamaged):
			damaged++
		default:
			t.Fatalf("tile %v: %v, want ErrDamaged", zxy, err)
		}
	}
	if damaged == 0 {
		t.Fatal("no tile read hit the damaged pages")
	}
}

func TestTileSizeLimit(t *testing.T) {
	f := rasterFixture()
	f.Tiles[[3]int{2, 0, 0}] = bytes.Repeat([]byte("x"), 2000)
	path := writeFixture(t, "big.mbtiles", f)
	p := NewPool(2)
	defer p.Close()
	p.SetMaxTileBytes(1000)
	if _, err := p.Tile(context.Background(), path, 2, 0, 0); !errors.Is(err, ErrTileTooLarge) {
		t.Errorf("a 2000-byte tile over a 1000-byte limit: %v", err)
	}
	if got, err := p.Tile(context.Background(), path, 2, 1, 1); err != nil || !bytes.Equal(got, pngTile) {
		t.Errorf("a small tile: %q, %v", got, err)
	}
}

// Scans stop when their context ends: the driver interrupts SQLite within Exec only, which is
// why every scan of an upload runs through execScan.
func TestExecScanInterrupts(t *testing.T) {
	path := writeFixture(t, "f.mbtiles", vectorFixture())
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = execScan(ctx, conn, "endless", `WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT max(n) FROM c`)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("endless scan: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the scan stopped after %v", d)
	}
}

// SQL a file carries that only the integrity check runs (an index expression) stops at the
// deadline.
func TestInspectStopsAtDeadline(t *testing.T) {
	f := vectorFixture()
	f.Tiles = manyTiles(300)
	f.SQL = HostileSlowIndex
	path := writeFixture(t, "slow.mbtiles", f)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := Inspect(ctx, path, Limits{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Inspect: %v, want the deadline", err)
	}
	// SQLite is interrupted between rows, and one row's expression (a 40 MB string) is one
	// uninterruptible call: 0.11 s, 1.9 s under -race, and several on a busy machine (5 s was
	// exceeded there: 6.4 s, 13 s). Uninterrupted, the 300 rows take over 30 s, 9 min under -race.
	limit := 5 * time.Second
	if raceEnabled {
		limit = 30 * time.Second
	}
	if d := time.Since(start); d > limit {
		t.Errorf("Inspect stopped after %v", d)
	}
}

// bigMetadata adds rows rows of metadata, each a value of valueBytes, under keys tilegate does
// not use.
func bigMetadata(rows, valueBytes int) []string {
	return []string{fmt.Sprintf(`INSERT INTO metadata SELECT 'extra' || n, hex(randomblob(%d)) FROM (
		WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT %d) SELECT n FROM c)`, valueBytes/2, rows)}
}

// allocated is the Go heap bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The metadata costs bounded memory (#15 item 9): many large rows together are refused before
// any is loaded, and the values of keys tilegate does not use are never loaded.
func TestInspectMetadataMemory(t *testing.T) {
	huge := vectorFixture()
	huge.SQL = bigMetadata(40, 512<<10) // 20 MiB in 40 rows, each within the per-value limit
	path := writeFixture(t, "huge.mbtiles", huge)
	var err error
	if n := allocated(func() { _, _, err = inspectSoon(t, path, Limits{}) }); n > 4<<20 {
		t.Errorf("refusing 20 MiB of metadata allocated %d bytes", n)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fmt.Sprint(fe.Loc) != "[metadata]" || !strings.Contains(fe.Msg, "bytes together") {
		t.Fatalf("Inspect: %v, want a FieldError at [metadata] naming the total", err)
	}

	unused := vectorFixture()
	unused.SQL = bigMetadata(3, 800<<10) // 2.4 MB, within the total
	path = writeFixture(t, "unused.mbtiles", unused)
	var md *Metadata
	if n := allocated(func() { md, _, err = inspectSoon(t, path, Limits{}) }); n > 1<<20 {
		t.Errorf("a file with 2.4 MB of unused metadata allocated %d bytes to inspect", n)
	}
	if err != nil || md.Name != "Test vector" || md.Attribution != "© tilegate" {
		t.Fatalf("Inspect: %+v, %v", md, err)
	}
}
