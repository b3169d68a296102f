package server_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// tlTileJSON fetches a TileJSON with the given query and Authorization (when token is set).
func (e *tlEnv) tileJSON(t *testing.T, id uuid.UUID, query, token string, headers ...string) (tlResponse, *gen.TileJSON) {
	t.Helper()
	p := "/api/tiles/" + id.String() + "/tilejson.json"
	if query != "" {
		p += "?" + query
	}
	if token != "" {
		headers = append(headers, "Authorization: Bearer "+token)
	}
	r := e.get(t, "GET", p, headers...)
	if r.status != 200 {
		return r, nil
	}
	var tj gen.TileJSON
	must(t, tlUnmarshal(r.body, &tj))
	return r, &tj
}

// tlFollow requests tile z/x/y through the TileJSON's URL template.
func (e *tlEnv) tlFollow(t *testing.T, tj *gen.TileJSON, zxy string, headers ...string) tlResponse {
	t.Helper()
	z, rest, _ := strings.Cut(zxy, "/")
	x, y, _ := strings.Cut(rest, "/")
	u := strings.NewReplacer("{z}", z, "{x}", x, "{y}", y).Replace(tj.Tiles[0])
	if !strings.HasPrefix(u, e.URL) {
		t.Fatalf("tile URL %s is not under %s", u, e.URL)
	}
	return e.get(t, "GET", strings.TrimPrefix(u, e.URL), headers...)
}

func TestTileJSON(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		vec := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, vec.Id, tlVectorFile())
		ras := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Public)
		e.uploadOK(t, ras.Id, tlRasterFile())
		restricted := e.dataset(t, e.c, gen.DatasetKindVector, gen.Restricted)
		key := e.key(t, e.c, []string{"example.com"}, "").Token
		editor := e.NewPrincipal(t, e.acct.ID, "editor").Token
		stranger := e.NewAccount(t)

		// With a key: its fields, and tile URLs carrying the key.
		r, tj := e.tileJSON(t, vec.Id, "key="+key, "", "Origin: https://example.com")
		tlCheck(t, "key", r, 200, "")
		if tj == nil {
			t.FailNow()
		}
		if tj.Tilejson != "3.0.0" || tj.Scheme != "xyz" || *tj.Format != "pbf" || *tj.Name != vec.Name ||
			tj.Minzoom != 0 || tj.Maxzoom != 5 || *tj.Attribution != "© tile tests" || tj.VectorLayers == nil ||
			(*tj.VectorLayers)[0].Id != "roads" || tj.Bounds == nil || (*tj.Bounds)[3] != 40 || tj.Center == nil {
			t.Errorf("TileJSON: %s", r.body)
		}
		want := e.URL + "/api/tiles/" + vec.Id.String() + "/{z}/{x}/{y}.pbf?key=" + url.QueryEscape(key) +
			"&v=" + tlFileVersion(t, e, vec.Id, "key="+key, "Origin: https://example.com")
		if len(tj.Tiles) != 1 || tj.Tiles[0] != want {
			t.Errorf("tiles %v, want [%s]", tj.Tiles, want)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		tlCheck(t, "tile through the key template", e.tlFollow(t, tj, "1/1/1", "Origin: https://example.com"), 200, "")

		// The key's rules apply to TileJSON too.
		r, _ = e.tileJSON(t, vec.Id, "key="+key, "", "Origin: https://evil.example")
		tlCheck(t, "key, wrong origin", r, 403, "origin")
		r, _ = e.tileJSON(t, vec.Id, "key=AAAAAAAAAAAAAAAAAAAAAAAA", "")
		tlCheck(t, "unknown key", r, 403, "unknown_key")
		r, _ = e.tileJSON(t, vec.Id, "", "")
		tlCheck(t, "no credential", r, 401, "missing")
		r, _ = e.tileJSON(t, vec.Id, "sig=abc", "")
		tlCheck(t, "malformed token", r, 401, "malformed")
		r, _ = e.tileJSON(t, uuid.New(), "key="+key, "")
		tlCheck(t, "unknown dataset", r, 404, "")
		r, _ = e.tileJSON(t, restricted.Id, "key="+key, "", "Origin: https://example.com")
		tlCheck(t, "restricted, key", r, 403, "restricted")

		// With a tile token: that same token in the URLs (TestTileJSONKeepsTheTileToken).
		tok := e.token(t, e.c, vec.Id)
		r, tj = e.tileJSON(t, vec.Id, tok, "")
		tlCheck(t, "token", r, 200, "")
		if tj == nil || !strings.Contains(tj.Tiles[0], "?sig=") || !strings.Contains(tj.Tiles[0], "&scope=") {
			t.Fatalf("token TileJSON: %s", r.body)
		}
		tlCheck(t, "tile through the token template", e.tlFollow(t, tj, "0/0/0"), 200, "")
		e.clock.advance(2000e9) // the token has expired now
		r, _ = e.tileJSON(t, vec.Id, tok, "")
		tlCheck(t, "expired token", r, 403, "expired")
		e.clock.advance(-2000e9)

		// With a service token: minted token URLs; the may-use rules.
		r, tj = e.tileJSON(t, vec.Id, "", e.acct.Token)
		tlCheck(t, "service token", r, 200, "")
		if tj == nil || !strings.Contains(tj.Tiles[0], "?sig=") {
			t.Fatalf("service token TileJSON: %s", r.body)
		}
		tlCheck(t, "tile through the minted template", e.tlFollow(t, tj, "1/0/0"), 200, "")
		r, _ = e.tileJSON(t, restricted.Id, "", editor)
		tlCheck(t, "restricted, editor's service token", r, 403, "restricted")
		r, _ = e.tileJSON(t, restricted.Id, "", e.acct.Token)
		tlCheck(t, "restricted, admin's service token", r, 200, "")
		r, _ = e.tileJSON(t, vec.Id, "", stranger.Token)
		tlCheck(t, "another account's service token", r, 404, "")
		r, _ = e.tileJSON(t, vec.Id, "", "tgs_not-a-token")
		if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("bad service token: %d %v", r.status, r.header)
		}

		// A public dataset: no credential needed, none in the URLs; raster has no vector_layers.
		r, tj = e.tileJSON(t, ras.Id, "", "")
		tlCheck(t, "public", r, 200, "")
		if tj == nil || !strings.HasSuffix(tj.Tiles[0], ".png?v="+tlFileVersion(t, e, ras.Id, "")) ||
			tj.VectorLayers != nil || r.header.Get("Cache-Control") != "public, max-age=60" {
			t.Fatalf("public TileJSON: %v %s", r.header, r.body)
		}
		_, tj2 := e.tileJSON(t, ras.Id, "key="+key, e.acct.Token)
		if tj2 == nil || tj2.Tiles[0] != tj.Tiles[0] {
			t.Errorf("public TileJSON with credentials: %v", tj2)
		}
		tlCheck(t, "public tile through the template", e.tlFollow(t, tj, "2/1/3"), 200, "")
	})
}
