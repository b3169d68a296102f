package mbtiles

import (
	"bytes"
	"compress/gzip"
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
	Gzip         bool // gzip every tile before storing it
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

	for _, stmt := range []string{
		`CREATE TABLE metadata (name TEXT, value TEXT)`,
		`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`,
		`CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)`,
	} {
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
		if _, err := tx.Exec(`INSERT INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)`,
			z, x, (1<<z)-1-y, data); err != nil {
			return fmt.Errorf("tile %d/%d/%d: %w", z, x, y, err)
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
