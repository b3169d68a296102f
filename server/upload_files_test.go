package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/server"
)

// tlManyTiles is n distinct uncompressed vector tiles at zoom 9.
func tlManyTiles(n int) map[[3]int][]byte {
	tiles := map[[3]int][]byte{}
	for i := range n {
		tiles[[3]int{9, i % 512, i / 512}] = bytes.Repeat([]byte(fmt.Sprintf("\x1a%05d", i)), 150)
	}
	return tiles
}

func tlDamagedFile(t testing.TB) []byte {
	t.Helper()
	f := tlVectorFile()
	f.Gzip, f.Tiles = false, tlManyTiles(300)
	path := filepath.Join(t.TempDir(), "damaged.mbtiles")
	must(t, mbtiles.WriteTestFile(path, f))
	must(t, mbtiles.DamageTestFile(path, 40, 8))
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

// Files that break the rules of what an upload may be are refused with a 422 naming what is
// wrong, quickly (none is read through SQL of its own), and change nothing.
func TestUploadRefusesHostileFiles(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{MaxTileBytes: 8 << 10})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		before := e.tlFiles(t)
		key := "key=" + e.key(t, e.c, nil, "").Token

		hostile := func(stmts []string) mbtiles.TestFile {
			f := tlVectorFile()
			f.SQL = stmts
			return f
		}
		edit := func(fn func(f *mbtiles.TestFile)) mbtiles.TestFile {
			f := tlVectorFile()
			fn(&f)
			return f
		}
		manyLayers := make([]string, 1001)
		for i := range manyLayers {
			manyLayers[i] = fmt.Sprintf(`{"id":"l%d"}`, i)
		}
		cases := []struct {
			name string
			body []byte
			loc  string
		}{
			{"endless tiles view", tlFile(t, hostile(mbtiles.HostileEndlessView)), "[body]"},
			{"64 MiB per tile view", tlFile(t, hostile(mbtiles.HostileHugeTilesView)), "[body]"},
			{"metadata view of 3 million rows", tlFile(t, hostile(mbtiles.HostileMetadataView)), "[body]"},
			{"generated tile_data", tlFile(t, hostile(mbtiles.HostileGeneratedTileData)), "[body]"},
			{"virtual tiles table", tlFile(t, hostile(mbtiles.HostileVirtualTiles)), "[body]"},
			{"damaged pages", tlDamagedFile(t), "[body]"},
			{"tile over the size limit", tlFile(t, edit(func(f *mbtiles.TestFile) {
				f.Gzip = false
				f.Tiles = map[[3]int][]byte{{0, 0, 0}: bytes.Repeat([]byte{0x1a}, 9<<10)}
			})), "[body tiles]"},
			{"attribution over the API's maxLength", tlFile(t, edit(func(f *mbtiles.TestFile) {
				f.Attribution = strings.Repeat("©", 1001)
			})), "[body metadata attribution]"},
			{"more vector layers than the API's maxItems", tlFile(t, edit(func(f *mbtiles.TestFile) {
				f.VectorLayers = "[" + strings.Join(manyLayers, ",") + "]"
			})), "[body metadata json vector_layers]"},
			{"NUL in name", tlFile(t, edit(func(f *mbtiles.TestFile) { f.Name = "ro\x00ads" })), "[body metadata name]"},
			{"script in attribution", tlFile(t, edit(func(f *mbtiles.TestFile) {
				f.Attribution = `<img src=x onerror="alert(1)">`
			})), "[body metadata attribution]"},
			{"javascript: link in attribution", tlFile(t, edit(func(f *mbtiles.TestFile) {
				f.Attribution = `<a href="javascript:alert(1)">©</a>`
			})), "[body metadata attribution]"},
			{"NUL in attribution", tlFile(t, edit(func(f *mbtiles.TestFile) { f.Attribution = "©\x00" })), "[body metadata attribution]"},
			{"NUL in description", tlFile(t, edit(func(f *mbtiles.TestFile) { f.Description = "\x00" })), "[body metadata description]"},
			{"NUL in a vector layer id", tlFile(t, edit(func(f *mbtiles.TestFile) {
				f.VectorLayers = `[{"id":"roads\u0000"}]`
			})), "[body metadata json vector_layers 0 id]"},
		}
		for _, tc := range cases {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			r, err := e.c.UploadTilesWithBodyWithResponse(ctx, d.Id, "application/octet-stream", bytes.NewReader(tc.body))
			cancel()
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if r.StatusCode() != 422 {
				t.Errorf("%s: %d, want 422: %.300s", tc.name, r.StatusCode(), r.Body)
				continue
			}
			var v struct {
				Detail []struct {
					Loc []any
					Msg string
				} `json:"detail"`
			}
			if json.Unmarshal(r.Body, &v) != nil || len(v.Detail) != 1 || fmt.Sprint(v.Detail[0].Loc) != tc.loc {
				t.Errorf("%s: %.300s, want loc %s", tc.name, r.Body, tc.loc)
			}
			if len(r.Body) > 2000 {
				t.Errorf("%s: a %d-byte error", tc.name, len(r.Body))
			}
		}
		wantJSON(t, e.tlFiles(t), before)
		tlCheck(t, "previous tiles", e.get(t, "GET", tlTilePath(d.Id, "1/1/1", "pbf", key)), 200, "")
		got, err := e.c.GetDatasetWithResponse(context.Background(), d.Id)
		must(t, err)
		if a := mustGet(got.JSON200.Attribution); a != "© tile tests" || len(mustGet(got.JSON200.VectorLayers)) != 1 {
			t.Errorf("the dataset changed: %s", got.Body)
		}
	})
}

// The common deduplicated layout (map/images) is accepted and served through tilegate's own
// view.
func TestUploadDeduplicatedFile(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Private)
		f := tlRasterFile()
		f.Deduplicated = true
		e.uploadOK(t, d.Id, f)
		key := "key=" + e.key(t, e.c, nil, "").Token
		for _, zxy := range []string{"0/0/0", "2/1/3"} {
			r := e.get(t, "GET", tlTilePath(d.Id, zxy, "png", key))
			tlCheck(t, zxy, r, 200, "")
			if !bytes.Equal([]byte(r.body), tlPNG) {
				t.Errorf("%s: %q", zxy, r.body)
			}
		}
		tlCheck(t, "missing tile", e.get(t, "GET", tlTilePath(d.Id, "1/0/0", "png", key)), 204, "")
	})
}

// A file damaged after its upload answers 410 (no retry helps), never 503, and is logged once,
// not once per request.
func TestTileOfDamagedFile(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var logs syncBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		e := tlStart(t, db, server.Config{Logger: logger})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		f := tlVectorFile()
		f.Gzip, f.Tiles = false, tlManyTiles(300)
		e.uploadOK(t, d.Id, f)
		must(t, mbtiles.DamageTestFile(filepath.Join(e.dataDir, e.tlOnlyFile(t, d.Id)), 40, 8))
		key := "key=" + e.key(t, e.c, nil, "").Token

		statuses := map[int]int{}
		for zxy := range f.Tiles {
			for range 2 {
				r := e.get(t, "GET", tlTilePath(d.Id, fmt.Sprintf("%d/%d/%d", zxy[0], zxy[1], zxy[2]), "pbf", key))
				statuses[r.status]++
				if r.status == 410 && r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("410 with Cache-Control %q", r.header.Get("Cache-Control"))
				}
			}
		}
		if statuses[410] == 0 || statuses[200]+statuses[410] != 2*len(f.Tiles) {
			t.Errorf("statuses %v: want 200 and 410 only, some 410", statuses)
		}
		if n := strings.Count(logs.String(), "tile file cannot be served"); n != 1 {
			t.Errorf("the damaged file was logged %d times, want once", n)
		}
	})
}

// sweepEnv starts a server whose data directory already holds what crashed processes left.
type sweepFixture struct {
	leftover, leftoverJournal, orphanTiles string
}

func writeSweepFixture(t *testing.T, dir string) sweepFixture {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o750))
	old := time.Now().Add(-2 * time.Hour)
	fx := sweepFixture{
		leftover:        filepath.Join(dir, ".upload-"+uuid.NewString()+"-1.mbtiles"),
		leftoverJournal: filepath.Join(dir, ".upload-"+uuid.NewString()+"-2.mbtiles-journal"),
		orphanTiles:     filepath.Join(dir, uuid.NewString()+"-00112233445566ff.mbtiles"),
	}
	must(t, os.WriteFile(fx.leftover, tlFile(t, tlVectorFile()), 0o640))
	must(t, os.WriteFile(fx.leftoverJournal, []byte("journal"), 0o640))
	must(t, mbtiles.WriteTestFile(fx.orphanTiles, tlVectorFile()))
	for _, p := range []string{fx.leftover, fx.leftoverJournal, fx.orphanTiles} {
		must(t, os.Chtimes(p, old, old))
	}
	return fx
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// A client that hangs up once its file is sent stops the checks at once (SQLite interrupted),
// and the upload's file is removed; the dataset does not change. The file carries an index
// expression that makes the integrity check take minutes.
func TestUploadStopsWhenClientLeaves(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var logs syncBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		e := tlStart(t, db, server.Config{Logger: logger})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		before := e.tlFiles(t)

		f := tlVectorFile()
		f.Gzip, f.Tiles, f.SQL = false, tlManyTiles(300), mbtiles.HostileSlowIndex
		body := tlFile(t, f)
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
		must(t, err)
		defer conn.Close()
		fmt.Fprintf(conn, "PUT /api/datasets/%s/tiles/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", d.Id, e.acct.Token, len(body))
		_, err = conn.Write(body)
		must(t, err)
		// The whole body is sent; the server is checking the file.
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if b, _ := io.ReadAll(conn); len(b) > 0 {
			t.Fatalf("the server answered before the check could have ended: %.300s", b)
		}
		if fmt.Sprint(e.tlFiles(t)) == fmt.Sprint(before) {
			t.Fatal("no upload in progress")
		}
		hungUp := time.Now()
		must(t, conn.Close())
		tlWaitFor(t, 10*time.Second, "the upload to stop and its file to be removed", func() bool {
			return fmt.Sprint(e.tlFiles(t)) == fmt.Sprint(before) && strings.Contains(logs.String(), "upload abandoned by the client")
		})
		t.Logf("stopped %v after the client left", time.Since(hungUp))
		got, err := e.c.GetDatasetWithResponse(context.Background(), d.Id)
		must(t, err)
		if got.JSON200.Maxzoom != 5 {
			t.Errorf("the dataset changed: %s", got.Body)
		}
	})
}
