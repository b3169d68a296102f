package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/oapi-codegen/nullable"
	dto "github.com/prometheus/client_model/go"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/metrics"
	"github.com/tilegate/tilegate/server"
)

// TestMetrics drives real requests through the server (tiles served and refused, a token batch,
// uploads, a key change) and checks the exact figures a Prometheus scrape of its registry reads.
func TestMetrics(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		m := metrics.New()
		e := tlStart(t, db, server.Config{Metrics: m})
		admin := httptest.NewServer(m.Handler())
		t.Cleanup(admin.Close)
		scrape := func() testenv.Scrape { return testenv.ScrapeMetrics(t, admin.URL+"/metrics") }

		pub := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		priv := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		file := tlFile(t, tlVectorFile())
		for _, id := range []uuid.UUID{pub.Id, priv.Id} {
			r := e.upload(t, e.c, id, file)
			wantStatus(t, r.StatusCode(), 200, r.Body)
		}
		junk := []byte("this is not an MBTiles file")
		r := e.upload(t, e.c, priv.Id, junk)
		wantStatus(t, r.StatusCode(), 422, r.Body)
		warmKey := e.key(t, e.c, nil, "").Token
		key := e.key(t, e.c, nil, "")

		// Warm both datasets (on PostgreSQL the listener connects with the first entry and
		// flushes the cache: warm again after), so the figures below are exact.
		warm := func() {
			wantStatus(t, e.get(t, "GET", tlTilePath(pub.Id, "0/0/0", "pbf", "")).status, 200, nil)
			wantStatus(t, e.get(t, "GET", tlTilePath(priv.Id, "0/0/0", "pbf", "key="+warmKey)).status, 200, nil)
		}
		warm()
		e.tlListening(t)
		tlWarmAfterFlush(t, db, warm)

		before := scrape()
		// Uploads: counted from a fresh registry, so absolute.
		if got := before.Value("tilegate_upload_bytes", "outcome", "stored"); got != 2 {
			t.Errorf("stored uploads = %v, want 2", got)
		}
		if got := before.Sum("tilegate_upload_bytes", "outcome", "stored"); got != float64(2*len(file)) {
			t.Errorf("stored upload bytes = %v, want %d", got, 2*len(file))
		}
		if got := before.Sum("tilegate_upload_bytes", "outcome", "rejected"); got != float64(len(junk)) {
			t.Errorf("rejected upload bytes = %v, want %d", got, len(junk))
		}
		if got := before.Value("tilegate_upload_duration_seconds", "outcome", "rejected"); got != 1 {
			t.Errorf("rejected upload durations = %v, want 1", got)
		}

		servedBytes := 0 // the bodies of the tiles served
		tile := func(method, path string, want int, headers ...string) tlResponse {
			t.Helper()
			res := e.get(t, method, path, headers...)
			wantStatus(t, res.status, want, res.body)
			if want == 200 {
				servedBytes += len(res.body)
			}
			return res
		}
		first := tile("GET", tlTilePath(pub.Id, "0/0/0", "pbf", ""), 200)
		tile("GET", tlTilePath(pub.Id, "1/1/1", "pbf", ""), 200)
		tile("GET", tlTilePath(pub.Id, "2/0/0", "pbf", ""), 204) // no tile there
		tile("GET", tlTilePath(pub.Id, "0/0/0", "pbf", ""), 304, "If-None-Match: "+first.header.Get("ETag"))
		tile("HEAD", tlTilePath(pub.Id, "0/0/0", "pbf", ""), 200)
		tile("GET", tlTilePath(pub.Id, "0/0/0", "png", ""), 404) // wrong format
		tile("GET", tlTilePath(pub.Id, "1/5/0", "pbf", ""), 400) // x out of range
		missing := uuid.New()
		tile("GET", tlTilePath(missing, "0/0/0", "pbf", ""), 404) // no such dataset
		tile("GET", tlTilePath(priv.Id, "0/0/0", "pbf", ""), 401)
		tile("GET", tlTilePath(priv.Id, "0/0/0", "pbf", "key=AAAAAAAAAAAAAAAAAAAAAAAA"), 403)
		tile("GET", tlTilePath(priv.Id, "0/0/0", "pbf", "key="+key.Token), 200) // key: miss
		tile("GET", tlTilePath(priv.Id, "1/0/0", "pbf", "key="+key.Token), 200) // key: hit
		if servedBytes == 0 {
			t.Fatal("no tile bytes were served")
		}

		doJSON(t, e.hc, e.URL, e.acct.Token, "POST", "/api/tiles/tokens/",
			`{"dataset_ids":["`+pub.Id.String()+`","`+priv.Id.String()+`","`+pub.Id.String()+`"]}`, 200)
		cr, err := e.c.ChangeAPIKeySettingsWithResponse(context.Background(), key.Id,
			gen.APIKeySettings{Name: nullable.NewNullableWithValue("renamed")})
		must(t, err)
		wantStatus(t, cr.StatusCode(), 200, cr.Body)

		flushed := time.Now()
		must(t, e.Server.FlushUsage(t.Context()))
		var usageRows int64
		must(t, db.Store.DB().Raw("SELECT count(*) FROM usage_hours WHERE dataset_id IN (?, ?, ?)",
			pub.Id.String(), priv.Id.String(), missing.String()).Scan(&usageRows).Error)

		after := scrape()
		if usageRows == 0 || after.Value("tilegate_usage_last_flush_rows") != float64(usageRows) {
			t.Errorf("last usage flush wrote %v rows; the table holds %d of this test's", after.Value("tilegate_usage_last_flush_rows"), usageRows)
		}
		if at := after.Value("tilegate_usage_last_flush_timestamp_seconds"); at < float64(flushed.UnixNano())/1e9 || at > float64(time.Now().UnixNano())/1e9 {
			t.Errorf("last usage flush at %v, want between %v and now", at, flushed)
		}
		delta := func(name string, labels ...string) float64 {
			return after.Value(name, labels...) - before.Value(name, labels...)
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"tilegate_tiles_served_total", []string{"format", "pbf"}, 7},
			{"tilegate_tiles_served_total", []string{"format", "png"}, 0},
			{"tilegate_tile_bytes_total", []string{"format", "pbf"}, float64(servedBytes)},
			{"tilegate_tiles_refused_total", []string{"reason", "not_found"}, 2},
			{"tilegate_tiles_refused_total", []string{"reason", "bad_request"}, 1},
			{"tilegate_tiles_refused_total", []string{"reason", "missing"}, 1},
			{"tilegate_tiles_refused_total", []string{"reason", "unknown_key"}, 1},
			{"tilegate_tiles_refused_total", []string{"reason", "origin"}, 0},
			{"tilegate_http_requests_total", []string{"operation", "getTile", "status", "200"}, 4},
			{"tilegate_http_requests_total", []string{"operation", "getTile", "status", "204"}, 1},
			{"tilegate_http_requests_total", []string{"operation", "getTile", "status", "304"}, 1},
			{"tilegate_http_requests_total", []string{"operation", "getTile", "status", "404"}, 2},
			{"tilegate_http_requests_total", []string{"operation", "headTile", "status", "200"}, 1},
			{"tilegate_http_requests_total", []string{"operation", "getTileTokensBatch", "status", "200"}, 1},
			{"tilegate_http_requests_total", []string{"operation", "changeAPIKeySettings", "status", "200"}, 1},
			{"tilegate_http_request_duration_seconds", []string{"operation", "getTile", "status", "200"}, 4},
			// Every dataset lookup hits but the made-up dataset's; the new key misses, then hits;
			// the 24-character unknown key is looked up (and cached as unknown).
			{"tilegate_cache_lookups_total", []string{"cache", "dataset", "outcome", "hit"}, 10},
			{"tilegate_cache_lookups_total", []string{"cache", "dataset", "outcome", "miss"}, 1},
			{"tilegate_cache_lookups_total", []string{"cache", "key", "outcome", "miss"}, 2},
			{"tilegate_cache_lookups_total", []string{"cache", "key", "outcome", "hit"}, 1},
			{"tilegate_cache_evictions_total", []string{"cache", "key"}, 1}, // the key's change
			{"tilegate_cache_evictions_total", []string{"cache", "dataset"}, 0},
			// The hot-tile cache: 0/0/0 of both datasets was read while warming; 1/1/1, 2/0/0
			// (no tile) and 1/0/0 are read now; 304 and the wrong format read nothing.
			{"tilegate_cache_lookups_total", []string{"cache", "tile", "outcome", "hit"}, 3},
			{"tilegate_cache_lookups_total", []string{"cache", "tile", "outcome", "miss"}, 3},
			{"tilegate_cache_evictions_total", []string{"cache", "tile"}, 0},
			{"tilegate_cache_entries", []string{"cache", "tile"}, 3},
			// Entries: the made-up dataset (negative) is new; the new key and the unknown one
			// came and the renamed key went.
			{"tilegate_cache_entries", []string{"cache", "dataset"}, 1},
			{"tilegate_cache_entries", []string{"cache", "key"}, 1},
			{"tilegate_token_batch_size", nil, 1},
			{"tilegate_usage_flushes_total", nil, 1},
			{"tilegate_usage_flushed_rows_total", nil, float64(usageRows)},
			{"tilegate_usage_flush_failures_total", nil, 0},
		} {
			if got := delta(c.name, c.labels...); got != c.want {
				t.Errorf("%s%v grew by %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		if got, want := after.Value("tilegate_cache_max_bytes", "cache", "tile"), float64(server.DefaultHotTileBytes); got != want {
			t.Errorf("tile cache bound = %v, want %v", got, want)
		}
		if got := after.Value("tilegate_cache_bytes", "cache", "tile"); got <= float64(servedBytes) || got > float64(server.DefaultHotTileBytes) {
			t.Errorf("tile cache holds %v bytes", got)
		}
		if got := after.Sum("tilegate_token_batch_size") - before.Sum("tilegate_token_batch_size"); got != 2 {
			t.Errorf("token batch size = %v, want 2 (distinct datasets)", got)
		}

		// Read at scrape time: the pool, the listener, the build.
		sqlDB, err := db.Store.DB().DB()
		must(t, err)
		if got, want := after.Value("go_sql_max_open_connections", "db_name", "tilegate"), sqlDB.Stats().MaxOpenConnections; got != float64(want) {
			t.Errorf("go_sql_max_open_connections = %v, want %d", got, want)
		}
		wantListening := 0.0
		if db.Name == "postgres" {
			wantListening = 1
		}
		if got := after.Value("tilegate_cache_listener_connected"); got != wantListening {
			t.Errorf("tilegate_cache_listener_connected = %v, want %v", got, wantListening)
		}
		if got := after.Value("tilegate_cache_listener_reconnects_total"); got != 0 || after.Type("tilegate_cache_listener_reconnects_total") != "COUNTER" {
			t.Errorf("tilegate_cache_listener_reconnects_total = %v (%s), want a counter at 0", got, after.Type("tilegate_cache_listener_reconnects_total"))
		}
		if bi := after["tilegate_build_info"]; bi == nil || len(bi.Metric) != 1 || bi.Metric[0].GetGauge().GetValue() != 1 ||
			label(bi.Metric[0], "goversion") != runtime.Version() {
			t.Errorf("tilegate_build_info = %v, want one series at 1 naming %s", bi, runtime.Version())
		}

		// Never on the public listener.
		for _, p := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
			res, err := http.Get(e.URL + p)
			must(t, err)
			res.Body.Close()
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("public GET %s = %d, want 404", p, res.StatusCode)
			}
		}
	})
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestMetricsListenerReconnect: killing the PostgreSQL listener's connection shows as one
// reconnect once it is back.
func TestMetricsListenerReconnect(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		if db.Name != "postgres" {
			t.Skip("LISTEN/NOTIFY is PostgreSQL's")
		}
		m := metrics.New()
		e := tlStart(t, db, server.Config{Metrics: m})
		admin := httptest.NewServer(m.Handler())
		t.Cleanup(admin.Close)
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		e.uploadOK(t, d.Id, tlVectorFile())
		wantStatus(t, e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "")).status, 200, nil)
		e.tlListening(t)
		s := testenv.ScrapeMetrics(t, admin.URL+"/metrics")
		if up, re := s.Value("tilegate_cache_listener_connected"), s.Value("tilegate_cache_listener_reconnects_total"); up != 1 || re != 0 {
			t.Fatalf("connected %v, reconnects %v; want 1, 0", up, re)
		}

		conn, err := pgx.Connect(context.Background(), db.URL)
		must(t, err)
		defer conn.Close(context.Background())
		var killed int
		must(t, conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'tilegate-listener'`).Scan(&killed))
		if killed != 1 {
			t.Fatalf("killed %d listener connections, want 1", killed)
		}
		tlWaitFor(t, 2*time.Second, "the listener to notice", func() bool { return !e.Server.Listening() })
		tlWaitFor(t, 10*time.Second, "the listener to reconnect", e.Server.Listening)
		s = testenv.ScrapeMetrics(t, admin.URL+"/metrics")
		if up, re := s.Value("tilegate_cache_listener_connected"), s.Value("tilegate_cache_listener_reconnects_total"); up != 1 || re != 1 {
			t.Errorf("connected %v, reconnects %v; want 1, 1", up, re)
		}
	})
}

// TestMetricsCountsLimits: a key over its rate limit is counted as refused (rate_limited), by
// the tile series and the HTTP series alike.
func TestMetricsCountsLimits(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		clock := &fakeClock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
		m := metrics.New()
		e := tlStart(t, db, server.Config{Now: clock.now, Metrics: m})
		admin := httptest.NewServer(m.Handler())
		t.Cleanup(admin.Close)
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		k := e.limitKey(t, &gen.RateLimit{RequestsPerSecond: 1, Burst: 1}, nil)
		path := tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token)

		before := testenv.ScrapeMetrics(t, admin.URL+"/metrics")
		tlCheck(t, "within the burst", e.get(t, "GET", path), 200, "")
		for range 2 {
			tlCheck(t, "over it", e.get(t, "GET", path), 429, "rate_limited")
		}
		after := testenv.ScrapeMetrics(t, admin.URL+"/metrics")
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"tilegate_tiles_refused_total", []string{"reason", "rate_limited"}, 2},
			{"tilegate_tiles_served_total", []string{"format", "pbf"}, 1},
			{"tilegate_http_requests_total", []string{"operation", "getTile", "status", "429"}, 2},
			{"tilegate_http_requests_total", []string{"operation", "getTile", "status", "200"}, 1},
		} {
			if got := after.Value(c.name, c.labels...) - before.Value(c.name, c.labels...); got != c.want {
				t.Errorf("%s%v grew by %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})
}
