package mbtiles

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// The cost of the upload checks on a large file. The file is built once per run (a few
// seconds): MBTILES_BENCH_TILES tiles (default 120000) of 1–3 KiB of incompressible bytes, in
// a plain tiles table with its index. Run:
//
//	go test ./mbtiles -run '^$' -bench Upload -benchtime 5x
var (
	largeOnce sync.Once
	largePath string
	largeErr  error
)

func largeFile(b *testing.B) string {
	b.Helper()
	largeOnce.Do(func() {
		n := 120000
		if s := os.Getenv("MBTILES_BENCH_TILES"); s != "" {
			n, largeErr = strconv.Atoi(s)
			if largeErr != nil {
				return
			}
		}
		dir, err := os.MkdirTemp("", "mbtiles-bench-")
		if err != nil {
			largeErr = err
			return
		}
		largePath = filepath.Join(dir, "large.mbtiles")
		largeErr = writeLarge(largePath, n)
	})
	if largeErr != nil {
		b.Fatal(largeErr)
	}
	return largePath
}

func writeLarge(path string, n int) error {
	if err := WriteTestFile(path, TestFile{Name: "large", Format: "pbf", MaxZoom: 14}); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.Prepare(`INSERT INTO tiles VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 3072)
	for i := range n {
		data := buf[:1024+r.IntN(2048)]
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		data[0] = 0x1a
		if _, err := stmt.Exec(14, i%16384, i/16384, data); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func BenchmarkUploadChecks(b *testing.B) {
	path := largeFile(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("file %s: %d bytes", path, fi.Size())
	ctx := context.Background()
	withConn := func(b *testing.B, fn func(*sql.Conn) error) {
		db, err := sql.Open("sqlite", dsn(path))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		if err := fn(conn); err != nil {
			b.Fatal(err)
		}
	}
	// What Inspect runs (integrity_check) and, for comparison, the lighter quick_check.
	b.Run("integrity_check", func(b *testing.B) {
		for b.Loop() {
			withConn(b, func(c *sql.Conn) error { return checkIntegrity(ctx, c) })
		}
		b.ReportMetric(float64(fi.Size())/1e6, "MB")
	})
	b.Run("quick_check", func(b *testing.B) {
		for b.Loop() {
			withConn(b, func(c *sql.Conn) error {
				return execScan(ctx, c, "qc", `SELECT quick_check FROM pragma_quick_check WHERE schema = 'main'`)
			})
		}
	})
	b.Run("tile_sizes", func(b *testing.B) {
		for b.Loop() {
			withConn(b, func(c *sql.Conn) error { return checkTileSizes(ctx, c, LayoutTable, DefaultMaxTileBytes) })
		}
	})
	b.Run("Inspect", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := Inspect(ctx, path, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	os.RemoveAll(filepath.Dir(path))
}
