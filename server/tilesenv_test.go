package server_test

// Helpers of the tile delivery tests (tiles_test.go, upload_test.go, tilejson_test.go,
// tilecache_test.go). Names start with "tl" so they cannot collide with other tests' helpers.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/tiletoken"
)

// tlEnv is a running tilegate with one account, its admin client and a validating HTTP client.
type tlEnv struct {
	*testenv.Env
	acct    testenv.Account
	c       *gen.ClientWithResponses
	hc      *http.Client
	dataDir string
	clock   *tlClock
}

// tlClock is the signer's clock; zero means the real time.
type tlClock struct{ offset atomic.Int64 }

func (c *tlClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *tlClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func tlStart(t testing.TB, db *testenv.Database, cfg server.Config) *tlEnv {
	t.Helper()
	clock := &tlClock{}
	if cfg.Signer == nil {
		key, err := tiletoken.GenerateKey("t1")
		must(t, err)
		cfg.Signer, err = tiletoken.New([]tiletoken.Key{key}, tiletoken.WithClock(clock.now))
		must(t, err)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "data") // created by the first upload
	}
	if cfg.LastUsedInterval == 0 {
		cfg.LastUsedInterval = time.Hour // tests that count statements must not see a flush
	}
	if cfg.Now == nil {
		cfg.Now = clock.now // keys' expiry follows the same clock as tile tokens
	}
	if cfg.UsageFlushInterval == 0 {
		cfg.UsageFlushInterval = time.Hour // the same: tests flush usage with FlushUsage
	}
	if cfg.ReplicaHeartbeat == 0 {
		cfg.ReplicaHeartbeat = time.Hour // one heartbeat, with the first rate-limited request
	}
	env := testenv.Start(t, db, cfg)
	t.Cleanup(func() {
		if err := env.Server.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	acct := env.NewAccount(t)
	return &tlEnv{Env: env, acct: acct, c: env.Client(t, acct.Token), hc: env.HTTPClient(t), dataDir: cfg.DataDir, clock: clock}
}

func (e *tlEnv) dataset(t testing.TB, c *gen.ClientWithResponses, kind gen.DatasetKind, v gen.Visibility) gen.Dataset {
	t.Helper()
	r, err := c.CreateDatasetWithResponse(context.Background(), gen.DatasetCreate{Name: "tiles " + string(v), Kind: kind, Visibility: &v})
	must(t, err)
	wantStatus(t, r.StatusCode(), 201, r.Body)
	return *r.JSON201
}

// Fixture tiles: three vector tiles (stored gzipped) and two raster ones.
var (
	tlVectorTiles = map[[3]int][]byte{
		{0, 0, 0}: []byte("\x1a\x0bvector z0 tile"),
		{1, 0, 0}: []byte("\x1a\x0bvector z1 tile a"),
		{1, 1, 1}: []byte("\x1a\x0bvector z1 tile b"),
	}
	tlPNG         = []byte("\x89PNG\r\n\x1a\n raster tile")
	tlRasterTiles = map[[3]int][]byte{{0, 0, 0}: tlPNG, {2, 1, 3}: tlPNG}
)

func tlVectorFile() mbtiles.TestFile {
	return mbtiles.TestFile{
		Name: "roads", Format: "pbf", MinZoom: 0, MaxZoom: 5, Bounds: [4]float64{-10, -20, 30, 40},
		Tiles: tlVectorTiles, Gzip: true, Attribution: "© tile tests",
		VectorLayers: `[{"id":"roads","fields":{"name":"String"},"minzoom":0,"maxzoom":5}]`,
	}
}

func tlRasterFile() mbtiles.TestFile {
	return mbtiles.TestFile{Name: "imagery", Format: "png", MinZoom: 0, MaxZoom: 3, Tiles: tlRasterTiles}
}

// tlFile writes an MBTiles fixture and returns its bytes.
func tlFile(t testing.TB, f mbtiles.TestFile) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fixture.mbtiles")
	must(t, mbtiles.WriteTestFile(path, f))
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

// upload sends body as the dataset's MBTiles file through the generated client.
func (e *tlEnv) upload(t testing.TB, c *gen.ClientWithResponses, id uuid.UUID, body []byte) *gen.UploadTilesResponse {
	t.Helper()
	r, err := c.UploadTilesWithBodyWithResponse(context.Background(), id, "application/octet-stream", bytes.NewReader(body))
	must(t, err)
	return r
}

func (e *tlEnv) uploadOK(t testing.TB, id uuid.UUID, f mbtiles.TestFile) gen.Dataset {
	t.Helper()
	r := e.upload(t, e.c, id, tlFile(t, f))
	wantStatus(t, r.StatusCode(), 200, r.Body)
	return *r.JSON200
}

func (e *tlEnv) key(t testing.TB, c *gen.ClientWithResponses, origins []string, userAgent string) gen.APIKey {
	t.Helper()
	s := gen.APIKeySettings{}
	if origins != nil {
		s.Origins = nullable.NewNullableWithValue(origins)
	}
	if userAgent != "" {
		s.UserAgent = nullable.NewNullableWithValue(userAgent)
	}
	r, err := c.CreateAPIKeyWithResponse(context.Background(), s)
	must(t, err)
	wantStatus(t, r.StatusCode(), 200, r.Body)
	return *r.JSON200
}

// token mints a tile token for the dataset as c's principal and returns its query string.
func (e *tlEnv) token(t testing.TB, c *gen.ClientWithResponses, id uuid.UUID) string {
	t.Helper()
	r, err := c.GetTileTokenWithResponse(context.Background(), id)
	must(t, err)
	wantStatus(t, r.StatusCode(), 200, r.Body)
	tok, err := r.JSON200.AsVectorTileToken()
	must(t, err)
	tmpl := tok.Tiles[0]
	return tmpl[strings.IndexByte(tmpl, '?')+1:]
}

type tlResponse struct {
	status int
	header http.Header
	body   []byte
}

// get requests path through the validating client with the given headers ("Name: value").
func (e *tlEnv) get(t testing.TB, method, path string, headers ...string) tlResponse {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, nil)
	must(t, err)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(name, strings.TrimSpace(value))
	}
	if req.Header.Get("Accept-Encoding") == "" {
		// As browsers do; it also keeps Go's transport from unzipping tiles behind our back.
		req.Header.Set("Accept-Encoding", "gzip")
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "tile-tests")
	}
	res, err := e.hc.Do(req)
	must(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	must(t, err)
	return tlResponse{res.StatusCode, res.Header, body}
}

func tlTilePath(id uuid.UUID, zxy string, format string, query string) string {
	p := "/api/tiles/" + id.String() + "/" + zxy + "." + format
	if query != "" {
		p += "?" + query
	}
	return p
}

// tlWaitFor polls cond every 10ms until it holds or within passes.
func tlWaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tlListening waits, on PostgreSQL, until the server's invalidation listener is connected (it
// starts with the first cached entry and flushes the cache when it connects).
func (e *tlEnv) tlListening(t testing.TB) {
	t.Helper()
	if e.DB.Name != "postgres" {
		return
	}
	tlWaitFor(t, 5*time.Second, "the invalidation listener", e.Server.Listening)
}

// tlWarmAfterFlush warms the caches again after the listener connected and marked every entry
// for a refresh: such entries serve at once and refresh in the background, so warm runs until
// two passes in a row, each followed by a pause for refreshes to start, ran no SQL.
func tlWarmAfterFlush(t testing.TB, db *testenv.Database, warm func()) {
	t.Helper()
	clean := 0
	tlWaitFor(t, 10*time.Second, "the background refreshes", func() bool {
		before := db.Statements.Load()
		warm()
		time.Sleep(100 * time.Millisecond)
		if db.Statements.Load() == before {
			clean++
		} else {
			clean = 0
		}
		return clean == 2
	})
}

func tlList(v []string) nullable.Nullable[[]string] { return nullable.NewNullableWithValue(v) }

func tlUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
