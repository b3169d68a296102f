package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/faultproxy"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/internal/testpeer"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/upstream"
)

// loopbackUpstreams lets upstream datasets reach tile servers on this host, as an operator does
// with TILEGATE_UPSTREAM_ALLOW=127.0.0.0/8.
func loopbackUpstreams(t testing.TB, cfg upstream.Config) upstream.Config {
	allow, err := upstream.ParsePrefixes("127.0.0.0/8")
	must(t, err)
	cfg.Guard = upstream.NewGuard(allow, nil)
	return cfg
}

func upstreamSetting(url string, headers map[string]string, missing string) nullable.Nullable[gen.Upstream] {
	u := gen.Upstream{Url: url}
	if headers != nil {
		u.Headers = &headers
	}
	if missing != "" {
		m := gen.UpstreamMissing(missing)
		u.Missing = &m
	}
	return nullable.NewNullableWithValue(u)
}

func (e *tlEnv) upstreamDataset(t testing.TB, v gen.Visibility, up nullable.Nullable[gen.Upstream]) gen.Dataset {
	t.Helper()
	r, err := e.c.CreateDatasetWithResponse(context.Background(), gen.DatasetCreate{Name: "live", Kind: gen.DatasetKindVector, Visibility: &v, Upstream: up})
	must(t, err)
	wantStatus(t, r.StatusCode(), 201, r.Body)
	return *r.JSON201
}

// An upstream dataset in front of a real tile server (mbtileserver): the same access decision,
// tiles from the upstream, its missing tiles as the dataset says, no uploads, usage counted.
func TestUpstreamDatasetServesFromATileServer(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{Upstream: loopbackUpstreams(t, upstream.Config{CacheBytes: 1 << 20})})
		tilesDir := t.TempDir()
		tile := []byte("\x1a\x0bupstream tile")
		must(t, mbtiles.WriteTestFile(filepath.Join(tilesDir, "roads.mbtiles"), mbtiles.TestFile{
			Format: "pbf", MaxZoom: 5, Gzip: true, Tiles: map[[3]int][]byte{{1, 0, 1}: tile},
		}))
		peer := testpeer.Start(t, tilesDir)
		tpl := peer.URL + "/services/roads/tiles/{z}/{x}/{y}.pbf"
		d := e.upstreamDataset(t, gen.Private, upstreamSetting(tpl, nil, ""))
		strict := e.upstreamDataset(t, gen.Private, upstreamSetting(tpl, nil, "not_found"))
		tok := e.token(t, e.c, d.Id)

		r := e.get(t, "GET", tlTilePath(d.Id, "1/0/1", "pbf", tok))
		tlCheck(t, "upstream tile", r, 200, "")
		if !bytes.Equal(r.body, tile) || r.header.Get("Content-Type") != "application/vnd.mapbox-vector-tile" {
			t.Errorf("upstream tile: %q %q", r.body, r.header.Get("Content-Type"))
		}
		tlCheck(t, "no credential", e.get(t, "GET", tlTilePath(d.Id, "1/0/1", "pbf", "")), 401, "missing")
		tlCheck(t, "no tile there: empty", e.get(t, "GET", tlTilePath(d.Id, "2/0/0", "pbf", tok)), 204, "")
		tlCheck(t, "no tile there: 404 by setting", e.get(t, "GET", tlTilePath(strict.Id, "2/0/0", "pbf", e.token(t, e.c, strict.Id))), 404, "")
		tlCheck(t, "other format", e.get(t, "GET", tlTilePath(d.Id, "1/0/1", "png", tok)), 404, "")

		up := e.upload(t, e.c, d.Id, tlFile(t, tlVectorFile()))
		wantStatus(t, up.StatusCode(), 409, up.Body)

		must(t, e.Server.FlushUsage(t.Context()))
		if got := readUsage(t, db.Store, store.UsageQuery{DatasetID: &d.Id}); got.served != 2 || got.bytes != int64(len(tile)) {
			t.Errorf("usage: served %d bytes %d, want 2 and %d", got.served, got.bytes, len(tile))
		}

		// Back to a file dataset: the upstream no longer serves it.
		pr, err := e.c.UpdateDatasetWithResponse(context.Background(), d.Id, gen.DatasetUpdate{Upstream: nullable.NewNullNullable[gen.Upstream]()})
		must(t, err)
		wantStatus(t, pr.StatusCode(), 200, pr.Body)
		if pr.JSON200.Upstream.IsSpecified() && !pr.JSON200.Upstream.IsNull() {
			t.Errorf("upstream after null: %+v", pr.JSON200.Upstream)
		}
		tlCheck(t, "file dataset without a file", e.get(t, "GET", tlTilePath(d.Id, "1/0/1", "pbf", tok)), 204, "")
	})
}

// Header values are secrets: sent upstream, sealed at rest, masked in answers and the audit
// trail, kept when written back masked.
func TestUpstreamHeadersAreSecret(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var gotAuth atomic.Value
		origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gotAuth.Store(r.Header.Get("Authorization"))
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write([]byte("\x1a\x01x"))
		}))
		defer origin.Close()
		e := tlStart(t, db, server.Config{Upstream: loopbackUpstreams(t, upstream.Config{})})
		const secret = "Bearer upstream-s3cret"
		d := e.upstreamDataset(t, gen.Public, upstreamSetting(origin.URL+"/{z}/{x}/{y}.pbf", map[string]string{"Authorization": secret}, ""))
		body, _ := json.Marshal(d)
		if strings.Contains(string(body), "s3cret") || (*mustUpstream(t, d).Headers)["Authorization"] != "***" {
			t.Fatalf("created dataset shows its header: %s", body)
		}
		tlCheck(t, "public upstream tile", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "")), 200, "")
		if gotAuth.Load() != secret {
			t.Fatalf("upstream got Authorization %v", gotAuth.Load())
		}
		row, err := db.Store.DatasetAccessOne(context.Background(), store.Caller{AccountID: e.acct.ID}, d.Id)
		must(t, err)
		if row.Dataset.UpstreamHeaders == nil || strings.Contains(*row.Dataset.UpstreamHeaders, "s3cret") {
			t.Fatalf("stored headers: %v", row.Dataset.UpstreamHeaders)
		}
		// Written back as read (masked), the header keeps its value; a new value replaces it.
		pr, err := e.c.UpdateDatasetWithResponse(context.Background(), d.Id, gen.DatasetUpdate{Upstream: nullable.NewNullableWithValue(*mustUpstream(t, d))})
		must(t, err)
		wantStatus(t, pr.StatusCode(), 200, pr.Body)
		gotAuth.Store("")
		tlCheck(t, "after writing back", e.get(t, "GET", tlTilePath(d.Id, "1/0/0", "pbf", "")), 200, "")
		if gotAuth.Load() != secret {
			t.Errorf("after writing the masked value back, upstream got %v", gotAuth.Load())
		}
		ar, err := e.c.ListAuditWithResponse(context.Background(), nil)
		must(t, err)
		if strings.Contains(string(ar.Body), "s3cret") || !strings.Contains(string(ar.Body), "upstream_url") {
			t.Errorf("audit trail: %s", ar.Body)
		}
		// *** for a header that has no stored value is refused, naming it.
		bad := upstreamSetting(origin.URL+"/{z}/{x}/{y}.pbf", map[string]string{"X-Other": "***"}, "")
		br, err := e.c.UpdateDatasetWithResponse(context.Background(), d.Id, gen.DatasetUpdate{Upstream: bad})
		must(t, err)
		wantStatus(t, br.StatusCode(), 422, br.Body)
	})
}

func mustUpstream(t testing.TB, d gen.Dataset) *gen.Upstream {
	t.Helper()
	u, err := d.Upstream.Get()
	must(t, err)
	return &u
}

// Refused at write time with a 422 naming the field; nothing stored.
func TestUpstreamValidation(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		v := gen.Private
		for name, c := range map[string]struct {
			up  nullable.Nullable[gen.Upstream]
			loc string
		}{
			"scheme":      {upstreamSetting("ftp://tiles.internal/{z}/{x}/{y}.pbf", nil, ""), "url"},
			"no {y}":      {upstreamSetting("https://tiles.internal/{z}/{x}.pbf", nil, ""), "url"},
			"credentials": {upstreamSetting("https://u:p@tiles.internal/{z}/{x}/{y}.pbf", nil, ""), "url"},
			"header CRLF": {upstreamSetting("https://tiles.internal/{z}/{x}/{y}.pbf", map[string]string{"X-A": "a\r\nB: c"}, ""), "headers"},
			"Host header": {upstreamSetting("https://tiles.internal/{z}/{x}/{y}.pbf", map[string]string{"Host": "evil"}, ""), "headers"},
		} {
			before := countDatasets(t, e)
			r, err := e.c.CreateDatasetWithResponse(context.Background(), gen.DatasetCreate{Name: "x", Kind: gen.DatasetKindVector, Visibility: &v, Upstream: c.up})
			must(t, err)
			if r.StatusCode() != 422 || !strings.Contains(string(r.Body), `"upstream","`+c.loc+`"`) {
				t.Errorf("%s: %d %s, want 422 naming upstream.%s", name, r.StatusCode(), r.Body, c.loc)
			}
			if countDatasets(t, e) != before {
				t.Errorf("%s: a dataset was created", name)
			}
		}
	})
}

func countDatasets(t testing.TB, e *tlEnv) int {
	r, err := e.c.ListDatasetsWithResponse(context.Background(), nil)
	must(t, err)
	return r.JSON200.TotalCount
}

// The default address rule refuses loopback upstreams before connecting; an upstream black hole
// answers 504 within the deadline and does not slow another dataset's upstream.
func TestUpstreamFaults(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		var hits atomic.Int64
		origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write([]byte("\x1a\x01x"))
		}))
		defer origin.Close()

		strict := tlStart(t, db, server.Config{}) // the default guard
		d := strict.upstreamDataset(t, gen.Public, upstreamSetting(origin.URL+"/{z}/{x}/{y}.pbf", nil, ""))
		tlCheck(t, "loopback upstream by default", strict.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "")), 502, "")
		if hits.Load() != 0 {
			t.Fatalf("the refused upstream got %d requests", hits.Load())
		}

		proxy, err := faultproxy.Start(strings.TrimPrefix(origin.URL, "http://"))
		must(t, err)
		defer proxy.Close()
		e := tlStart(t, db, server.Config{Upstream: loopbackUpstreams(t, upstream.Config{Timeout: 300 * time.Millisecond})})
		hole := e.upstreamDataset(t, gen.Public, upstreamSetting("http://"+proxy.Addr()+"/{z}/{x}/{y}.pbf", nil, ""))
		fine := e.upstreamDataset(t, gen.Public, upstreamSetting(origin.URL+"/{z}/{x}/{y}.pbf", nil, ""))
		proxy.SetMode(faultproxy.BlackHole)
		done := make(chan tlResponse, 1)
		start := time.Now()
		go func() { done <- e.get(t, "GET", tlTilePath(hole.Id, "0/0/0", "pbf", "")) }()
		tlCheck(t, "another upstream meanwhile", e.get(t, "GET", tlTilePath(fine.Id, "0/0/0", "pbf", "")), 200, "")
		r := <-done
		tlCheck(t, "black-holed upstream", r, 504, "")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("black-holed upstream answered after %v (deadline 300 ms)", took)
		}

		// A saturated upstream: 429 upstream_busy with Retry-After at once, not a pile-up.
		release := make(chan struct{})
		var slowHits atomic.Int64
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			slowHits.Add(1)
			<-release
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write([]byte("\x1a\x01x"))
		}))
		defer slow.Close()
		b := tlStart(t, db, server.Config{Upstream: loopbackUpstreams(t, upstream.Config{MaxInFlight: 1, QueueWait: 10 * time.Millisecond})})
		busy := b.upstreamDataset(t, gen.Public, upstreamSetting(slow.URL+"/{z}/{x}/{y}.pbf", nil, ""))
		first := make(chan tlResponse, 1)
		go func() { first <- b.get(t, "GET", tlTilePath(busy.Id, "0/0/0", "pbf", "")) }()
		tlWaitFor(t, 5*time.Second, "the first upstream request", func() bool { return slowHits.Load() == 1 })
		r = b.get(t, "GET", tlTilePath(busy.Id, "1/0/0", "pbf", ""))
		tlCheck(t, "saturated upstream", r, 429, "upstream_busy")
		if r.header.Get("Retry-After") == "" {
			t.Error("429 upstream_busy without Retry-After")
		}
		close(release)
		tlCheck(t, "the request that held the upstream", <-first, 200, "")
	})
}
