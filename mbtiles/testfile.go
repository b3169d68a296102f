package mbtiles

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TestFile describes an MBTiles fixture for WriteTestFile. It lives outside
// _test files so that other packages' tests (the HTTP server's) can build
// fixtures with the same code this package is tested with.
type TestFile struct {
	Name   string // metadata name; defaults to the file name without extension
	Format string // metadata format; empty omits the row, leaving it to be inferred
	// MinZoom and MaxZoom are always written.
	MinZoom, MaxZoom int
	// Bounds are west,south,east,north; the zero value omits the bounds and
	// center rows. The center is the middle of Bounds at MinZoom.
	Bounds [4]float64
	// Tiles are keyed by XYZ z,x,y and stored at the TMS row.
	Tiles map[[3]int][]byte
	// VectorLayers is the raw JSON of the vector_layers array; empty omits
	// the json row. It is not validated, so it can be used to write bad JSON.
	VectorLayers string
	Attribution  string
	Description  string // metadata description; empty omits the row
	Gzip         bool   // gzip every tile before storing it
	// Deduplicated stores the tiles in the map/images layout behind a tiles view.
	Deduplicated bool
	// SQL runs after everything else, in the same transaction: hostile variants (Hostile*).
	SQL []string
}

// Hostile variants of a fixture, as TestFile.SQL: each breaks a rule of what an upload may be.
var (
	// HostileEndlessView makes tiles a view over a recursive CTE that never ends and never
	// yields a row.
	HostileEndlessView = []string{`DROP TABLE tiles`, `CREATE VIEW tiles AS
		WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c)
		SELECT 0 AS zoom_level, 0 AS tile_column, 0 AS tile_row, x'1a00' AS tile_data FROM c WHERE n < 0`}
	// HostileHugeTilesView makes tiles a view that computes 64 MiB per tile.
	HostileHugeTilesView = []string{`ALTER TABLE tiles RENAME TO t`, `CREATE VIEW tiles AS
		SELECT zoom_level, tile_column, tile_row, randomblob(67108864) AS tile_data FROM t`}
	// HostileMetadataView makes metadata a view of 3 million computed rows.
	HostileMetadataView = []string{`ALTER TABLE metadata RENAME TO m`, `CREATE VIEW metadata AS
		SELECT name, value FROM m UNION ALL SELECT * FROM (
		WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 3000000)
		SELECT 'k' || n AS name, 'v' AS value FROM c)`}
	// HostileGeneratedTileData computes tile_data on every read.
	HostileGeneratedTileData = []string{`ALTER TABLE tiles RENAME TO t`,
		`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, d BLOB,
			tile_data BLOB AS (zeroblob(67108864 + length(d))) VIRTUAL)`,
		`INSERT INTO tiles (zoom_level, tile_column, tile_row, d) SELECT * FROM t`, `DROP TABLE t`}
	// HostileVirtualTiles makes tiles a virtual (full-text) table.
	HostileVirtualTiles = []string{`DROP TABLE tiles`,
		`CREATE VIRTUAL TABLE tiles USING fts5(zoom_level, tile_column, tile_row, tile_data)`}
	// HostileSlowIndex declares an index whose expression takes long to compute (a 40 MB
	// string per row, multiplied by zero) and which the integrity check evaluates for every row.
	// The index is built with a cheap expression of the same value, then its declaration is
	// rewritten, as a hand-crafted file can be.
	HostileSlowIndex = []string{`CREATE INDEX slow ON tiles (zoom_level + 0)`, `PRAGMA writable_schema = ON`,
		`UPDATE sqlite_master SET sql = 'CREATE INDEX slow ON tiles (zoom_level + length(hex(zeroblob(20000000 + zoom_level))) * 0)' WHERE name = 'slow'`,
		`PRAGMA writable_schema = OFF`}
	// HostilePartialIndex leaves tiles with only an index that no tile read can use.
	HostilePartialIndex = []string{`DROP INDEX tile_index`,
		`CREATE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row) WHERE zoom_level > 99`}
)

// DamageTestFile overwrites pages of the SQLite file at path, from page first (1 is the
// header page) for n pages, with pseudo-random bytes (the same for the same arguments): what a
// failing disk or a bad copy leaves.
func DamageTestFile(path string, first, n int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [18]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return err
	}
	pageSize := int64(hdr[16])<<8 | int64(hdr[17])
	if pageSize == 1 {
		pageSize = 65536
	}
	junk := make([]byte, pageSize*int64(n))
	seed := uint32(first*7919 + n)
	for i := range junk {
		seed = seed*1664525 + 1013904223
		junk[i] = byte(seed >> 24)
	}
	if _, err := f.WriteAt(junk, int64(first-1)*pageSize); err != nil {
		return err
	}
	return f.Close()
}

// WriteTestFile writes an MBTiles file described by opts to path. It writes
// to a temporary file next to path and renames it into place, the way tilegate
// replaces files, so it can overwrite a file that a Pool is serving.
func WriteTestFile(path string, opts TestFile) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mbtiles-test-*")
	if err != nil {
		return fmt.Errorf("write test file %s: %w", path, err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer func() {
		if err != nil {
			os.Remove(tmpPath)
		}
	}()

	if err := writeTestDB(tmpPath, path, opts); err != nil {
		return fmt.Errorf("write test file %s: %w", path, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fmt.Errorf("write test file %s: %w", path, err)
	}
	return nil
}

func writeTestDB(tmpPath, path string, opts TestFile) (err error) {
	db, err := sql.Open("sqlite", tmpPath)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	db.SetMaxOpenConns(1)

	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()

	schema := []string{
		`CREATE TABLE metadata (name TEXT, value TEXT)`,
		`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`,
		`CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)`,
	}
	if opts.Deduplicated {
		schema = []string{
			`CREATE TABLE metadata (name TEXT, value TEXT)`,
			`CREATE TABLE map (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_id TEXT)`,
			`CREATE TABLE images (tile_data BLOB, tile_id TEXT)`,
			`CREATE UNIQUE INDEX map_index ON map (zoom_level, tile_column, tile_row)`,
			`CREATE UNIQUE INDEX images_id ON images (tile_id)`,
			// Writers' views differ; tilegate replaces whatever the file has by its own.
			`CREATE VIEW tiles AS SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
				map.tile_row AS tile_row, images.tile_data AS tile_data FROM map JOIN images ON images.tile_id = map.tile_id`,
		}
	}
	for _, stmt := range schema {
		if _, err := tx.Exec(stmt); err != nil {
			return err
		}
	}

	name := opts.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	meta := [][2]string{
		{"name", name},
		{"minzoom", strconv.Itoa(opts.MinZoom)},
		{"maxzoom", strconv.Itoa(opts.MaxZoom)},
	}
	if opts.Format != "" {
		meta = append(meta, [2]string{"format", opts.Format})
	}
	if opts.Bounds != [4]float64{} {
		b := opts.Bounds
		meta = append(meta,
			[2]string{"bounds", fmt.Sprintf("%g,%g,%g,%g", b[0], b[1], b[2], b[3])},
			[2]string{"center", fmt.Sprintf("%g,%g,%d", (b[0]+b[2])/2, (b[1]+b[3])/2, opts.MinZoom)})
	}
	if opts.Attribution != "" {
		meta = append(meta, [2]string{"attribution", opts.Attribution})
	}
	if opts.Description != "" {
		meta = append(meta, [2]string{"description", opts.Description})
	}
	if opts.VectorLayers != "" {
		meta = append(meta, [2]string{"json", `{"vector_layers":` + opts.VectorLayers + `}`})
	}
	for _, kv := range meta {
		if _, err := tx.Exec(`INSERT INTO metadata (name, value) VALUES (?, ?)`, kv[0], kv[1]); err != nil {
			return err
		}
	}

	for zxy, data := range opts.Tiles {
		z, x, y := zxy[0], zxy[1], zxy[2]
		if opts.Gzip {
			if data, err = gzipBytes(data); err != nil {
				return err
			}
		}
		if opts.Deduplicated {
			// Identical tiles share one image, as deduplicating writers do.
			id := fmt.Sprintf("%x", sha256.Sum256(data))
			if _, err := tx.Exec(`INSERT OR IGNORE INTO images (tile_data, tile_id) VALUES (?, ?)`, data, id); err != nil {
				return fmt.Errorf("tile %d/%d/%d: %w", z, x, y, err)
			}
			if _, err := tx.Exec(`INSERT INTO map (zoom_level, tile_column, tile_row, tile_id) VALUES (?, ?, ?, ?)`,
				z, x, (1<<z)-1-y, id); err != nil {
				return fmt.Errorf("tile %d/%d/%d: %w", z, x, y, err)
			}
			continue
		}
		if _, err := tx.Exec(`INSERT INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)`,
			z, x, (1<<z)-1-y, data); err != nil {
			return fmt.Errorf("tile %d/%d/%d: %w", z, x, y, err)
		}
	}
	for _, stmt := range opts.SQL {
		if _, err := tx.Exec(stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return tx.Commit()
}

func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
