package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/internal/testnginx"
	"github.com/tilegate/tilegate/internal/testpeer"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
)

// The README's nginx configuration (examples/forward-auth/nginx.conf), run as written in a real
// nginx, with tilegate deciding (auth_request) and a real tile server (mbtileserver) upstream:
// allowed requests get the upstream's tiles, refused ones tilegate's status and reason, limits
// apply, and every allowed tile is counted once.
func TestForwardAuthBehindNginx(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
		priv := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		pub := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)

		// The tile server holds the tiles, one file per dataset, named by its id.
		tilesDir := t.TempDir()
		tile := []byte("\x1a\x0bupstream tile")
		for _, id := range []uuid.UUID{priv.Id, pub.Id} {
			must(t, mbtiles.WriteTestFile(filepath.Join(tilesDir, id.String()+".mbtiles"), mbtiles.TestFile{
				Format: "pbf", MaxZoom: 5, Gzip: true, Tiles: map[[3]int][]byte{{1, 0, 1}: tile},
			}))
		}
		peer := testpeer.Start(t, tilesDir)
		conf, err := os.ReadFile("../examples/forward-auth/nginx.conf")
		must(t, err)
		edge := testnginx.Start(t, strings.NewReplacer(
			"127.0.0.1:8090", strings.TrimPrefix(peer.URL, "http://"),
			"127.0.0.1:8080", strings.TrimPrefix(e.URL, "http://"),
			"listen 80;", "listen {{LISTEN}};",
		).Replace(string(conf)))

		k := e.key(t, e.c, []string{"example.com"}, "")
		limited := e.key(t, e.c, nil, "")
		r, err := e.c.ChangeAPIKeySettingsWithResponse(context.Background(), limited.Id, gen.APIKeySettings{
			RateLimit: nullable.NewNullableWithValue(gen.RateLimit{RequestsPerSecond: 1, Burst: 1}),
		})
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
		tok := e.token(t, e.c, priv.Id)
		i := strings.Index(tok, "sig=") + len("sig=")
		flip := map[byte]byte{'0': '1'}[tok[i]]
		if flip == 0 {
			flip = '0'
		}
		tampered := tok[:i] + string(flip) + tok[i+1:]

		get := func(path string, header ...string) (int, http.Header, []byte) {
			t.Helper()
			req, err := http.NewRequest("GET", edge.URL+path, nil)
			must(t, err)
			for _, h := range header {
				name, value, _ := strings.Cut(h, ":")
				req.Header.Set(name, strings.TrimSpace(value))
			}
			res, err := http.DefaultTransport.RoundTrip(req)
			must(t, err)
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			must(t, err)
			if res.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(b))
				must(t, err)
				b, err = io.ReadAll(zr)
				must(t, err)
			}
			return res.StatusCode, res.Header, b
		}
		allowed := 0
		for _, c := range []struct {
			name   string
			path   string
			header []string
			status int
			reason string
		}{
			{"token", tlTilePath(priv.Id, "1/0/1", "pbf", tok), nil, 200, ""},
			{"key from its origin", tlTilePath(priv.Id, "1/0/1", "pbf", "key="+k.Token), []string{"Origin: https://example.com"}, 200, ""},
			{"public, no credential", tlTilePath(pub.Id, "1/0/1", "pbf", ""), nil, 200, ""},
			{"no credential", tlTilePath(priv.Id, "1/0/1", "pbf", ""), nil, 401, "missing"},
			{"key from another origin", tlTilePath(priv.Id, "1/0/1", "pbf", "key="+k.Token), []string{"Origin: https://evil.test"}, 403, "origin"},
			{"tampered token", tlTilePath(priv.Id, "1/0/1", "pbf", tampered), nil, 403, "bad_signature"},
			{"unknown dataset", tlTilePath(uuid.New(), "1/0/1", "pbf", tok), nil, 404, ""},
			{"rate limited key, first", tlTilePath(priv.Id, "1/0/1", "pbf", "key="+limited.Token), nil, 200, ""},
			{"rate limited key, second", tlTilePath(priv.Id, "1/0/1", "pbf", "key="+limited.Token), nil, 429, "rate_limited"},
		} {
			status, h, body := get(c.path, c.header...)
			if status != c.status || h.Get("X-Tilegate-Reason") != c.reason {
				t.Errorf("%s: %d reason %q, want %d %q; body %q\n%s", c.name, status, h.Get("X-Tilegate-Reason"), c.status, c.reason, body, edge.ErrorLog())
				continue
			}
			switch {
			case status == 200 && !bytes.Equal(body, tile):
				t.Errorf("%s: body %q, want the upstream's tile", c.name, body)
			case status == 200:
				allowed++
			case bytes.Contains(body, tile):
				t.Errorf("%s: a refusal carried the tile", c.name)
			case status == 429 && h.Get("Retry-After") == "":
				t.Errorf("%s: 429 without Retry-After", c.name)
			}
		}
		// Every tile the proxy served is counted once, as served, for its key.
		must(t, e.Server.FlushUsage(t.Context()))
		if got := readUsage(t, db.Store, store.UsageQuery{KeyID: &k.Id}); got.served != 1 || got.refused["origin"] != 1 {
			t.Errorf("key usage: served %d, refused %v; want 1 served and 1 origin refusal", got.served, got.refused)
		}
		if got := readUsage(t, db.Store, store.UsageQuery{DatasetID: &priv.Id}); got.served != 3 {
			t.Errorf("dataset usage: served %d, want 3 (token, key, limited key)", got.served)
		}
		if allowed != 4 {
			t.Errorf("%d requests allowed through nginx, want 4", allowed)
		}
	})
}

// The endpoint itself, as Traefik and Envoy call it: the real status, and decisions a proxy
// may cache for as long as they hold.
func TestForwardAuthDecisions(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		priv := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		pub := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		k := e.key(t, e.c, nil, "")
		tok := e.token(t, e.c, priv.Id)
		auth := func(uri string, header ...string) tlResponse {
			t.Helper()
			return e.get(t, "GET", "/api/tiles/auth", append([]string{"X-Forwarded-Uri: " + uri}, header...)...)
		}
		r := auth(tlTilePath(priv.Id, "1/0/1", "pbf", tok))
		tlCheck(t, "token", r, 200, "")
		maxAge, err := strconv.Atoi(strings.TrimPrefix(r.header.Get("Cache-Control"), "max-age="))
		if err != nil || maxAge < 60 || maxAge > 960 {
			t.Errorf("token decision Cache-Control %q, want max-age until exp (60..960 s)", r.header.Get("Cache-Control"))
		}
		if r.header.Get("X-Tilegate-Dataset") != priv.Id.String() {
			t.Errorf("X-Tilegate-Dataset = %q", r.header.Get("X-Tilegate-Dataset"))
		}
		if r = auth(tlTilePath(priv.Id, "1/0/1", "pbf", "key="+k.Token)); r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("key decision: %d %q, want 200 no-store", r.status, r.header.Get("Cache-Control"))
		}
		if r = auth(tlTilePath(pub.Id, "0/0/0", "pbf", "")); r.status != 200 || r.header.Get("Cache-Control") != "max-age=60" {
			t.Errorf("public decision: %d %q, want 200 max-age=60", r.status, r.header.Get("Cache-Control"))
		}
		tlCheck(t, "no credential", auth(tlTilePath(priv.Id, "1/0/1", "pbf", "")), 401, "missing")
		tlCheck(t, "other format", auth(tlTilePath(priv.Id, "1/0/1", "png", tok)), 404, "")
		tlCheck(t, "unknown dataset", auth(tlTilePath(uuid.New(), "1/0/1", "pbf", tok)), 404, "")
		tlCheck(t, "z out of range", auth(tlTilePath(priv.Id, "31/0/1", "pbf", tok)), 400, "")
		for name, uri := range map[string]string{
			"not a tile URL": "/api/datasets/",
			"absolute URL":   "http://evil.test" + tlTilePath(priv.Id, "1/0/1", "pbf", tok),
			"escaped path":   "/api/tiles/" + priv.Id.String() + "/1/0/1%2Epbf",
			"tilejson":       "/api/tiles/" + priv.Id.String() + "/tilejson.json",
		} {
			tlCheck(t, name, auth(uri), 400, "")
		}
		tlCheck(t, "no original URI", e.get(t, "GET", "/api/tiles/auth"), 400, "")
		tlCheck(t, "POST is not a tile request", auth(tlTilePath(priv.Id, "1/0/1", "pbf", tok), "X-Forwarded-Method: POST"), 400, "")

		// nginx's form: every refusal as 401 or 403, the real status beside it.
		r = auth(tlTilePath(uuid.New(), "1/0/1", "pbf", tok), "X-Tilegate-Auth-Request: nginx")
		if r.status != 403 || r.header.Get("X-Tilegate-Status") != "404" {
			t.Errorf("nginx form of a 404: %d X-Tilegate-Status %q", r.status, r.header.Get("X-Tilegate-Status"))
		}
		r = auth(tlTilePath(priv.Id, "1/0/1", "pbf", ""), "X-Tilegate-Auth-Request: nginx")
		if r.status != 401 || r.header.Get("X-Tilegate-Status") != "401" || r.header.Get("X-Tilegate-Reason") != "missing" {
			t.Errorf("nginx form of a 401: %d %q %q", r.status, r.header.Get("X-Tilegate-Status"), r.header.Get("X-Tilegate-Reason"))
		}
	})
}
