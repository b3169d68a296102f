package sqliteproto

import (
	"bytes"
	"compress/gzip"
	"database/sql"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// tileFile is a generated MBTiles file and the coordinates (TMS rows) of its tiles.
type tileFile struct {
	path   string
	coords [][3]int
}

var files = map[string]*tileFile{}

// TestMain writes the two files bench/peers serves: 9348 tiles of about 100 B gzipped, and
// 600 of about 50 KB, through whichever "sqlite" driver this build links.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sqliteproto-*")
	if err != nil {
		panic(err)
	}
	for _, f := range []struct {
		name    string
		n, size int
	}{{"small", 9348, 100}, {"large", 600, 50_000}} {
		tf, err := writeFile(filepath.Join(dir, f.name+".mbtiles"), f.n, f.size)
		if err != nil {
			panic(err)
		}
		files[f.name] = tf
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeFile(path string, n, size int) (*tileFile, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, s := range []string{
		`CREATE TABLE metadata (name TEXT, value TEXT)`,
		`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`,
		`CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)`,
		`BEGIN`,
	} {
		if _, err := db.Exec(s); err != nil {
			return nil, err
		}
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	tf := &tileFile{path: path}
	for z := 0; len(tf.coords) < n; z++ {
		for x := 0; x < 1<<z && len(tf.coords) < n; x++ {
			for y := 0; y < 1<<z && len(tf.coords) < n; y++ {
				raw := make([]byte, size)
				for i := range size * 3 / 4 {
					raw[i] = byte(rng.Uint32())
				}
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				zw.Write(raw)
				zw.Close()
				if _, err := db.Exec(`INSERT INTO tiles VALUES (?,?,?,?)`, z, x, y, b.Bytes()); err != nil {
					return nil, err
				}
				tf.coords = append(tf.coords, [3]int{z, x, y})
			}
		}
	}
	if _, err := db.Exec(`COMMIT`); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return tf, nil
}

// tileQuery is the statement tilegate's mbtiles pool runs.
const tileQuery = `SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?`

// benchStmt reads tiles of f in a shuffled order through one *sql.Stmt on a one-connection
// pool, as mbtiles.Pool does (QueryRow + Scan into []byte).
func benchStmt(b *testing.B, f *tileFile) {
	db, err := sql.Open("sqlite", roURI(f.path))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	st, err := db.Prepare(tileQuery)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	order := mrand.Perm(len(f.coords))
	b.ReportAllocs()
	b.ResetTimer()
	var total int
	for i := range b.N {
		c := f.coords[order[i%len(order)]]
		var data []byte
		if err := st.QueryRow(c[0], c[1], c[2]).Scan(&data); err != nil {
			b.Fatal(err)
		}
		total += len(data)
	}
	b.SetBytes(int64(total / b.N))
}

// benchRawBytes reads through the same *sql.Stmt but with Rows and sql.RawBytes, so the tile is
// not copied a second time by Scan (it is used before Rows.Close, as a handler writing it would).
func benchRawBytes(b *testing.B, f *tileFile) {
	db, err := sql.Open("sqlite", roURI(f.path))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	st, err := db.Prepare(tileQuery)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	order := mrand.Perm(len(f.coords))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c := f.coords[order[i%len(order)]]
		rows, err := st.Query(c[0], c[1], c[2])
		if err != nil {
			b.Fatal(err)
		}
		if !rows.Next() {
			b.Fatal("no tile")
		}
		var raw sql.RawBytes
		if err := rows.Scan(&raw); err != nil {
			b.Fatal(err)
		}
		if len(raw) == 0 {
			b.Fatal("empty tile")
		}
		rows.Close()
	}
}

func BenchmarkDriverStmt(b *testing.B) {
	for _, n := range []string{"small", "large"} {
		b.Run(n, func(b *testing.B) { benchStmt(b, files[n]) })
	}
}

func BenchmarkDriverRawBytes(b *testing.B) {
	for _, n := range []string{"small", "large"} {
		b.Run(n, func(b *testing.B) { benchRawBytes(b, files[n]) })
	}
}

// roURI opens path as mbtiles.Pool does: read-only and immutable (tilegate never changes a
// published file, so SQLite skips file locking and change detection on every read).
func roURI(path string) string { return "file:" + path + "?mode=ro&immutable=1" }
