package main_test

// Database faults met by the real binary on PostgreSQL, made by a TCP proxy the test owns
// (internal/faultproxy) between tilegate and its scratch database: a connection dropped in the
// middle of a query, a network black hole, and an outage that outlasts the tile cache's TTL. The
// shared PostgreSQL server itself is never touched.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tilegate/tilegate/internal/faultproxy"
)

// proxied puts a fault proxy in front of the database dbURL names and returns the URL through it.
func proxied(t *testing.T, dbURL string) (*faultproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	must(t, err)
	p, err := faultproxy.Start(u.Host)
	must(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// faultClient validates responses against openapi.yaml and waits long enough that a hang is
// seen as one (the test's own time bound), not as a transport error.
func faultClient(t *testing.T) *http.Client {
	hc := validatingClient(t)
	hc.Timeout = 60 * time.Second
	return hc
}

// wantUnavailable checks a 503 {"detail"} answered within bound.
func wantUnavailable(t *testing.T, what string, status int, body []byte, took, bound time.Duration) {
	t.Helper()
	var d struct {
		Detail *string `json:"detail"`
	}
	if status != 503 || json.Unmarshal(body, &d) != nil || d.Detail == nil || *d.Detail == "" {
		t.Errorf("%s: %d %s, want 503 {\"detail\"}", what, status, body)
	}
	if took > bound {
		t.Errorf("%s took %v, want at most %v", what, took.Round(time.Millisecond), bound)
	}
}

type timedResult struct {
	status int
	body   []byte
	took   time.Duration
}

// goDo sends a request in the background.
func goDo(t *testing.T, p *serverProc, hc *http.Client, method, path, token, body string) <-chan timedResult {
	out := make(chan timedResult, 1)
	go func() {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, p.url+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
			if method == http.MethodPut { // the tiles upload
				req.Header.Set("Content-Type", "application/octet-stream")
			}
		}
		start := time.Now()
		res, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			out <- timedResult{took: time.Since(start)}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		out <- timedResult{status: res.StatusCode, body: b, took: time.Since(start)}
	}()
	return out
}

// Item 3: a connection dropped while a query is in flight is a 503, never a 500.
func TestFaultConnectionDroppedMidQuery(t *testing.T) {
	t.Parallel()
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	proxy, viaProxy := proxied(t, dbURL)
	srv := startServer(t, viaProxy, "TILEGATE_AUTH_CACHE_TTL=1h")
	hc := faultClient(t)
	s, body := srv.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"k"}`)
	if s != 200 {
		t.Fatalf("create key: %d %s", s, body)
	}
	var key struct{ ID, Token string }
	must(t, json.Unmarshal(body, &key))

	dropped := 0 // cases whose query was in flight when its connection was cut
	cases := []struct{ name, method, path, body string }{
		{"list", "GET", "/v1/api_keys", ""},
		{"get", "GET", "/v1/api_keys/" + key.ID, ""},
		{"create", "POST", "/v1/api_keys", `{"name":"dropped"}`},
		{"change", "POST", "/v1/api_keys/" + key.ID + "/change_settings", `{"description":"dropped"}`},
	}
	for _, c := range cases {
		// The query reaches the proxy and is held there; then every connection is closed.
		proxy.SetMode(faultproxy.BlackHole)
		held := proxy.Stats().Held
		res := goDo(t, srv, hc, c.method, c.path, acct.Token, c.body)
		waitFor(t, 10*time.Second, "the query to reach the proxy", func() (bool, string) {
			st := proxy.Stats()
			return st.Held > held, fmt.Sprintf("%+v", st)
		})
		proxy.Cut()
		proxy.SetMode(faultproxy.Pass)
		r := <-res
		// The held bytes are the query, unless the pool first pinged a connection idle for
		// over a second (pgx's session reset): then database/sql retries on a new connection
		// and 200 is right. Anything else (500) is the bug.
		if r.status == 200 {
			t.Logf("%s: the dropped bytes were a session reset; retried and served", c.name)
		} else {
			wantUnavailable(t, c.name+" with its connection dropped", r.status, r.body, r.took, 30*time.Second)
			dropped++
		}
		// The pool recovers by itself.
		waitFor(t, 10*time.Second, c.name+" to work again", func() (bool, string) {
			s, body := srv.do(t, hc, "GET", "/v1/api_keys", acct.Token, "")
			return s == 200, fmt.Sprintf("%d %s", s, body)
		})
	}
	// Each case follows a request on the same connection within milliseconds, so a session
	// reset ping is the exception (a machine stalled for a second).
	if dropped < len(cases)/2 {
		t.Errorf("only %d of %d cases had their query cut in flight", dropped, len(cases))
	}
	if lines := srv.logsWith("request failed"); len(lines) > 0 {
		t.Errorf("internal errors logged:\n%s", strings.Join(lines, "\n"))
	}
}

// Item 6: behind a black hole (connections open, nothing answers) every management call and
// every tile that needs the database answers 503 within a few seconds instead of hanging.
func TestFaultBlackHoleAnswersQuickly(t *testing.T) {
	t.Parallel()
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	r := runCLI(t, dbURL, "admin", "create-token", "--account", acct.AccountID, "--role", "viewer")
	r.wantOK(t)
	var fresh issued // resolving it needs a query
	r.decodeOne(t, &fresh)
	proxy, viaProxy := proxied(t, dbURL)
	srv := startServer(t, viaProxy, "TILEGATE_AUTH_CACHE_TTL=1h", "TILEGATE_DB_TIMEOUT=2s",
		"TILEGATE_DATA_DIR="+t.TempDir(), "TILEGATE_SHUTDOWN_TIMEOUT=1s")
	hc := faultClient(t)
	dataset := repCreateDataset(t, srv, acct.Token)
	s, body := srv.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"k"}`)
	if s != 200 {
		t.Fatalf("create key: %d %s", s, body)
	}
	var key struct{ ID, Token string }
	must(t, json.Unmarshal(body, &key))

	proxy.SetMode(faultproxy.BlackHole)
	// 2s for the database work, plus a loaded machine's slack; a hang would take the whole
	// client timeout (60s).
	const bound = 10 * time.Second
	calls := []struct{ name, method, path, token, body string }{
		{"list", "GET", "/v1/api_keys", acct.Token, ""},
		{"get", "GET", "/v1/api_keys/" + key.ID, acct.Token, ""},
		{"create", "POST", "/v1/api_keys", acct.Token, `{"name":"during"}`},
		{"delete", "DELETE", "/v1/api_keys/" + key.ID, acct.Token, ""},
		{"credential lookup", "GET", "/v1/api_keys", fresh.Token, ""},
		{"dataset", "GET", "/api/datasets/" + dataset + "/", acct.Token, ""},
		{"token", "GET", "/api/tiles/token/" + dataset + "/", acct.Token, ""},
		{"tile, cold cache", "GET", "/api/tiles/" + dataset + "/0/0/0.pbf?key=" + key.Token, "", ""},
		{"tilejson, cold cache", "GET", "/api/tiles/" + dataset + "/tilejson.json?key=" + key.Token, "", ""},
		{"readyz", "GET", "/readyz", "", ""},
		// The upload route is outside the request deadline (its body streams); its own
		// database calls still have one.
		{"upload", "PUT", "/api/datasets/" + dataset + "/tiles/", acct.Token, "SQLite format 3\x00"},
	}
	// All at once, as the pool of connections is held by the black hole meanwhile.
	results := make([]<-chan timedResult, len(calls))
	for i, c := range calls {
		results[i] = goDo(t, srv, hc, c.method, c.path, c.token, c.body)
	}
	for i, c := range calls {
		r := <-results[i]
		wantUnavailable(t, c.name+" behind a black hole", r.status, r.body, r.took, bound)
	}
	proxy.SetMode(faultproxy.Pass)
	waitFor(t, 15*time.Second, "the server to recover", func() (bool, string) {
		s, body := srv.do(t, hc, "GET", "/v1/api_keys", acct.Token, "")
		return s == 200, fmt.Sprintf("%d %s", s, body)
	})
	if s, body := srv.do(t, hc, "GET", "/api/tiles/"+dataset+"/0/0/0.pbf?key="+key.Token, "", ""); s != 204 && s != 403 {
		// 204 (no file uploaded) or, had the delete gone through before the black hole
		// swallowed its answer, 403.
		t.Errorf("tile after recovery: %d %s", s, body)
	}
}

// Items 7 and 8: an outage longer than the tile cache's TTL, right after the cache listener
// reconnected (and flushed the cache). Warm keys and datasets keep serving (stale-if-error) for
// TILEGATE_STALE_IF_ERROR, then are refused with 503; a key deleted before
// the outage stays refused; an unknown key is 503 (not "unknown key"); and the log says so once,
// not once per request.
func TestFaultTilesDuringOutage(t *testing.T) {
	t.Parallel()
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	proxy, viaProxy := proxied(t, dbURL)
	const ttl, stale = 300 * time.Millisecond, 20 * time.Second
	srv := startServer(t, viaProxy, "TILEGATE_AUTH_CACHE_TTL=1h", "TILEGATE_DB_TIMEOUT=2s",
		"TILEGATE_TILE_CACHE_TTL="+ttl.String(), "TILEGATE_STALE_IF_ERROR="+stale.String(),
		"TILEGATE_DATA_DIR="+t.TempDir())
	hc := faultClient(t)
	dataset := repCreateDataset(t, srv, acct.Token)
	if up := repUploadCLI(t, srv.url, acct.Token, dataset, repTilesFile(t, "t.mbtiles", [3]int{1, 1, 0}, "\x1a\x05tiles")); up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}
	newKey := func(name string) (id, token string) {
		s, body := srv.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"`+name+`"}`)
		if s != 200 {
			t.Fatalf("create key: %d %s", s, body)
		}
		var k struct{ ID, Token string }
		must(t, json.Unmarshal(body, &k))
		return k.ID, k.Token
	}
	_, kept := newKey("kept")
	deletedID, deleted := newKey("deleted")
	s, body := srv.do(t, hc, "GET", "/api/tiles/token/"+dataset+"/", acct.Token, "")
	if s != 200 {
		t.Fatalf("token: %d %s", s, body)
	}
	var tok struct{ Tiles []string }
	must(t, json.Unmarshal(body, &tok))
	byToken := "/api/tiles/" + dataset + "/1/1/0.pbf" + tok.Tiles[0][strings.IndexByte(tok.Tiles[0], '?'):]
	byKey := func(k string) string { return "/api/tiles/" + dataset + "/1/1/0.pbf?key=" + k }
	// (Called from several goroutines: a transport error is a status of -1, not t.Fatal.)
	tile := func(path string) (int, string) {
		r := <-goDo(t, srv, hc, "GET", path, "", "")
		if r.status == 0 {
			return -1, "transport error"
		}
		return r.status, fmt.Sprintf("%d %s", r.status, r.body)
	}
	// Warm the cache; the listener connects with the first entry and flushes it, so wait for it.
	waitFor(t, 10*time.Second, "warm tiles", func() (bool, string) {
		for _, p := range []string{byKey(kept), byKey(deleted), byToken} {
			if s, note := tile(p); s != 200 {
				return false, note
			}
		}
		return true, ""
	})
	if s, body := srv.do(t, hc, "DELETE", "/v1/api_keys/"+deletedID, acct.Token, ""); s != 200 {
		t.Fatalf("delete key: %d %s", s, body)
	}
	if s, note := tile(byKey(deleted)); s != 403 {
		t.Fatalf("deleted key before the outage: %s, want 403", note)
	}
	// Load everything once more right before the outage, so the entries are as fresh as can be.
	srv.waitLog(t, "cache invalidation listener connected", 10*time.Second)
	for _, p := range []string{byKey(kept), byToken} {
		if s, note := tile(p); s != 200 {
			t.Fatalf("tile before the outage: %s", note)
		}
	}
	// The cache listener reconnects (a cut) and flushes the cache just before the outage: the
	// entries must be refreshed, but while they cannot be, they still serve stale.
	connected := len(srv.logsWith("cache invalidation listener connected"))
	proxy.Cut()
	waitFor(t, 10*time.Second, "the listener to reconnect", func() (bool, string) {
		return len(srv.logsWith("cache invalidation listener connected")) > connected, ""
	})
	outage := time.Now()
	proxy.SetMode(faultproxy.BlackHole)
	// Let every entry pass its TTL (time itself is what is waited for here).
	time.Sleep(ttl + 200*time.Millisecond)

	// Stale-if-error: warm entries keep serving, many requests, each within the load bound.
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := map[string]int{}
	for range 4 {
		wg.Go(func() {
			for range 5 {
				for _, p := range []string{byKey(kept), byToken} {
					start := time.Now()
					s, _ := tile(p)
					if s != 200 || time.Since(start) > 5*time.Second {
						mu.Lock()
						bad[fmt.Sprintf("%d after %v", s, time.Since(start).Round(100*time.Millisecond))]++
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("warm tiles during the outage (entries past their TTL): %v, want all 200 within 5s", bad)
	}
	if el := time.Since(outage); el > stale/2 {
		t.Fatalf("the checks took %v of the %v stale window: the machine is too slow for this test's timing", el, stale)
	}
	// The key deleted before the outage is never served again; an unknown key is 503, not 403.
	if s, note := tile(byKey(deleted)); s == 200 {
		t.Errorf("deleted key during the outage: %s", note)
	}
	start := time.Now()
	s, body = srv.do(t, hc, "GET", byKey("AAAAAAAAAAAAAAAAAAAAAAAA"), "", "")
	wantUnavailable(t, "unknown key during the outage", s, body, time.Since(start), 5*time.Second)

	// After TILEGATE_STALE_IF_ERROR the stale entries are refused too.
	waitFor(t, stale+20*time.Second, "stale entries to be refused", func() (bool, string) {
		s, note := tile(byKey(kept))
		return s == 503, note
	})
	if since := time.Since(outage); since < stale {
		t.Errorf("stale entries refused %v after the outage began, before TILEGATE_STALE_IF_ERROR (%v)", since, stale)
	}
	if s, note := tile(byToken); s != 503 {
		t.Errorf("token tile after the stale window: %s, want 503", note)
	}

	// Recovery.
	proxy.SetMode(faultproxy.Pass)
	waitFor(t, 15*time.Second, "tiles to serve again", func() (bool, string) {
		s, note := tile(byKey(kept))
		return s == 200, note
	})
	if s, note := tile(byKey(deleted)); s != 403 {
		t.Errorf("deleted key after the outage: %s, want 403", note)
	}
	// One line when stale serving began, not one per request; none was a 500.
	if n := len(srv.logsWith("tile cache: serving stale entries, the database is unavailable")); n != 1 {
		t.Errorf("%d stale-serving log lines, want 1", n)
	}
	if lines := srv.logsWith("request failed"); len(lines) > 0 {
		t.Errorf("internal errors logged:\n%s", strings.Join(lines, "\n"))
	}
}

// Item 8: during an outage the 503s are logged once, then as a count, and the recovery once:
// not one line per failing request.
func TestFaultOutageLogIsAggregated(t *testing.T) {
	t.Parallel()
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	proxy, viaProxy := proxied(t, dbURL)
	srv := startServer(t, viaProxy, "TILEGATE_AUTH_CACHE_TTL=1h", "TILEGATE_DB_TIMEOUT=2s")
	hc := faultClient(t)
	if s, body := srv.do(t, hc, "GET", "/v1/api_keys", acct.Token, ""); s != 200 {
		t.Fatalf("list: %d %s", s, body)
	}
	// Outage: open connections are cut and new ones refused, so requests fail fast.
	proxy.SetMode(faultproxy.Refuse)
	proxy.Cut()
	const requests = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 4 {
		wg.Go(func() {
			for range requests / 4 {
				s, _ := srv.do(t, hc, "GET", "/v1/api_keys", acct.Token, "")
				mu.Lock()
				statuses[s]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if statuses[503] != requests {
		t.Fatalf("statuses during the outage: %v, want %d × 503", statuses, requests)
	}
	proxy.SetMode(faultproxy.Pass)
	waitFor(t, 15*time.Second, "the server to recover", func() (bool, string) {
		s, body := srv.do(t, hc, "GET", "/v1/api_keys", acct.Token, "")
		return s == 200, fmt.Sprintf("%d %s", s, body)
	})
	first := srv.logsWith("database unavailable")
	// One line per error class that appeared (a cut pooled connection, then refused connects):
	// a handful, never one per request.
	if len(first) == 0 || len(first) > 4 {
		t.Errorf("%d \"database unavailable\" lines for %d failing requests, want 1 to 4:\n%s",
			len(first), requests, strings.Join(first, "\n"))
	}
	// The recovery is seen by a probe every second.
	var recovered []string
	waitFor(t, 15*time.Second, "a recovery line per error class", func() (bool, string) {
		recovered = srv.logsWith("database available again")
		return len(recovered) == len(first), strings.Join(recovered, "\n")
	})
	total := 0
	for _, line := range recovered {
		var rec struct {
			Failures int `json:"failures"`
		}
		must(t, json.Unmarshal([]byte(line), &rec))
		total += rec.Failures
	}
	if total != requests {
		t.Errorf("recovery lines count %d failures, want %d", total, requests)
	}
}

// An upload streams for as long as its body takes: TILEGATE_DB_TIMEOUT bounds database work,
// not the upload (whose body here arrives over more than twice that time).
func TestUploadOutlastsDBTimeout(t *testing.T) {
	t.Parallel()
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	srv := startServer(t, dbURL, "TILEGATE_DB_TIMEOUT=500ms", "TILEGATE_DATA_DIR="+t.TempDir())
	dataset := repCreateDataset(t, srv, acct.Token)
	file, err := os.ReadFile(repTilesFile(t, "slow.mbtiles", [3]int{0, 0, 0}, "\x1a\x04slow"))
	must(t, err)
	pr, pw := io.Pipe()
	go func() {
		half := len(file) / 2
		_, _ = pw.Write(file[:half])
		time.Sleep(1200 * time.Millisecond) // the slow client is the point of the test
		_, _ = pw.Write(file[half:])
		_ = pw.Close()
	}()
	req, err := http.NewRequest("PUT", srv.url+"/api/datasets/"+dataset+"/tiles/", pr)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+acct.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := faultClient(t).Do(req)
	must(t, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("slow upload: %d %s, want 200", res.StatusCode, body)
	}
}
