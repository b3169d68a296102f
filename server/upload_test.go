package server_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"github.com/oapi-codegen/nullable"
	"io"
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

// tlFiles lists the data directory (nil when it does not exist).
func (e *tlEnv) tlFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(e.dataDir)
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// tlOnlyFile asserts that the data directory holds exactly the dataset's one file.
func (e *tlEnv) tlOnlyFile(t *testing.T, id uuid.UUID) string {
	t.Helper()
	names := e.tlFiles(t)
	if len(names) != 1 || !strings.HasPrefix(names[0], id.String()+"-") || !strings.HasSuffix(names[0], ".mbtiles") {
		t.Fatalf("data directory holds %v, want only %s-….mbtiles", names, id)
	}
	return names[0]
}

func TestUploadPublishesTheFile(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{ReplacedTilesGrace: -1})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		key := "key=" + e.key(t, e.c, nil, "").Token
		if d.HasTiles {
			t.Fatal("a new dataset has tiles")
		}

		up := e.uploadOK(t, d.Id, tlVectorFile())
		if !up.HasTiles || up.Format != "pbf" || up.Minzoom != 0 || up.Maxzoom != 5 {
			t.Errorf("after upload: %+v", up)
		}
		if up.AccessVersion != d.AccessVersion {
			t.Errorf("upload changed access_version %d → %d", d.AccessVersion, up.AccessVersion)
		}
		if !up.Changed.After(d.Changed) || !up.Created.Equal(d.Created) {
			t.Errorf("created %v→%v changed %v→%v", d.Created, up.Created, d.Changed, up.Changed)
		}
		wantJSON(t, mustGet(up.Bounds), gen.Bounds{-10, -20, 30, 40})
		wantJSON(t, mustGet(up.Center), gen.Center{10, 10, 0})
		if a := mustGet(up.Attribution); a != "© tile tests" {
			t.Errorf("attribution %q", a)
		}
		layers := mustGet(up.VectorLayers)
		if len(layers) != 1 || layers[0].Id != "roads" || (*layers[0].Fields)["name"] != "String" {
			t.Errorf("vector_layers %+v", layers)
		}
		first := e.tlOnlyFile(t, d.Id)
		r := e.get(t, "GET", tlTilePath(d.Id, "1/1/1", "pbf", key))
		tlCheck(t, "first file", r, 200, "")
		etag := r.header.Get("ETag")

		// GET shows it too.
		got, err := e.c.GetDatasetWithResponse(t.Context(), d.Id)
		must(t, err)
		if !got.JSON200.HasTiles || got.JSON200.Format != "pbf" {
			t.Errorf("GET after upload: %s", got.Body)
		}

		// Replacing: new tiles, a new file, the old one gone; zooms the file lacks are kept.
		f := tlVectorFile()
		f.Tiles = map[[3]int][]byte{{2, 1, 1}: []byte("\x1a\x03new")}
		f.MinZoom, f.MaxZoom, f.Attribution = 2, 2, ""
		second := e.uploadOK(t, d.Id, f)
		if second.Minzoom != 2 || second.Maxzoom != 2 || mustGet(second.Attribution) != "© tile tests" {
			t.Errorf("second upload: %+v", second)
		}
		if now := e.tlOnlyFile(t, d.Id); now == first {
			t.Errorf("the file kept its name %s", now)
		}
		tlCheck(t, "tile of the old file", e.get(t, "GET", tlTilePath(d.Id, "1/1/1", "pbf", key)), 204, "")
		nt := e.get(t, "GET", tlTilePath(d.Id, "2/1/1", "pbf", key))
		tlCheck(t, "tile of the new file", nt, 200, "")
		if nt.header.Get("ETag") == etag {
			t.Errorf("ETag survived the upload")
		}

		// Raster: png, no vector layers, webp replaces png.
		rd := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Private)
		ru := e.uploadOK(t, rd.Id, tlRasterFile())
		if ru.Format != "png" || !ru.VectorLayers.IsNull() {
			t.Errorf("raster upload: %+v", ru)
		}
		webp := tlRasterFile()
		webp.Format = "webp"
		webp.Tiles = map[[3]int][]byte{{0, 0, 0}: []byte("RIFF\x00\x00\x00\x00WEBPVP8 ")}
		if wu := e.uploadOK(t, rd.Id, webp); wu.Format != "webp" {
			t.Errorf("webp upload: format %s", wu.Format)
		}
		w := e.get(t, "GET", tlTilePath(rd.Id, "0/0/0", "webp", key))
		tlCheck(t, "webp tile", w, 200, "")
		if w.header.Get("Content-Type") != "image/webp" {
			t.Errorf("webp Content-Type %q", w.header.Get("Content-Type"))
		}
		tlCheck(t, "old format", e.get(t, "GET", tlTilePath(rd.Id, "0/0/0", "png", key)), 404, "")

		// Once tiles are uploaded, the format is the file's: a PATCH cannot contradict it.
		d422 := doJSON(t, e.hc, e.URL, e.acct.Token, "PATCH", "/api/datasets/"+rd.Id.String()+"/", `{"format":"png"}`, 422)
		if fmt.Sprint(d422[0].Loc) != "[body format]" {
			t.Errorf("PATCH format over a file: %+v", d422)
		}
		kept, err := e.c.UpdateDatasetWithResponse(t.Context(), rd.Id, gen.DatasetUpdate{Format: nullable.NewNullNullable[gen.DatasetUpdateFormat]()})
		must(t, err)
		if kept.StatusCode() != 200 || kept.JSON200.Format != "webp" {
			t.Errorf("PATCH format null over a webp file: %d %s", kept.StatusCode(), kept.Body)
		}
	})
}

// A tiles table without an index gets one before the file is served.
func TestUploadIndexesTiles(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		path := filepath.Join(t.TempDir(), "noindex.mbtiles")
		sq, err := sql.Open("sqlite", path)
		must(t, err)
		for _, stmt := range []string{
			`PRAGMA journal_mode=WAL`,
			`CREATE TABLE metadata (name TEXT, value TEXT)`,
			`CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)`,
			`INSERT INTO metadata VALUES ('name', 'x'), ('format', 'pbf')`,
			`INSERT INTO tiles VALUES (0, 0, 0, x'1a0161')`,
		} {
			_, err := sq.Exec(stmt)
			must(t, err)
		}
		must(t, sq.Close())
		body, err := os.ReadFile(path)
		must(t, err)
		r := e.upload(t, e.c, d.Id, body)
		wantStatus(t, r.StatusCode(), 200, r.Body)

		published := filepath.Join(e.dataDir, e.tlOnlyFile(t, d.Id))
		pub, err := sql.Open("sqlite", "file:"+published+"?mode=ro")
		must(t, err)
		defer pub.Close()
		var plan, mode string
		must(t, pub.QueryRow(`EXPLAIN QUERY PLAN SELECT tile_data FROM tiles WHERE zoom_level = 0 AND tile_column = 0 AND tile_row = 0`).Scan(new(any), new(any), new(any), &plan))
		if !strings.HasPrefix(plan, "SEARCH") {
			t.Errorf("a tile read on the published file: %s", plan)
		}
		must(t, pub.QueryRow(`PRAGMA journal_mode`).Scan(&mode))
		if mode != "delete" {
			t.Errorf("published file journal mode %s, want delete", mode)
		}
		tlCheck(t, "tile", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+e.key(t, e.c, nil, "").Token)), 200, "")
	})
}

func TestUploadRefusals(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{MaxUpload: 64 << 10})
		vec := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		ras := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Private)
		e.uploadOK(t, vec.Id, tlVectorFile())
		e.uploadOK(t, ras.Id, tlRasterFile())
		before := e.tlFiles(t)
		key := "key=" + e.key(t, e.c, nil, "").Token
		other := e.NewAccount(t)
		oc := e.Client(t, other.Token)
		othersPublic := e.dataset(t, oc, gen.DatasetKindVector, gen.Public)
		viewer := e.Client(t, e.NewPrincipal(t, e.acct.ID, "viewer").Token)

		noLayerID := tlVectorFile()
		noLayerID.VectorLayers = `[{"fields":{}}]`
		avif := tlRasterFile()
		avif.Format = "avif"
		big := tlVectorFile()
		big.Tiles = map[[3]int][]byte{{0, 0, 0}: bytes.Repeat([]byte{0x1a}, 200<<10)}
		big.Gzip = false

		cases := []struct {
			name   string
			c      *gen.ClientWithResponses
			id     uuid.UUID
			ctype  string
			body   []byte
			status int
			loc    string
		}{
			{"garbage", e.c, vec.Id, "application/octet-stream", []byte("not an mbtiles file at all"), 422, "[body]"},
			{"empty body", e.c, vec.Id, "application/octet-stream", nil, 422, "[body]"},
			{"truncated file", e.c, vec.Id, "application/octet-stream", tlFile(t, tlVectorFile())[:2048], 422, "[body]"},
			{"vector file on a raster dataset", e.c, ras.Id, "application/octet-stream", tlFile(t, tlVectorFile()), 422, "[body]"},
			{"raster file on a vector dataset", e.c, vec.Id, "application/octet-stream", tlFile(t, tlRasterFile()), 422, "[body]"},
			{"vector layer without id", e.c, vec.Id, "application/octet-stream", tlFile(t, noLayerID), 422, "[body metadata json vector_layers 0 id]"},
			{"unserved format", e.c, ras.Id, "application/octet-stream", tlFile(t, avif), 422, "[body]"},
			{"json content type", e.c, vec.Id, "application/json", tlFile(t, tlVectorFile()), 422, "[header Content-Type]"},
			{"too large", e.c, vec.Id, "application/octet-stream", tlFile(t, big), 413, ""},
			{"viewer", viewer, vec.Id, "application/octet-stream", tlFile(t, tlVectorFile()), 403, ""},
			{"another account's public dataset", e.c, othersPublic.Id, "application/octet-stream", tlFile(t, tlVectorFile()), 403, ""},
			{"another account's dataset, as seen by it", oc, vec.Id, "application/octet-stream", tlFile(t, tlVectorFile()), 404, ""},
			{"unknown dataset", e.c, uuid.New(), "application/octet-stream", tlFile(t, tlVectorFile()), 404, ""},
		}
		for _, tc := range cases {
			r, err := tc.c.UploadTilesWithBodyWithResponse(t.Context(), tc.id, tc.ctype, bytes.NewReader(tc.body))
			must(t, err)
			if r.StatusCode() != tc.status {
				t.Errorf("%s: %d, want %d: %s", tc.name, r.StatusCode(), tc.status, r.Body)
				continue
			}
			if tc.loc != "" {
				var v struct {
					Detail []struct{ Loc []any } `json:"detail"`
				}
				if json.Unmarshal(r.Body, &v) != nil || len(v.Detail) != 1 || fmt.Sprint(v.Detail[0].Loc) != tc.loc {
					t.Errorf("%s: %s, want loc %s", tc.name, r.Body, tc.loc)
				} else if strings.Contains(string(r.Body), e.dataDir) {
					t.Errorf("%s: the error reveals a server path: %s", tc.name, r.Body)
				}
			}
		}
		// Nothing changed: same files, same tiles.
		wantJSON(t, e.tlFiles(t), before)
		tlCheck(t, "vector tiles", e.get(t, "GET", tlTilePath(vec.Id, "1/1/1", "pbf", key)), 200, "")
		tlCheck(t, "raster tiles", e.get(t, "GET", tlTilePath(ras.Id, "0/0/0", "png", key)), 200, "")

		// A body over the limit without Content-Length (chunked) is refused too.
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write(tlFile(t, big))
			pw.Close()
		}()
		r, err := e.c.UploadTilesWithBodyWithResponse(t.Context(), vec.Id, "application/octet-stream", pr)
		must(t, err)
		if r.StatusCode() != 413 {
			t.Errorf("chunked oversized body: %d %s", r.StatusCode(), r.Body)
		}
		wantJSON(t, e.tlFiles(t), before)
	})
}

// A client that hangs up halfway through the body changes nothing and leaves no file behind.
func TestUploadInterrupted(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		before := e.tlFiles(t)
		key := "key=" + e.key(t, e.c, nil, "").Token

		next := tlVectorFile()
		next.Tiles = map[[3]int][]byte{{0, 0, 0}: bytes.Repeat([]byte("\x1anew"), 50_000)}
		next.Gzip = false
		body := tlFile(t, next)
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
		must(t, err)
		defer conn.Close()
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "PUT /api/datasets/%s/tiles/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", d.Id, e.acct.Token, len(body))
		_, _ = w.Write(body[:len(body)/2])
		must(t, w.Flush())
		// Wait until the server is writing the upload, then hang up.
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if b, _ := io.ReadAll(conn); len(b) > 0 {
			t.Fatalf("the server answered a half-sent upload: %s", b)
		}
		tlWaitFor(t, 15*time.Second, "the upload to start", func() bool { return len(e.tlFiles(t)) > len(before) })
		must(t, conn.Close())

		tlWaitFor(t, 5*time.Second, "the partial upload to be removed", func() bool {
			return fmt.Sprint(e.tlFiles(t)) == fmt.Sprint(before)
		})
		r := e.get(t, "GET", tlTilePath(d.Id, "1/1/1", "pbf", key))
		tlCheck(t, "previous tiles", r, 200, "")
		got, err := e.c.GetDatasetWithResponse(context.Background(), d.Id)
		must(t, err)
		if got.JSON200.Maxzoom != 5 {
			t.Errorf("the dataset changed: %s", got.Body)
		}
	})
}

// The upload command's client side: the generated client with an octet-stream body and a
// 422 whose detail names the problem (cmd/tilegate prints it).
func TestUploadErrorsAreReadable(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		r := e.upload(t, e.c, d.Id, []byte("SQLite format 3\x00 but nothing more"))
		if r.StatusCode() != 422 {
			t.Fatalf("%d %s", r.StatusCode(), r.Body)
		}
		var body struct {
			Detail []struct{ Msg string } `json:"detail"`
		}
		must(t, json.Unmarshal(r.Body, &body))
		if len(body.Detail) != 1 || !strings.Contains(body.Detail[0].Msg, mbtiles.ErrInvalid.Error()) {
			t.Errorf("422 detail %s", r.Body)
		}
	})
}

// Tiles keep being served, never with an error, while the file is replaced again and again:
// with replaced files kept for a grace period, and with none (readers that find their file gone
// read the dataset again).
func TestUploadWhileServing(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		for _, grace := range []time.Duration{0, -1} {
			e := tlStart(t, db, server.Config{ReplacedTilesGrace: grace})
			d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
			e.uploadOK(t, d.Id, tlVectorFile())
			key := "key=" + e.key(t, e.c, nil, "").Token
			files := [][]byte{tlFile(t, tlVectorFile()), tlFile(t, tlVectorFile())}

			ctx, cancel := context.WithCancel(context.Background())
			errs := make(chan string, 100)
			done := make(chan struct{})
			const readers = 8
			for i := range readers {
				go func() {
					defer func() { done <- struct{}{} }()
					for n := 0; ctx.Err() == nil; n++ {
						zxy := []string{"0/0/0", "1/0/0", "1/1/1"}[(i+n)%3]
						if r := e.get(t, "GET", tlTilePath(d.Id, zxy, "pbf", key)); r.status != 200 {
							select {
							case errs <- fmt.Sprintf("%s: %d %s", zxy, r.status, r.body):
							default:
							}
						}
					}
				}()
			}
			for i := range 10 {
				r := e.upload(t, e.c, d.Id, files[i%2])
				wantStatus(t, r.StatusCode(), 200, r.Body)
			}
			cancel()
			for range readers {
				<-done
			}
			close(errs)
			for msg := range errs {
				t.Errorf("grace %v: while replacing the file: %s", grace, msg)
			}
			if grace == 0 {
				if n := len(e.tlFiles(t)); n != 11 {
					t.Errorf("%d files kept for the grace period, want 11", n)
				}
				must(t, e.Server.Close()) // removes them at once
			}
			e.tlOnlyFile(t, d.Id)
		}
	})
}
