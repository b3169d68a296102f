package main_test

// Two real `tilegate serve` processes on one PostgreSQL database: what one replica changes, the
// other's tile cache learns through LISTEN/NOTIFY within a second. And `tilegate datasets upload`.

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/mbtiles"
)

// repUploadCLI runs `tilegate datasets upload` against a server.
func repUploadCLI(t *testing.T, serverURL, token, dataset, file string) cliResult {
	t.Helper()
	return runCLIEnv(t, environ("", "TILEGATE_URL="+serverURL, "TILEGATE_TOKEN="+token),
		"datasets", "upload", "--dataset", dataset, file)
}

// repTilesFile writes an MBTiles fixture with one vector tile at z/x/y.
func repTilesFile(t *testing.T, name string, zxy [3]int, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	must(t, mbtiles.WriteTestFile(path, mbtiles.TestFile{
		Format: "pbf", MinZoom: 0, MaxZoom: 6, Gzip: true,
		Tiles: map[[3]int][]byte{zxy: []byte(data)},
	}))
	return path
}

func repCreateDataset(t *testing.T, p *serverProc, token string) string {
	t.Helper()
	hc := validatingClient(t)
	status, body := p.do(t, hc, "POST", "/api/datasets/", token, `{"name":"replicated","kind":"vector","visibility":"private"}`)
	if status != 201 {
		t.Fatalf("create dataset: %d %s", status, body)
	}
	var d struct{ ID string }
	must(t, json.Unmarshal(body, &d))
	return d.ID
}

func TestReplicasShareInvalidations(t *testing.T) {
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	// The replicas share the data directory (the MBTiles files) as they share the database; a
	// long TTL leaves NOTIFY as the only way a change can reach the other replica in time.
	env := []string{"TILEGATE_DATA_DIR=" + t.TempDir(), "TILEGATE_TILE_CACHE_TTL=1h"}
	a := startServer(t, dbURL, env...)
	b := startServer(t, dbURL, env...)
	hc := validatingClient(t)

	dataset := repCreateDataset(t, a, acct.Token)
	up := repUploadCLI(t, a.url, acct.Token, dataset, repTilesFile(t, "first.mbtiles", [3]int{1, 1, 0}, "\x1a\x05first"))
	if up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}

	status, body := a.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"replicated key"}`)
	if status != 200 {
		t.Fatalf("create key: %d %s", status, body)
	}
	var key struct{ ID, Token string }
	must(t, json.Unmarshal(body, &key))
	tile := func(p *serverProc, zxy string) int {
		status, _ := p.do(t, hc, "GET", "/api/tiles/"+dataset+"/"+zxy+".pbf?key="+url.QueryEscape(key.Token), "", "")
		return status
	}
	// Warm B's cache (twice: its listener connects with the first entry and flushes).
	for range 2 {
		if s := tile(b, "1/1/0"); s != 200 {
			t.Fatalf("tile on B with the new key: %d", s)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := tile(b, "1/1/0"); s != 200 {
		t.Fatalf("tile on B, warm: %d", s)
	}

	// A token minted by A works on B: the signing key is shared through the database.
	status, body = a.do(t, hc, "GET", "/api/tiles/token/"+dataset+"/", acct.Token, "")
	if status != 200 {
		t.Fatalf("token: %d %s", status, body)
	}
	var tok struct{ Tiles []string }
	must(t, json.Unmarshal(body, &tok))
	tmpl := tok.Tiles[0]
	if s, _ := b.do(t, hc, "GET", "/api/tiles/"+dataset+"/1/1/0.pbf"+tmpl[strings.IndexByte(tmpl, '?'):], "", ""); s != 200 {
		t.Errorf("A's token on B: %d", s)
	}

	// A new file uploaded through A is served by B within a second.
	up = repUploadCLI(t, a.url, acct.Token, dataset, repTilesFile(t, "second.mbtiles", [3]int{2, 3, 1}, "\x1a\x06second"))
	if up.code != 0 {
		t.Fatalf("second upload: exit %d\n%s", up.code, up.stderr)
	}
	waitFor(t, time.Second, "B to serve the new file", func() (bool, string) {
		s := tile(b, "2/3/1")
		return s == 200, "status " + strconv.Itoa(s)
	})
	if s := tile(b, "1/1/0"); s != 204 {
		t.Errorf("B still serves the replaced file: %d", s)
	}

	// The key deleted through A is refused by B within a second.
	start := time.Now()
	if status, body := a.do(t, hc, "DELETE", "/v1/api_keys/"+key.ID, acct.Token, ""); status != 200 {
		t.Fatalf("delete key: %d %s", status, body)
	}
	waitFor(t, time.Second, "B to refuse the deleted key", func() (bool, string) {
		s := tile(b, "2/3/1")
		return s == 403, "status " + strconv.Itoa(s)
	})
	t.Logf("B refused the deleted key %v after the DELETE returned", time.Since(start).Round(time.Millisecond))
}

// `tilegate datasets upload`: the updated dataset on stdout, the server's detail on failure.
func TestDatasetsUploadCLI(t *testing.T) {
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	p := startServer(t, dbURL, "TILEGATE_DATA_DIR="+t.TempDir())
	dataset := repCreateDataset(t, p, acct.Token)
	good := repTilesFile(t, "good.mbtiles", [3]int{0, 0, 0}, "\x1a\x02ok")

	r := repUploadCLI(t, p.url, acct.Token, dataset, good)
	r.wantOK(t)
	var d struct {
		ID       string `json:"id"`
		HasTiles bool   `json:"has_tiles"`
		Format   string `json:"format"`
	}
	r.decodeOne(t, &d)
	if d.ID != dataset || !d.HasTiles || d.Format != "pbf" {
		t.Errorf("upload printed %s", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("upload wrote to stderr without a terminal: %q", r.stderr)
	}

	garbage := filepath.Join(t.TempDir(), "garbage.mbtiles")
	must(t, os.WriteFile(garbage, []byte("not a database"), 0o600))
	for _, bad := range []struct {
		name, token, dataset, file, want string
	}{
		{"garbage", acct.Token, dataset, garbage, "not a valid MBTiles file"},
		{"bad token", "tgs_nope", dataset, good, "401"},
		{"unknown dataset", acct.Token, "00000000-0000-4000-8000-000000000000", good, "Dataset not found"},
		{"dataset not a uuid", acct.Token, "nope", good, "--dataset"},
		{"missing file", acct.Token, dataset, filepath.Join(t.TempDir(), "none.mbtiles"), "none.mbtiles"},
	} {
		r := repUploadCLI(t, p.url, bad.token, bad.dataset, bad.file)
		// (kong answers a bad argument with the usage on stdout.)
		if r.code == 0 || !strings.Contains(r.stderr, bad.want) || (r.stdout != "" && !strings.HasPrefix(r.stdout, "Usage:")) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want a failure naming %q", bad.name, r.code, r.stdout, r.stderr, bad.want)
		}
	}
}

// Rotation and key settings changed through replica A reach replica B's warm tile cache within
// a second: the token a rotation ended is refused there, the grace token works, the new one works.
func TestReplicasShareRotation(t *testing.T) {
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	env := []string{"TILEGATE_DATA_DIR=" + t.TempDir(), "TILEGATE_TILE_CACHE_TTL=1h"}
	a := startServer(t, dbURL, env...)
	b := startServer(t, dbURL, env...)
	hc := validatingClient(t)
	dataset := repCreateDataset(t, a, acct.Token)
	if up := repUploadCLI(t, a.url, acct.Token, dataset, repTilesFile(t, "t.mbtiles", [3]int{0, 0, 0}, "\x1a\x02ok")); up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}
	status, body := a.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{}`)
	if status != 200 {
		t.Fatalf("create key: %d %s", status, body)
	}
	var key struct{ ID, Token string }
	must(t, json.Unmarshal(body, &key))
	tile := func(p *serverProc, token string) int {
		status, _ := p.do(t, hc, "GET", "/api/tiles/"+dataset+"/0/0/0.pbf?key="+url.QueryEscape(token), "", "")
		return status
	}
	rotate := func(grace int) string {
		t.Helper()
		status, body := a.do(t, hc, "POST", "/v1/api_keys/"+key.ID+"/rotate", acct.Token, `{"grace_seconds":`+strconv.Itoa(grace)+`}`)
		if status != 200 {
			t.Fatalf("rotate: %d %s", status, body)
		}
		var k struct{ Token string }
		must(t, json.Unmarshal(body, &k))
		return k.Token
	}
	wantOn := func(p *serverProc, token string, want int, what string) {
		t.Helper()
		waitFor(t, time.Second, what, func() (bool, string) {
			s := tile(p, token)
			return s == want, "status " + strconv.Itoa(s)
		})
	}
	// Warm B (its listener connects with the first entry and flushes the cache).
	for range 2 {
		if s := tile(b, key.Token); s != 200 {
			t.Fatalf("tile on B: %d", s)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// With grace: both tokens work on B.
	t1 := rotate(3600)
	wantOn(b, t1, 200, "B to serve the new token")
	if s := tile(b, key.Token); s != 200 {
		t.Errorf("the token in grace on B: %d", s)
	}
	// Rotating again ends the older token at once, on B too.
	t2 := rotate(3600)
	wantOn(b, key.Token, 403, "B to refuse the token a second rotation ended")
	for _, tok := range []string{t1, t2} {
		if s := tile(b, tok); s != 200 {
			t.Errorf("token on B after the second rotation: %d", s)
		}
	}
	// Disabling through A refuses every token of the key on B.
	if status, body := a.do(t, hc, "POST", "/v1/api_keys/"+key.ID+"/change_settings", acct.Token, `{"enabled":false}`); status != 200 {
		t.Fatalf("disable: %d %s", status, body)
	}
	wantOn(b, t1, 403, "B to refuse the disabled key's grace token")
	wantOn(b, t2, 403, "B to refuse the disabled key")
	if status, body := a.do(t, hc, "POST", "/v1/api_keys/"+key.ID+"/change_settings", acct.Token, `{"enabled":true}`); status != 200 {
		t.Fatalf("enable: %d %s", status, body)
	}
	wantOn(b, t2, 200, "B to serve the re-enabled key")
	// Without grace: the old token is refused on B within a second.
	t3 := rotate(0)
	wantOn(b, t2, 403, "B to refuse the token revoked by a rotation without grace")
	wantOn(b, t1, 403, "B to refuse the older token")
	wantOn(b, t3, 200, "B to serve the newest token")
}
