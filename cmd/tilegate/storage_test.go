package main_test

// Tile files in an S3-compatible bucket (#18 item 2), with real binaries on a real MinIO
// (internal/testminio): replicas that share only the database and the bucket, each starting
// with an empty local cache.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/tilegate/tilegate/internal/testminio"
	"github.com/tilegate/tilegate/mbtiles"
)

// bucketFixture is a MinIO bucket for one test, and how tilegate reaches it.
type bucketFixture struct {
	srv    *testminio.Server
	bucket string
	prefix string
}

func newBucketFixture(t *testing.T) bucketFixture {
	t.Helper()
	srv := testminio.Shared(t)
	return bucketFixture{srv: srv, bucket: srv.Bucket(t), prefix: "tiles/"}
}

// env is a replica's environment: the bucket at endpoint (MinIO's, or a fault proxy's in front
// of it), its own empty data directory, short grace and sweeps.
func (b bucketFixture) env(t *testing.T, endpoint string, extra ...string) []string {
	url := fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&use_path_style=true", b.bucket, strings.TrimSuffix(b.prefix, "/"), endpoint, testminio.Region)
	return append([]string{
		"TILEGATE_STORAGE_URL=" + url,
		"AWS_ACCESS_KEY_ID=" + testminio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + testminio.SecretKey,
		"TILEGATE_DATA_DIR=" + t.TempDir(),
		"TILEGATE_TILE_CACHE_TTL=1h",
		"TILEGATE_REPLACED_TILES_GRACE=1s", "TILEGATE_FILE_SWEEP_INTERVAL=300ms",
	}, extra...)
}

// objects lists the bucket's complete objects under the prefix.
func (b bucketFixture) objects(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	for o := range b.srv.Client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Recursive: true}) {
		must(t, o.Err)
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

// incomplete counts the bucket's unfinished multipart uploads.
func (b bucketFixture) incomplete(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	for up := range b.srv.Client.ListIncompleteUploads(ctx, b.bucket, "", true) {
		must(t, up.Err)
		n++
	}
	return n
}

// dataDirOf is the data directory a replica was started with.
func dataDirOf(p *serverProc) string {
	for _, kv := range p.cmd.Env {
		if v, ok := strings.CutPrefix(kv, "TILEGATE_DATA_DIR="); ok {
			return v
		}
	}
	return ""
}

// cachedFiles lists a replica's cached copies of the bucket's files.
func cachedFiles(t *testing.T, p *serverProc) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDirOf(p), "cache"))
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// tileSet is an MBTiles fixture's tiles, and the file.
type tileSet struct {
	path  string
	tiles map[[3]int][]byte
}

// bucketTiles writes an MBTiles file: n tiles of size bytes each (random, so incompressible:
// the file is about n×size), at zoom 3, plus 0/0/0 holding tag.
func bucketTiles(t *testing.T, n, size int, tag string) tileSet {
	t.Helper()
	tiles := map[[3]int][]byte{{0, 0, 0}: []byte("\x1a\x08" + tag)}
	for i := range n {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		b[0] = 0x1a
		tiles[[3]int{3, i % 8, i / 8}] = b
	}
	path := filepath.Join(t.TempDir(), tag+".mbtiles")
	must(t, mbtiles.WriteTestFile(path, mbtiles.TestFile{Format: "pbf", MinZoom: 0, MaxZoom: 6, Tiles: tiles}))
	return tileSet{path: path, tiles: tiles}
}

func createPublicDataset(t *testing.T, p *serverProc, token string) string {
	t.Helper()
	status, body := p.do(t, validatingClient(t), "POST", "/api/datasets/", token, `{"name":"in a bucket","kind":"vector","visibility":"public"}`)
	if status != 201 {
		t.Fatalf("create dataset: %d %s", status, body)
	}
	var d struct{ ID string }
	must(t, json.Unmarshal(body, &d))
	return d.ID
}

type tileAnswer struct {
	status int
	body   []byte
	etag   string
	retry  string
}

func getTile(t *testing.T, hc *http.Client, p *serverProc, dataset string, zxy [3]int) tileAnswer {
	t.Helper()
	res, err := hc.Get(fmt.Sprintf("%s/api/tiles/%s/%d/%d/%d.pbf", p.url, dataset, zxy[0], zxy[1], zxy[2]))
	if err != nil {
		t.Fatalf("tile %v: %v", zxy, err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(res.Body)
	must(t, err)
	return tileAnswer{status: res.StatusCode, body: buf.Bytes(), etag: res.Header.Get("ETag"), retry: res.Header.Get("Retry-After")}
}

// wantTiles checks that p serves every tile of ts, byte for byte.
func wantTiles(t *testing.T, hc *http.Client, p *serverProc, dataset string, ts tileSet) {
	t.Helper()
	for zxy, data := range ts.tiles {
		a := getTile(t, hc, p, dataset, zxy)
		if a.status != 200 || !bytes.Equal(a.body, data) {
			t.Fatalf("tile %v: %d, %d bytes (want 200, the %d bytes uploaded)", zxy, a.status, len(a.body), len(data))
		}
	}
}

// Two replicas sharing only PostgreSQL and one bucket, each with its own empty data directory:
// an upload through A is stored in the bucket and served by B, byte for byte, from one fetch
// however many first requests arrive at once; tiles replaced through B reach A; the replaced
// and deleted files' objects (and the replicas' copies) are gone after the grace period; an
// upload cut mid-body leaves nothing in the bucket or the data directory.
func TestBucketReplicas(t *testing.T) {
	t.Parallel()
	bf := newBucketFixture(t)
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	a := startServer(t, dbURL, bf.env(t, bf.srv.Endpoint)...)
	b := startServer(t, dbURL, bf.env(t, bf.srv.Endpoint)...)
	hc := validatingClient(t)
	hc.Timeout = 60 * time.Second

	// 1. Upload through A: a file above the 16 MiB part size, so a multipart upload.
	dataset := createPublicDataset(t, a, acct.Token)
	first := bucketTiles(t, 6, 3<<20, "first")
	repUploadCLI(t, a.url, acct.Token, dataset, first.path).wantOK(t)
	objs := bf.objects(t)
	if len(objs) != 1 || !strings.HasPrefix(objs[0], bf.prefix+dataset+"-") || !strings.HasSuffix(objs[0], ".mbtiles") {
		t.Fatalf("bucket after the upload: %v, want one object %s<dataset>-<random>.mbtiles", objs, bf.prefix)
	}
	if n := bf.incomplete(t); n != 0 {
		t.Fatalf("%d incomplete uploads after a complete one", n)
	}
	firstObj := objs[0]
	if left := uploadFiles(t, dataDirOf(a)); len(left) != 0 {
		t.Errorf("A's data directory still holds uploads %v", left)
	}
	if c := cachedFiles(t, a); len(c) != 1 || bf.prefix+c[0] != objs[0] {
		t.Errorf("A's cache %v, want the uploaded file (kept, not fetched back)", c)
	}
	if c := cachedFiles(t, b); len(c) != 0 {
		t.Fatalf("B's cache before any tile: %v", c)
	}

	// 2. B, empty, serves every tile identical: eight first requests at once make one fetch.
	var wg sync.WaitGroup
	answers := make([]tileAnswer, 8)
	keys := make([][3]int, 0, len(first.tiles))
	for zxy := range first.tiles {
		keys = append(keys, zxy)
	}
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = getTile(t, hc, b, dataset, keys[i%len(keys)])
		}()
	}
	wg.Wait()
	for i, ans := range answers {
		if want := first.tiles[keys[i%len(keys)]]; ans.status != 200 || !bytes.Equal(ans.body, want) {
			t.Fatalf("B's first tiles: %v answered %d with %d bytes", keys[i%len(keys)], ans.status, len(ans.body))
		}
	}
	wantTiles(t, hc, b, dataset, first)
	if n := len(b.logsWith("tile file fetched from the bucket")); n != 1 {
		t.Errorf("B fetched the file %d times, want once", n)
	}
	if n := len(a.logsWith("tile file fetched from the bucket")); n != 0 {
		t.Errorf("A fetched back the file it took: %d fetches", n)
	}
	if ea, eb := getTile(t, hc, a, dataset, [3]int{0, 0, 0}).etag, getTile(t, hc, b, dataset, [3]int{0, 0, 0}).etag; ea == "" || ea != eb {
		t.Errorf("ETags differ between replicas: %q, %q", ea, eb)
	}

	// 3. Replaced through B: A serves the new tiles once its cache hears of it.
	second := bucketTiles(t, 2, 1000, "second")
	repUploadCLI(t, b.url, acct.Token, dataset, second.path).wantOK(t)
	waitFor(t, 2*time.Second, "A to serve the replaced tiles", func() (bool, string) {
		ans := getTile(t, hc, a, dataset, [3]int{0, 0, 0})
		return ans.status == 200 && bytes.Equal(ans.body, second.tiles[[3]int{0, 0, 0}]), strconv.Itoa(ans.status)
	})
	wantTiles(t, hc, a, dataset, second)
	if ans := getTile(t, hc, a, dataset, [3]int{3, 5, 0}); ans.status != 204 {
		t.Errorf("A serves a tile only the replaced file had: %d", ans.status)
	}
	// The replaced object goes after the grace period (B's own timer, or any sweep), and the
	// replicas' copies of it with it.
	waitFor(t, 15*time.Second, "the replaced object to go", func() (bool, string) {
		objs := bf.objects(t)
		return len(objs) == 1 && objs[0] != firstObj, fmt.Sprint(objs)
	})
	waitFor(t, 15*time.Second, "the replicas' copies of the replaced file to go", func() (bool, string) {
		ca, cb := cachedFiles(t, a), cachedFiles(t, b)
		return len(ca) == 1 && len(cb) == 1 && ca[0] == cb[0], fmt.Sprint(ca, cb)
	})

	// 4. An upload cut mid-body (A) leaves nothing: no object, no multipart upload, no file.
	before := bf.objects(t)
	file, err := os.ReadFile(bucketTiles(t, 6, 3<<20, "cut").path)
	must(t, err)
	conn := rawUpload(t, a, dataset, acct.Token, len(file), file[:len(file)/2])
	waitFor(t, 10*time.Second, "the upload's spool file", func() (bool, string) {
		return len(uploadFiles(t, dataDirOf(a))) == 1, fmt.Sprint(uploadFiles(t, dataDirOf(a)))
	})
	conn.Close()
	a.waitLog(t, "upload interrupted", 10*time.Second)
	time.Sleep(time.Second) // sweeps run every 300 ms
	if objs := bf.objects(t); strings.Join(objs, " ") != strings.Join(before, " ") {
		t.Errorf("bucket after a cut upload: %v, want %v", objs, before)
	}
	if n := bf.incomplete(t); n != 0 {
		t.Errorf("%d incomplete uploads after a cut one", n)
	}
	if left := uploadFiles(t, dataDirOf(a)); len(left) != 0 {
		t.Errorf("A's data directory holds %v after a cut upload", left)
	}

	// 5. Deleted through A: B refuses it at once; the object and the copies go.
	start := time.Now()
	if status, body := a.do(t, hc, "DELETE", "/api/datasets/"+dataset, acct.Token, ""); status != 204 {
		t.Fatalf("delete: %d %s", status, body)
	}
	waitFor(t, time.Second, "B to refuse the deleted dataset", func() (bool, string) {
		s := getTile(t, hc, b, dataset, [3]int{0, 0, 0}).status
		return s == 404, strconv.Itoa(s)
	})
	t.Logf("B refused the deleted dataset %v after the DELETE returned", time.Since(start).Round(time.Millisecond))
	waitFor(t, 15*time.Second, "the deleted dataset's object and copies to go", func() (bool, string) {
		objs, ca, cb := bf.objects(t), cachedFiles(t, a), cachedFiles(t, b)
		return len(objs) == 0 && len(ca) == 0 && len(cb) == 0, fmt.Sprint(objs, ca, cb)
	})
	for _, p := range []*serverProc{a, b} {
		if strings.Contains(p.stderr.String(), testminio.SecretKey) {
			t.Errorf("a replica logged the bucket's secret key")
		}
	}
}

// The cache of the bucket's files is bounded (TILEGATE_STORAGE_CACHE_BYTES): with room for
// one file (and no hot-tile cache in front), serving two datasets in turn fetches and evicts, never holds more than the limit,
// and serves every tile right. On both databases.
func TestBucketCacheBounded(t *testing.T) {
	t.Parallel()
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			t.Parallel()
			bf := newBucketFixture(t)
			dbURL := migratedSQLite(t)
			if db == "postgres" {
				dbURL, _ = freshPostgres(t)
			}
			acct := createAccount(t, dbURL)
			one := bucketTiles(t, 4, 200_000, "one")
			two := bucketTiles(t, 4, 200_000, "two")
			fi, err := os.Stat(one.path)
			must(t, err)
			limit := fi.Size() * 3 / 2
			p := startServer(t, dbURL, bf.env(t, bf.srv.Endpoint, "TILEGATE_STORAGE_CACHE_BYTES="+strconv.FormatInt(limit, 10),
				"TILEGATE_HOT_TILE_CACHE_BYTES=0")...)
			hc := validatingClient(t)
			d1, d2 := createPublicDataset(t, p, acct.Token), createPublicDataset(t, p, acct.Token)
			repUploadCLI(t, p.url, acct.Token, d1, one.path).wantOK(t)
			repUploadCLI(t, p.url, acct.Token, d2, two.path).wantOK(t)
			cacheBytes := func() (n int64) {
				entries, err := os.ReadDir(filepath.Join(dataDirOf(p), "cache"))
				must(t, err)
				for _, e := range entries {
					info, err := e.Info()
					must(t, err)
					n += info.Size()
				}
				return n
			}
			for round := range 3 {
				for _, d := range []struct {
					id string
					ts tileSet
				}{{d1, one}, {d2, two}} {
					wantTiles(t, hc, p, d.id, d.ts)
					if n := cacheBytes(); n > limit {
						t.Fatalf("round %d: the cache holds %d bytes, over its %d", round, n, limit)
					}
					if c := cachedFiles(t, p); len(c) != 1 {
						t.Fatalf("round %d: cache %v, want the one file being served", round, c)
					}
				}
			}
			if n := len(p.logsWith("tile file fetched from the bucket")); n < 5 {
				t.Errorf("%d fetches for 6 turns between two files that do not fit together, want at least 5", n)
			}
			if n := len(p.logsWith("tile file evicted from the cache")); n < 5 {
				t.Errorf("%d evictions, want at least 5", n)
			}
			// The same, on /metrics.
			res, err := http.Get("http://" + p.adminAddr() + "/metrics")
			must(t, err)
			raw, err := io.ReadAll(res.Body)
			res.Body.Close()
			must(t, err)
			metric := func(name string) float64 {
				for _, line := range strings.Split(string(raw), "\n") {
					if v, ok := strings.CutPrefix(line, name+" "); ok {
						f, err := strconv.ParseFloat(v, 64)
						must(t, err)
						return f
					}
				}
				t.Fatalf("/metrics has no %s", name)
				return 0
			}
			if n := metric(`tilegate_cache_lookups_total{cache="storage",outcome="miss"}`); n < 5 {
				t.Errorf("storage cache misses %v, want at least 5", n)
			}
			if n := metric(`tilegate_cache_lookups_total{cache="storage",outcome="hit"}`); n < 20 {
				t.Errorf("storage cache hits %v, want a tile's worth per request at least", n)
			}
			if n := metric(`tilegate_cache_evictions_total{cache="storage"}`); n < 5 {
				t.Errorf("storage cache evictions %v, want at least 5", n)
			}
			if b, m := metric(`tilegate_cache_bytes{cache="storage"}`), metric(`tilegate_cache_max_bytes{cache="storage"}`); b > m || m != float64(limit) {
				t.Errorf("storage cache bytes %v of %v, want at most the limit %d", b, m, limit)
			}
		})
	}
}

// The bucket's credentials are never logged, not even at debug level when the bucket refuses
// them and every request that needs it fails.
func TestBucketCredentialsNeverLogged(t *testing.T) {
	t.Parallel()
	bf := newBucketFixture(t)
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	const secret = "wrong-secret-9f8e7d6c5b4a"
	env := append(bf.env(t, bf.srv.Endpoint), "AWS_SECRET_ACCESS_KEY="+secret, "AWS_SESSION_TOKEN=session-token-1a2b3c4d", "TILEGATE_LOG_LEVEL=debug")
	p := startServer(t, dbURL, env...)
	hc := validatingClient(t)
	status, body := p.do(t, hc, "GET", "/readyz", "", "")
	if status != 503 || !strings.Contains(string(body), "bucket") {
		t.Fatalf("/readyz with refused credentials: %d %s", status, body)
	}
	d := createPublicDataset(t, p, acct.Token)
	file, err := os.ReadFile(bucketTiles(t, 1, 100, "creds").path)
	must(t, err)
	if r := <-goDo(t, p, hc, "PUT", "/api/datasets/"+d+"/tiles/", acct.Token, string(file)); r.status != 503 {
		t.Errorf("upload with refused credentials: %d %s", r.status, r.body)
	}
	p.waitLog(t, "upload not stored: the bucket cannot be written", 5*time.Second)
	logs := p.stderr.String()
	for _, s := range []string{secret, "session-token-1a2b3c4d", testminio.SecretKey} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a credential %q:\n%s", s, logs)
		}
	}
	if !strings.Contains(logs, `"location":"s3://`+bf.bucket) {
		t.Errorf("the log does not name the storage:\n%s", logs)
	}
}

// TILEGATE_STORAGE_URL naming a directory (a path or file:///path) is the data directory:
// uploads are published there, as with TILEGATE_DATA_DIR.
func TestStorageURLDirectory(t *testing.T) {
	t.Parallel()
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	dir := filepath.Join(t.TempDir(), "tiles")
	p := startServer(t, dbURL, "TILEGATE_STORAGE_URL=file://"+dir, "TILEGATE_DATA_DIR="+t.TempDir())
	d := createPublicDataset(t, p, acct.Token)
	ts := bucketTiles(t, 1, 100, "dir")
	repUploadCLI(t, p.url, acct.Token, d, ts.path).wantOK(t)
	entries, err := os.ReadDir(dir)
	must(t, err)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), d+"-") {
		t.Fatalf("%s holds %v, want the uploaded file", dir, entries)
	}
	wantTiles(t, validatingClient(t), p, d, ts)
}

// With a bucket, a data directory is one replica's: a second process given the same one refuses
// to start, naming the fix (their caches would evict each other's files unaccounted).
func TestBucketDataDirOfOneReplica(t *testing.T) {
	t.Parallel()
	bf := newBucketFixture(t)
	dbURL := migratedSQLite(t)
	env := bf.env(t, bf.srv.Endpoint)
	startServer(t, dbURL, env...)
	r := runCLIEnv(t, environ(dbURL, append(env, "TILEGATE_ADMIN_ADDR=")...), "serve", "--addr", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "give each replica its own TILEGATE_DATA_DIR") {
		t.Errorf("a second replica on the same data directory: exit %d\n%s", r.code, r.stderr)
	}
}
