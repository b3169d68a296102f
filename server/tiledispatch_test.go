package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// The tile dispatch answers every request exactly as echo's router and middleware do: same
// status, headers and body, over tiles served, refused, invalid and routed elsewhere.
func TestTileDispatchMatchesEcho(t *testing.T) {
	db := testenv.Databases()[len(testenv.Databases())-1] // no SQL on the compared requests' path matters
	e := tlStart(t, db, server.Config{})
	pub := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
	priv := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	empty := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	for _, d := range []gen.Dataset{pub, priv} {
		e.uploadOK(t, d.Id, tlVectorFile())
	}
	key := "key=" + e.key(t, e.c, []string{"https://maps.example"}, "").Token
	tok := e.token(t, e.c, priv.Id)
	etag := e.get(t, "GET", tlTilePath(pub.Id, "1/1/1", "pbf", "")).header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	dispatch := e.Server.Handler()
	echoOnly := server.EchoOnly(dispatch)
	statuses := map[int]bool{}
	for _, tt := range []struct {
		method, path string
		header       []string
	}{
		{"GET", tlTilePath(pub.Id, "1/1/1", "pbf", ""), nil},
		{"HEAD", tlTilePath(pub.Id, "1/1/1", "pbf", ""), nil},
		{"GET", tlTilePath(pub.Id, "1/1/1", "pbf", ""), []string{"If-None-Match", etag}},
		{"GET", tlTilePath(pub.Id, "5/0/0", "pbf", ""), nil}, // no tile there: 204
		{"GET", tlTilePath(pub.Id, "1/1/1", "png", ""), nil}, // wrong format: 404
		{"GET", tlTilePath(priv.Id, "1/1/1", "pbf", key), []string{"Origin", "https://maps.example"}},
		{"GET", tlTilePath(priv.Id, "1/1/1", "pbf", key), []string{"Origin", "https://evil.example"}},
		{"GET", tlTilePath(priv.Id, "1/1/1", "pbf", tok), nil},
		{"GET", tlTilePath(priv.Id, "1/1/1", "pbf", ""), nil},
		{"GET", tlTilePath(priv.Id, "1/1/1", "pbf", "key=unknown"), nil},
		{"GET", tlTilePath(priv.Id, "1/1/1", "pbf", "exp=-1"), nil},
		{"GET", tlTilePath(empty.Id, "1/1/1", "pbf", tok), nil},
		{"GET", tlTilePath(pub.Id, "31/1/1", "pbf", ""), nil},
		{"GET", tlTilePath(pub.Id, "1/2/1", "pbf", ""), nil},
		{"GET", tlTilePath(pub.Id, "a/1/1", "pbf", ""), nil},
		{"GET", "/api/tiles/not-a-uuid/1/1/1.pbf", nil},
		{"GET", "/api/tiles/token/1/1/1.pbf", nil},
		{"GET", "/api/tiles/tokens/1/1/1.pbf", nil},
		{"GET", "/api/tiles/" + pub.Id.String() + "/1/1/1", nil},
		{"GET", "/api/tiles/" + pub.Id.String() + "/1/1/1.", nil},
		{"GET", "/api/tiles/" + pub.Id.String() + "/1/1/1.pbf/", nil},
		{"GET", "/api/tiles/" + pub.Id.String() + "/1/1/1/1.pbf", nil},
		{"GET", "/api/tiles/" + pub.Id.String() + "//1/1.pbf", nil},
		{"GET", "/api/tiles/" + pub.Id.String() + "/1/1/%31.pbf", nil},
		{"GET", "/api/tiles/" + pub.Id.String() + "/tilejson.json", nil},
		{"GET", "/api/tiles/token/" + priv.Id.String() + "/", nil},
		{"OPTIONS", tlTilePath(pub.Id, "1/1/1", "pbf", ""), nil},
		{"POST", tlTilePath(pub.Id, "1/1/1", "pbf", ""), nil},
		{"DELETE", tlTilePath(pub.Id, "1/1/1", "pbf", ""), nil},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			serve := func(h http.Handler) *httptest.ResponseRecorder {
				r := httptest.NewRequest(tt.method, tt.path, nil)
				r.Header.Set("Accept-Encoding", "gzip")
				for i := 0; i+1 < len(tt.header); i += 2 {
					r.Header.Set(tt.header[i], tt.header[i+1])
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			got, want := serve(dispatch), serve(echoOnly)
			statuses[want.Code] = true
			if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Fatalf("dispatch %d %q; echo %d %q", got.Code, got.Body, want.Code, want.Body)
			}
			if g, w := got.Header(), want.Header(); len(g) != len(w) {
				t.Fatalf("headers: dispatch %v; echo %v", g, w)
			} else {
				for k := range w {
					if k == "X-Request-Id" { // one per request: both set, values differ
						if g.Get(k) == "" || w.Get(k) == "" || g.Get(k) == w.Get(k) {
							t.Errorf("%s: dispatch %q; echo %q", k, g.Get(k), w.Get(k))
						}
						continue
					}
					if g.Get(k) != w.Get(k) {
						t.Errorf("%s: dispatch %q; echo %q", k, g.Get(k), w.Get(k))
					}
				}
			}
		})
	}
	for _, code := range []int{200, 204, 304, 400, 401, 403, 404, 405, 422} {
		if !statuses[code] {
			t.Errorf("no request answered %d: the table no longer covers it", code)
		}
	}
	// And the dispatch does take the tile requests (the rest go to echo).
	for path, want := range map[string]bool{
		tlTilePath(pub.Id, "1/1/1", "pbf", ""):             true,
		"/api/tiles/token/1/1/1.pbf":                       false,
		"/api/tiles/" + pub.Id.String() + "/1/1/1.pbf/":    false,
		"/api/tiles/" + pub.Id.String() + "//1/1.pbf":      false,
		"/api/tiles/" + pub.Id.String() + "/tilejson.json": false,
	} {
		if got := server.TakesTile(path); got != want {
			t.Errorf("dispatch takes %s: %v, want %v", path, got, want)
		}
	}
}
