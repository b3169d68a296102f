package main_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/internal/faultproxy"
)

// Issue #15 item 15: when the database becomes a black hole just after the cache listener
// reconnected (every entry's freshness unknown) and the entries' TTL has passed, warm tiles are
// answered at once from the usable entries while they refresh in the background: none waits the
// load wait (1 s) for a refresh that cannot answer.
func TestFaultWarmTilesDoNotWaitInBlackHole(t *testing.T) {
	t.Parallel()
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	proxy, viaProxy := proxied(t, dbURL)
	const ttl = 300 * time.Millisecond
	srv := startServer(t, viaProxy, "TILEGATE_AUTH_CACHE_TTL=1h", "TILEGATE_DB_TIMEOUT=2s",
		"TILEGATE_TILE_LOAD_WAIT=1s", "TILEGATE_TILE_CACHE_TTL="+ttl.String(), "TILEGATE_STALE_IF_ERROR=1m",
		"TILEGATE_DATA_DIR="+t.TempDir())
	hc := faultClient(t)
	dataset := repCreateDataset(t, srv, acct.Token)
	if up := repUploadCLI(t, srv.url, acct.Token, dataset, repTilesFile(t, "t.mbtiles", [3]int{1, 1, 0}, "\x1a\x05tiles")); up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}
	s, body := srv.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"warm"}`)
	if s != 200 {
		t.Fatalf("create key: %d %s", s, body)
	}
	var key struct{ Token string }
	must(t, json.Unmarshal(body, &key))
	paths := []string{
		"/api/tiles/" + dataset + "/1/1/0.pbf?key=" + key.Token,
		"/api/tiles/" + dataset + "/tilejson.json?key=" + key.Token,
	}
	tile := func(path string) timedResult { return <-goDo(t, srv, hc, "GET", path, "", "") }
	waitFor(t, 10*time.Second, "warm tiles", func() (bool, string) {
		for _, p := range paths {
			if r := tile(p); r.status != 200 {
				return false, fmt.Sprintf("%d %s", r.status, r.body)
			}
		}
		return true, ""
	})
	srv.waitLog(t, "cache invalidation listener connected", 10*time.Second)
	// The listener reconnects (a cut) and marks every entry for a refresh; then the black hole.
	connected := len(srv.logsWith("cache invalidation listener connected"))
	proxy.Cut()
	waitFor(t, 10*time.Second, "the listener to reconnect", func() (bool, string) {
		return len(srv.logsWith("cache invalidation listener connected")) > connected, ""
	})
	for _, p := range paths {
		if r := tile(p); r.status != 200 {
			t.Fatalf("tile before the outage: %d %s", r.status, r.body)
		}
	}
	proxy.SetMode(faultproxy.BlackHole)
	time.Sleep(ttl + 100*time.Millisecond) // every entry past its TTL

	// Over 3 s: longer than the refreshes take to fail (DB timeout 2 s), during which a waiting
	// request would have waited the whole load wait.
	const bound = 300 * time.Millisecond // a generous bound: a wait is 1 s
	var slow []string
	requests := 0
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		for _, p := range paths {
			r := tile(p)
			requests++
			if r.status != 200 || r.took > bound {
				slow = append(slow, fmt.Sprintf("%s: %d after %v", p[strings.LastIndexByte(p, '/'):strings.IndexByte(p, '?')], r.status, r.took.Round(time.Millisecond)))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(slow) > 0 {
		t.Errorf("%d of %d warm requests during the black hole were not 200 within %v:\n%s", len(slow), requests, bound, strings.Join(slow, "\n"))
	}
	proxy.SetMode(faultproxy.Pass)
	if lines := srv.logsWith("request failed"); len(lines) > 0 {
		t.Errorf("internal errors logged:\n%s", strings.Join(lines, "\n"))
	}
}
