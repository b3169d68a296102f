package server_test

// Data integrity and availability faults (#15 items 8 and 12, #17 item 9): an upload whose
// COMMIT reply is lost, a published file missing from disk, a data directory that cannot be
// written, a full disk, and readiness that checks what the server needs.

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/faultproxy"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
)

// proxiedPostgres is the package's PostgreSQL database reached through a fault proxy the test
// owns; it skips the test when PostgreSQL is not available (testenv requires it in CI).
func proxiedPostgres(t *testing.T) (*testenv.Database, *faultproxy.Proxy) {
	t.Helper()
	var pg *testenv.Database
	for _, d := range testenv.Databases() {
		if d.Name == "postgres" {
			pg = d
		}
	}
	if pg == nil {
		t.Skip("PostgreSQL unavailable")
	}
	u, err := url.Parse(pg.URL)
	must(t, err)
	p, err := faultproxy.Start(u.Host)
	must(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	q := u.Query()
	// Every statement's text is sent each time (not once per connection, then by a prepared
	// statement's name), so the proxy sees the UPDATE it waits for.
	q.Set("default_query_exec_mode", "exec")
	u.RawQuery = q.Encode()
	st, err := store.Open(context.Background(), u.String(), store.Options{})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return &testenv.Database{Name: "postgres", URL: u.String(), Store: st}, p
}

// Item 8: the reply to an upload's COMMIT is lost (the transaction committed; the server cannot
// know). The file the dataset now names is kept: the upload reads the row again and answers
// 200, and the new tiles serve. Before, the upload answered 503 and removed the committed file.
func TestUploadCommitReplyLost(t *testing.T) {
	db, proxy := proxiedPostgres(t)
	e := tlStart(t, db, server.Config{})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, d.Id, tlVectorFile())
	key := "key=" + e.key(t, e.c, nil, "").Token

	second := tlVectorFile()
	second.Gzip = false
	second.Tiles = map[[3]int][]byte{{0, 0, 0}: []byte("\x1a\x0bsecond file")}
	proxy.LoseReply([]byte(`UPDATE "datasets"`), []byte("commit"))
	r := e.upload(t, e.c, d.Id, tlFile(t, second))
	if n := proxy.Stats().LostReplies; n != 1 {
		t.Fatalf("the proxy lost %d replies, want the upload's commit's", n)
	}
	wantStatus(t, r.StatusCode(), 200, r.Body)

	row, err := db.Store.DatasetAccessOne(context.Background(), store.Caller{AccountID: e.acct.ID, Role: "admin"}, d.Id)
	must(t, err)
	if row.TileFile == nil || !exists(filepath.Join(e.dataDir, *row.TileFile)) {
		t.Fatalf("the dataset names %v, which is not on disk (data directory: %v)", row.TileFile, e.tlFiles(t))
	}
	tile := e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", key))
	if tile.status != 200 || string(tile.body) != "\x1a\x0bsecond file" {
		t.Fatalf("tile after the ambiguous commit: %d %q, want 200 with the second file's tile", tile.status, tile.body)
	}
}

// Item 8: a file the dataset names that is gone from disk answers 410 like a damaged one, logged
// once, not a retryable 503 (and an error line) per request.
func TestTileOfMissingFile(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var logs syncBuffer
		e := tlStart(t, db, server.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		key := "key=" + e.key(t, e.c, nil, "").Token
		// Removed before any read opened it (an open handle would still read the file).
		must(t, os.Remove(filepath.Join(e.dataDir, e.tlOnlyFile(t, d.Id))))
		for _, zxy := range []string{"0/0/0", "1/1/1", "0/0/0"} {
			r := e.get(t, "GET", tlTilePath(d.Id, zxy, "pbf", key))
			wantStatus(t, r.status, 410, r.body)
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("410 with Cache-Control %q", r.header.Get("Cache-Control"))
			}
		}
		if n := strings.Count(logs.String(), "tile file cannot be served"); n != 1 {
			t.Errorf("the missing file was logged %d times, want once:\n%s", n, logs.String())
		}
	})
}

// Item 12: a data directory that cannot be written (here a file stands where the directory
// should be: permissions do not stop root, who runs the tests) is a storage failure, answered
// as one: 503 naming the storage, never "the database is unavailable", and no database outage
// logged. /readyz says the data directory is not usable.
func TestUnwritableDataDirectory(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var logs syncBuffer
		blocker := filepath.Join(t.TempDir(), "data")
		must(t, os.WriteFile(blocker, nil, 0o600))
		e := tlStart(t, db, server.Config{DataDir: blocker, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		r := e.upload(t, e.c, d.Id, tlFile(t, tlVectorFile()))
		wantStatus(t, r.StatusCode(), 503, r.Body)
		if detail := string(r.Body); !strings.Contains(detail, "storage") || strings.Contains(detail, "database") {
			t.Errorf("upload into a file: %s, want the storage named, not the database", detail)
		}
		if r.HTTPResponse.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		ready := e.get(t, "GET", "/readyz")
		wantStatus(t, ready.status, 503, ready.body)
		if !strings.Contains(string(ready.body), "data directory") {
			t.Errorf("/readyz: %s, want the data directory named", ready.body)
		}
		if strings.Contains(logs.String(), "database unavailable") {
			t.Errorf("a storage failure was logged as a database outage:\n%s", logs.String())
		}
		// The dataset did not change.
		g, err := e.c.GetDatasetWithResponse(context.Background(), d.Id)
		must(t, err)
		if g.JSON200 == nil || g.JSON200.Format != d.Format {
			t.Errorf("dataset after the refused upload: %s", g.Body)
		}
	})
}

// fullDisk fails every write after limit bytes with ENOSPC, as a file on a full disk does.
type fullDisk struct {
	f     *os.File
	limit int64
}

func (w *fullDisk) Write(p []byte) (int, error) {
	if w.limit < int64(len(p)) {
		return 0, &fs.PathError{Op: "write", Path: w.f.Name(), Err: syscall.ENOSPC}
	}
	w.limit -= int64(len(p))
	return w.f.Write(p)
}

// Item 12: a full disk while an upload is written is a 507, with nothing left behind and the
// previous tiles serving.
func TestUploadDiskFull(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var logs syncBuffer
		e := tlStart(t, db, server.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		before := e.tlOnlyFile(t, d.Id)
		e.Server.SetUploadWriter(func(f *os.File) io.Writer { return &fullDisk{f: f, limit: 4096} })
		r := e.upload(t, e.c, d.Id, tlFile(t, tlVectorFile()))
		wantStatus(t, r.StatusCode(), 507, r.Body)
		if e.tlOnlyFile(t, d.Id) != before {
			t.Error("the previous file was replaced")
		}
		if strings.Contains(logs.String(), "database unavailable") {
			t.Errorf("a full disk was logged as a database outage:\n%s", logs.String())
		}
	})
}

// #17 item 9: /readyz fails when the database answers but refuses writes (a standby, a
// read-only file), naming the database; it is ready with a writable one.
func TestReadyzDatabaseNotWritable(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		wantStatus(t, e.get(t, "GET", "/readyz").status, 200, nil)

		// A store of one connection, made read-only once the server has started (it writes
		// its settings at start).
		ro, err := store.Open(context.Background(), db.URL, store.Options{MaxOpenConns: 1})
		must(t, err)
		t.Cleanup(func() { _ = ro.Close() })
		re := testenv.Start(t, &testenv.Database{Name: db.Name, URL: db.URL, Store: ro}, server.Config{DataDir: e.dataDir, UsageOff: true})
		readOnly := "SET default_transaction_read_only = on"
		if db.Name == "sqlite" {
			readOnly = "PRAGMA query_only = 1"
		}
		must(t, ro.DB().Exec(readOnly).Error)
		hc := re.HTTPClient(t)
		for _, method := range []string{"GET", "HEAD"} {
			req, err := http.NewRequest(method, re.URL+"/readyz", nil)
			must(t, err)
			res, err := hc.Do(req)
			must(t, err)
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			wantStatus(t, res.StatusCode, 503, body)
			if method == "GET" && !strings.Contains(string(body), "cannot be written") {
				t.Errorf("/readyz on a read-only database: %s, want the database named", body)
			}
		}
	})
}

// The readiness probe leaves nothing behind in the data directory.
func TestReadyzLeavesNoFile(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		for range 3 {
			wantStatus(t, e.get(t, "GET", "/readyz").status, 200, nil)
		}
		if names := e.tlFiles(t); len(names) != 0 {
			t.Errorf("data directory after /readyz: %v", names)
		}
	})
}

// Item 9: an upload beyond Config.MaxConcurrentUploads is answered 503 with Retry-After at
// once, without its body being read; a place frees when an upload ends.
func TestUploadConcurrencyCap(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{MaxConcurrentUploads: 1})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		file := tlFile(t, tlVectorFile())

		// The first upload holds its place while its body trickles in.
		pr, pw := io.Pipe()
		first := make(chan *gen.UploadTilesResponse, 1)
		go func() {
			r, err := e.c.UploadTilesWithBodyWithResponse(context.Background(), d.Id, "application/octet-stream", pr)
			if err != nil {
				t.Error(err)
			}
			first <- r
		}()
		_, err := pw.Write(file[:100])
		must(t, err)
		// The write returns once the client's transport has the bytes, not once the server
		// holds its place; the place is taken before the upload's temporary file is created,
		// so that file's appearance is the sign (CI once raced here: 200, want 503).
		deadline := time.Now().Add(10 * time.Second)
		for len(e.tlFiles(t)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the first upload's temporary file never appeared")
			}
			time.Sleep(5 * time.Millisecond)
		}

		r := e.upload(t, e.c, d.Id, file)
		wantStatus(t, r.StatusCode(), 503, r.Body)
		if r.HTTPResponse.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "uploads") {
			t.Errorf("503 %q with Retry-After %q, want the uploads named and a Retry-After", r.Body, r.HTTPResponse.Header.Get("Retry-After"))
		}

		_, err = pw.Write(file[100:])
		must(t, err)
		must(t, pw.Close())
		if r := <-first; r == nil || r.StatusCode() != 200 {
			t.Fatalf("the first upload: %v", r)
		}
		r = e.upload(t, e.c, d.Id, file)
		wantStatus(t, r.StatusCode(), 200, r.Body)
	})
}

// Item 9: an MBTiles file carrying many large metadata rows is refused with 422 at
// ["body", "metadata"] (mbtiles' TestInspectMetadataMemory measures the memory).
func TestUploadRefusesHugeMetadata(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		f := tlVectorFile()
		f.SQL = []string{`INSERT INTO metadata SELECT 'extra' || n, hex(randomblob(262144)) FROM (
			WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 9) SELECT n FROM c)`} // 4.5 MiB
		r := e.upload(t, e.c, d.Id, tlFile(t, f))
		wantStatus(t, r.StatusCode(), 422, r.Body)
		var v struct{ Detail []struct{ Loc []any } }
		must(t, json.Unmarshal(r.Body, &v))
		if len(v.Detail) != 1 || !sameLoc(v.Detail[0].Loc, []any{"body", "metadata"}) {
			t.Errorf("422 %s, want loc [body metadata]", r.Body)
		}
		if names := e.tlFiles(t); len(names) != 0 {
			t.Errorf("data directory after the refusal: %v", names)
		}
	})
}
