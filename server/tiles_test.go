package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/tiletoken"
)

// tlCheck asserts a tile response's status, reason and the headers every tile response carries.
func tlCheck(t *testing.T, name string, r tlResponse, status int, reason string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d (%s)", name, r.status, status, r.body)
		return
	}
	if got := r.header.Get("X-Tilegate-Reason"); got != reason {
		t.Errorf("%s: X-Tilegate-Reason %q, want %q", name, got, reason)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("%s: Access-Control-Allow-Origin %q, want *", name, got)
	}
	if v := r.header.Values("Vary"); len(v) != 0 {
		t.Errorf("%s: Vary %v on a tile response", name, v)
	}
	if status >= 400 {
		var e struct{ Detail string }
		if json.Unmarshal(r.body, &e) != nil || e.Detail == "" {
			t.Errorf("%s: body %s is not {\"detail\": \"…\"}", name, r.body)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: error with Cache-Control %q", name, cc)
		}
	}
	if reason != "" && !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Tilegate-Reason") {
		t.Errorf("%s: X-Tilegate-Reason not exposed to scripts", name)
	}
}

// Who may read which dataset's tiles, and every reason a request is refused.
func TestTileAccessAndReasons(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		other := e.NewAccount(t) // shares one of e's datasets
		stranger := e.NewAccount(t)
		oc, sc := e.Client(t, other.Token), e.Client(t, stranger.Token)

		public := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		private := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		shared := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		restricted := e.dataset(t, e.c, gen.DatasetKindVector, gen.Restricted)
		empty := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		strangers := e.dataset(t, sc, gen.DatasetKindVector, gen.Private)
		for _, d := range []gen.Dataset{public, private, shared, restricted} {
			e.uploadOK(t, d.Id, tlVectorFile())
		}
		g, err := e.c.CreateGrantWithResponse(t.Context(), shared.Id, gen.GrantCreate{AccountId: &other.ID})
		must(t, err)
		wantStatus(t, g.StatusCode(), 201, g.Body)

		own := e.key(t, e.c, nil, "").Token
		others := e.key(t, oc, nil, "").Token
		strangersKey := e.key(t, sc, nil, "").Token
		privTok := e.token(t, e.c, private.Id)
		restrictedTok := e.token(t, e.c, restricted.Id) // an admin may use a restricted dataset
		q, _ := url.ParseQuery(privTok)
		sig, exp, scope := q.Get("sig"), q.Get("exp"), q.Get("scope")
		badSig := strings.Repeat("0", 64)
		staleScope := strings.TrimSuffix(scope, ":1") + ":0"
		tok := func(sig, exp, scope string) string {
			return "sig=" + sig + "&exp=" + exp + "&scope=" + url.QueryEscape(scope)
		}
		path := func(d gen.Dataset, query string) string { return tlTilePath(d.Id, "1/1/1", "pbf", query) }

		cases := []struct {
			name   string
			path   string
			status int
			reason string
		}{
			{"public, no credential", path(public, ""), 200, ""},
			{"public, unknown key is ignored", path(public, "key=nope"), 200, ""},
			{"private, no credential", path(private, ""), 401, "missing"},
			{"private, own key", path(private, "key="+own), 200, ""},
			{"private, url-encoded key", path(private, "key="+url.QueryEscape(own)), 200, ""},
			{"private, token", path(private, privTok), 200, ""},
			{"private, token and a bad key: the token counts", path(private, privTok+"&key=nope"), 200, ""},
			{"private, other account's key", path(private, "key="+others), 404, ""},
			{"shared, grantee's key", path(shared, "key="+others), 200, ""},
			{"shared, stranger's key", path(shared, "key="+strangersKey), 404, ""},
			{"restricted, own key", path(restricted, "key="+own), 403, "restricted"},
			{"restricted, token", path(restricted, restrictedTok), 200, ""},
			{"stranger's dataset, own key", path(strangers, "key="+own), 404, ""},
			{"private, unknown key", path(private, "key=AAAAAAAAAAAAAAAAAAAAAAAA"), 403, "unknown_key"},
			{"private, garbage key", path(private, "key=not-a-key"), 403, "unknown_key"},
			{"private, empty key", path(private, "key="), 401, "malformed"},
			{"sig without exp", path(private, "sig="+sig+"&scope="+url.QueryEscape(scope)), 401, "malformed"},
			{"scope only", path(private, "scope="+url.QueryEscape(scope)), 401, "malformed"},
			{"short sig", path(private, tok("abc", exp, scope)), 401, "malformed"},
			{"upper-case sig", path(private, tok(strings.ToUpper(sig), exp, scope)), 401, "malformed"},
			{"exp not canonical", path(private, tok(sig, "0"+exp, scope)), 401, "malformed"},
			{"empty scope", path(private, tok(sig, exp, "")), 401, "malformed"},
			{"bad signature", path(private, tok(badSig, exp, scope)), 403, "bad_signature"},
			{"signature of another exp", path(private, tok(sig, fmt.Sprint(tlAtoi(t, exp)-1), scope)), 403, "bad_signature"},
			{"expired", path(private, tok(sig, fmt.Sprint(time.Now().Unix()-10), scope)), 403, "expired"},
			{"stale access version", path(private, tok(sig, exp, staleScope)), 403, "scope"},
			{"token of another dataset", path(shared, privTok), 404, ""},
			{"unknown dataset", tlTilePath(uuid.New(), "0/0/0", "pbf", "key="+own), 404, ""},
			{"unknown dataset, no credential", tlTilePath(uuid.New(), "0/0/0", "pbf", ""), 404, ""},
			{"wrong format", tlTilePath(private.Id, "0/0/0", "png", "key="+own), 404, ""},
			{"no tile there", tlTilePath(private.Id, "4/3/2", "pbf", "key="+own), 204, ""},
			{"no file uploaded yet", tlTilePath(empty.Id, "0/0/0", "pbf", "key="+own), 204, ""},
			{"no file, no credential", tlTilePath(empty.Id, "0/0/0", "pbf", ""), 401, "missing"},
			{"z too large", tlTilePath(private.Id, "31/0/0", "pbf", "key="+own), 400, ""},
			{"negative z", tlTilePath(private.Id, "-1/0/0", "pbf", "key="+own), 400, ""},
			{"x outside the grid", tlTilePath(private.Id, "1/2/0", "pbf", "key="+own), 400, ""},
			{"y outside the grid", tlTilePath(private.Id, "0/0/1", "pbf", "key="+own), 400, ""},
			{"negative y", tlTilePath(private.Id, "3/0/-1", "pbf", "key="+own), 400, ""},
			{"z 30 is in range", tlTilePath(private.Id, "30/1073741823/1073741823", "pbf", "key="+own), 204, ""},
		}
		for _, tc := range cases {
			r := e.get(t, "GET", tc.path)
			tlCheck(t, tc.name, r, tc.status, tc.reason)
			if tc.status == 200 && string(r.body) == "" {
				t.Errorf("%s: empty tile", tc.name)
			}
		}

		// The contract still validates what it can: a y that is no integer is 422, a path
		// without a format is outside the spec.
		for _, p := range []string{
			tlTilePath(private.Id, "0/0/a", "pbf", "key="+own),
			"/api/tiles/not-a-uuid/0/0/0.pbf",
		} {
			if r := e.get(t, "GET", p); r.status != 422 || r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s: %d %v, want 422 with CORS", p, r.status, r.header)
			}
		}
		// Query parameters keep the spec's limits (checked by rules compiled from it).
		for q, want := range map[string]string{
			"key=" + strings.Repeat("é", 257):                                     `[{"loc":["query","key"],"msg":"String should have at most 256 characters","type":"string_too_long"`,
			"key=" + strings.Repeat("é", 256) + "&exp=" + strings.Repeat("1", 33): `[{"loc":["query","exp"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing"`,
			"exp=1e9":  `[{"loc":["query","exp"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing","input":"1e9"}]`,
			"exp=-900": `[{"loc":["query","exp"],"msg":"Input should be greater than or equal to 0","type":"greater_than_equal","input":"-900","ctx":{"ge":0}}]`,
			"sig=" + strings.Repeat("a", 257) + "&scope=" + strings.Repeat("b", 257): `"loc":["query","sig"]`,
		} {
			r := e.get(t, "GET", tlTilePath(private.Id, "0/0/0", "pbf", q))
			if r.status != 422 || !strings.Contains(string(r.body), want) {
				t.Errorf("%.40s…: %d %.300s", q, r.status, r.body)
			}
		}
		if r := e.get(t, "GET", "/api/tiles/"+private.Id.String()+"/0/0/0?key="+own); r.status != 404 {
			t.Errorf("tile without format: %d, want 404", r.status)
		}
	})
}

func tlAtoi(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	_, err := fmt.Sscan(s, &n)
	must(t, err)
	return n
}

// The origin and user-agent rules of DESIGN.md, end to end.
func TestTileKeyRules(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		listed := e.key(t, e.c, []string{"example.com", "*.maps.example.org", "http://localhost:3000", "Bücher.example"}, "").Token
		unknownOK := e.key(t, e.c, []string{"example.com", "?"}, "").Token
		agent := e.key(t, e.c, nil, "MyApp/1.0").Token
		both := e.key(t, e.c, []string{"example.com"}, "MyApp/1.0").Token

		cases := []struct {
			name    string
			key     string
			headers []string
			status  int
			reason  string
		}{
			{"exact host", listed, []string{"Origin: https://example.com"}, 200, ""},
			{"exact host over http", listed, []string{"Origin: http://example.com"}, 200, ""},
			{"exact host, any port", listed, []string{"Origin: https://example.com:8443"}, 200, ""},
			{"upper-case origin", listed, []string{"Origin: https://EXAMPLE.COM"}, 200, ""},
			{"subdomain of an exact host", listed, []string{"Origin: https://www.example.com"}, 403, "origin"},
			{"wildcard subdomain", listed, []string{"Origin: https://a.maps.example.org"}, 200, ""},
			{"wildcard deeper subdomain", listed, []string{"Origin: https://x.y.maps.example.org"}, 200, ""},
			{"wildcard apex", listed, []string{"Origin: https://maps.example.org"}, 403, "origin"},
			{"label boundary", listed, []string{"Origin: https://evil-maps.example.org"}, 403, "origin"},
			{"suffix attack", listed, []string{"Origin: https://maps.example.org.evil.com"}, 403, "origin"},
			{"exact host suffix attack", listed, []string{"Origin: https://example.com.evil.com"}, 403, "origin"},
			{"hyphen attack", listed, []string{"Origin: https://evil-example.com"}, 403, "origin"},
			{"scheme and port", listed, []string{"Origin: http://localhost:3000"}, 200, ""},
			{"other port", listed, []string{"Origin: http://localhost:3001"}, 403, "origin"},
			{"other scheme", listed, []string{"Origin: https://localhost:3000"}, 403, "origin"},
			{"IDN as punycode", listed, []string{"Origin: https://xn--bcher-kva.example"}, 200, ""},
			{"Referer without Origin", listed, []string{"Referer: https://example.com/map?x=1#z"}, 200, ""},
			{"Referer of another site", listed, []string{"Referer: https://evil.com/example.com"}, 403, "origin"},
			{"Origin wins over Referer", listed, []string{"Origin: https://evil.com", "Referer: https://example.com/"}, 403, "origin"},
			{"user@host Referer", listed, []string{"Referer: https://example.com@evil.com/"}, 403, "origin"},
			{"Origin null", listed, []string{"Origin: null", "Referer: https://example.com/"}, 403, "unknown_origin"},
			{"no Origin nor Referer", listed, nil, 403, "unknown_origin"},
			{"? allows no headers", unknownOK, nil, 200, ""},
			{"? allows Origin null", unknownOK, []string{"Origin: null"}, 200, ""},
			{"? still checks known origins", unknownOK, []string{"Origin: https://evil.com"}, 403, "origin"},
			{"user agent substring", agent, []string{"User-Agent: Mozilla/5.0 MyApp/1.0 (Linux)"}, 200, ""},
			{"user agent is case-sensitive", agent, []string{"User-Agent: Mozilla/5.0 myapp/1.0"}, 403, "user_agent"},
			{"user agent missing", agent, []string{"User-Agent: curl/8"}, 403, "user_agent"},
			{"both rules met", both, []string{"Origin: https://example.com", "User-Agent: MyApp/1.0"}, 200, ""},
			{"both rules broken: origin reported", both, []string{"Origin: https://evil.com", "User-Agent: curl"}, 403, "origin"},
			{"origin met, agent not", both, []string{"Origin: https://example.com", "User-Agent: curl"}, 403, "user_agent"},
		}
		for _, tc := range cases {
			r := e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+tc.key), tc.headers...)
			tlCheck(t, tc.name, r, tc.status, tc.reason)
			if tc.reason == "origin" && !strings.Contains(string(r.body), "://") {
				t.Errorf("%s: the refusal does not name the origin: %s", tc.name, r.body)
			}
		}
	})
}

// A token stops working at its exp, measured by the signer's clock.
func TestTileTokenExpiry(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		tok := e.token(t, e.c, d.Id)
		q, _ := url.ParseQuery(tok)
		exp := time.Unix(tlAtoi(t, q.Get("exp")), 0)
		p := tlTilePath(d.Id, "0/0/0", "pbf", tok)

		tlCheck(t, "fresh", e.get(t, "GET", p), 200, "")
		e.clock.advance(time.Until(exp) - time.Second)
		tlCheck(t, "a second before exp", e.get(t, "GET", p), 200, "")
		e.clock.advance(2 * time.Second)
		tlCheck(t, "a second after exp", e.get(t, "GET", p), 403, "expired")
		// A new token works again; one dated further ahead than a signer can is refused as expired.
		tlCheck(t, "new token", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", e.token(t, e.c, d.Id))), 200, "")
		far := e.clock.now().Add(tiletoken.Window * 3).Unix()
		scope := q.Get("scope")
		tlCheck(t, "exp far in the future", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf",
			"sig="+strings.Repeat("a", 64)+"&exp="+fmt.Sprint(far)+"&scope="+url.QueryEscape(scope))), 403, "expired")
	})
}

// Revoking a grant retires the tokens minted under it at once: on this process directly, on
// other replicas through PostgreSQL NOTIFY.
func TestTileTokensRetireWhenAGrantIsRevoked(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		// A long TTL: nothing but invalidation may make the change visible.
		e := tlStart(t, db, server.Config{TileCacheTTL: time.Hour})
		grantee := e.NewAccount(t)
		gc := e.Client(t, grantee.Token)
		for _, via := range []string{"api", "store"} {
			if via == "store" && db.Name != "postgres" {
				continue // a change behind the server's back reaches it only by NOTIFY
			}
			t.Run(via, func(t *testing.T) {
				d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
				e.uploadOK(t, d.Id, tlVectorFile())
				g, err := e.c.CreateGrantWithResponse(t.Context(), d.Id, gen.GrantCreate{AccountId: &grantee.ID})
				must(t, err)
				wantStatus(t, g.StatusCode(), 201, g.Body)
				p := tlTilePath(d.Id, "0/0/0", "pbf", e.token(t, gc, d.Id))
				tlCheck(t, "before revoking", e.get(t, "GET", p), 200, "")
				e.tlListening(t)
				tlCheck(t, "before revoking, cached", e.get(t, "GET", p), 200, "")

				if via == "api" {
					r, err := e.c.DeleteGrantWithResponse(t.Context(), d.Id, g.JSON201.Id)
					must(t, err)
					wantStatus(t, r.StatusCode(), 204, r.Body)
					tlCheck(t, "right after revoking", e.get(t, "GET", p), 403, "scope")
					return
				}
				must(t, db.Store.DeleteGrant(t.Context(), d.Id, g.JSON201.Id))
				tlWaitFor(t, time.Second, "the revoke to reach the cache", func() bool {
					return e.get(t, "GET", p).status == 403
				})
				tlCheck(t, "after the notification", e.get(t, "GET", p), 403, "scope")
			})
		}
	})
}

// Key changes and deletions apply to tiles at once.
func TestTileKeyChangesApply(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{TileCacheTTL: time.Hour})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		k := e.key(t, e.c, []string{"example.com"}, "")
		p := tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token)
		tlCheck(t, "allowed origin", e.get(t, "GET", p, "Origin: https://example.com"), 200, "")
		e.tlListening(t)
		tlCheck(t, "allowed origin, cached", e.get(t, "GET", p, "Origin: https://example.com"), 200, "")

		origins := []string{"other.example"}
		r, err := e.c.ChangeAPIKeySettingsWithResponse(t.Context(), k.Id, gen.APIKeySettings{Origins: tlList(origins)})
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
		tlCheck(t, "after changing the origins", e.get(t, "GET", p, "Origin: https://example.com"), 403, "origin")
		tlCheck(t, "the new origin", e.get(t, "GET", p, "Origin: https://other.example"), 200, "")

		del, err := e.c.DeleteAPIKeyWithResponse(t.Context(), k.Id)
		must(t, err)
		wantStatus(t, del.StatusCode(), 200, del.Body)
		tlCheck(t, "after deleting the key", e.get(t, "GET", p, "Origin: https://other.example"), 403, "unknown_key")

		if db.Name == "postgres" {
			// Behind the server's back: only NOTIFY can tell it.
			k2 := e.key(t, e.c, nil, "")
			p2 := tlTilePath(d.Id, "0/0/0", "pbf", "key="+k2.Token)
			tlCheck(t, "second key", e.get(t, "GET", p2), 200, "")
			must(t, db.Store.DeleteAPIKey(t.Context(), e.acct.ID, k2.Id))
			tlWaitFor(t, time.Second, "the deletion to reach the cache", func() bool {
				return e.get(t, "GET", p2).status == 403
			})
		}
	})
}

// ETag, 304, gzip, content types, cache headers and HEAD.
func TestTileHeaders(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{PublicTileMaxAge: 2 * time.Hour, PrivateTileMaxAge: 5 * time.Minute})
		vec := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, vec.Id, tlVectorFile())
		ras := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Public)
		e.uploadOK(t, ras.Id, tlRasterFile())
		key := "key=" + e.key(t, e.c, nil, "").Token

		v := e.get(t, "GET", tlTilePath(vec.Id, "1/0/0", "pbf", key))
		tlCheck(t, "vector", v, 200, "")
		for h, want := range map[string]string{
			"Content-Type": "application/vnd.mapbox-vector-tile", "Content-Encoding": "gzip",
			"Cache-Control": "private, max-age=300",
		} {
			if got := v.header.Get(h); got != want {
				t.Errorf("vector tile %s = %q, want %q", h, got, want)
			}
		}
		etag := v.header.Get("ETag")
		if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 6 {
			t.Fatalf("ETag %q", etag)
		}
		other := e.get(t, "GET", tlTilePath(vec.Id, "1/1/1", "pbf", key)).header.Get("ETag")
		if other == etag || other == "" {
			t.Errorf("two tiles share the ETag %q", etag)
		}

		r := e.get(t, "GET", tlTilePath(ras.Id, "2/1/3", "png", ""))
		tlCheck(t, "raster", r, 200, "")
		if r.header.Get("Content-Type") != "image/png" || r.header.Get("Content-Encoding") != "" ||
			r.header.Get("Cache-Control") != "public, max-age=7200" || string(r.body) != string(tlPNG) {
			t.Errorf("raster tile: %v %q", r.header, r.body)
		}

		for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag, "*"} {
			nm := e.get(t, "GET", tlTilePath(vec.Id, "1/0/0", "pbf", key), "If-None-Match: "+inm)
			tlCheck(t, "If-None-Match "+inm, nm, 304, "")
			if len(nm.body) != 0 || nm.header.Get("ETag") != etag || nm.header.Get("Cache-Control") == "" {
				t.Errorf("304 for %s: %v %q", inm, nm.header, nm.body)
			}
		}
		tlCheck(t, "other ETag", e.get(t, "GET", tlTilePath(vec.Id, "1/0/0", "pbf", key), `If-None-Match: "nope"`), 200, "")
		// Credentials are checked before the ETag.
		tlCheck(t, "If-None-Match without credential", e.get(t, "GET", tlTilePath(vec.Id, "1/0/0", "pbf", ""), "If-None-Match: "+etag), 401, "missing")

		// A new upload changes the ETags.
		e.uploadOK(t, vec.Id, tlVectorFile())
		if again := e.get(t, "GET", tlTilePath(vec.Id, "1/0/0", "pbf", key)); again.header.Get("ETag") == etag || again.status != 200 {
			t.Errorf("after a new upload: %d, ETag %q unchanged", again.status, etag)
		}

		// HEAD answers as GET would, without the body (headTile in the spec).
		req, _ := http.NewRequest("HEAD", e.URL+tlTilePath(vec.Id, "1/0/0", "pbf", key), nil)
		res, err := e.hc.Do(req)
		must(t, err)
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Content-Length") != v.header.Get("Content-Length") || res.Header.Get("ETag") == "" {
			t.Errorf("HEAD: %d %v", res.StatusCode, res.Header)
		}
	})
}

// Browsers' CORS preflight is answered before the contract (which knows only GET).
func TestTileCORSPreflight(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		for _, p := range []string{tlTilePath(d.Id, "1/0/0", "pbf", "key=x"), "/api/tiles/" + d.Id.String() + "/tilejson.json"} {
			r := e.get(t, "OPTIONS", p, "Origin: https://example.com", "Access-Control-Request-Method: GET",
				"Access-Control-Request-Headers: if-none-match")
			if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" ||
				!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "GET") ||
				!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "If-None-Match") ||
				r.header.Get("Access-Control-Max-Age") == "" || len(r.header.Values("Vary")) != 0 {
				t.Errorf("preflight %s: %d %v", p, r.status, r.header)
			}
		}
		// The token endpoints are for backends: no CORS.
		r := e.get(t, "GET", "/api/tiles/token/"+d.Id.String()+"/", "Authorization: Bearer "+e.acct.Token)
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("token endpoint: %d %v", r.status, r.header)
		}
	})
}

// Deleting a dataset retires its tokens and keys at once: the same URLs that served a tile are
// refused, and the file is gone from the data directory.
func TestDeletedDatasetStopsServing(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{ReplacedTilesGrace: -1})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		tokenURL := tlTilePath(d.Id, "0/0/0", "pbf", e.token(t, e.c, d.Id))
		keyURL := tlTilePath(d.Id, "0/0/0", "pbf", "key="+e.key(t, e.c, nil, "").Token)
		tlCheck(t, "token before", e.get(t, "GET", tokenURL), 200, "")
		tlCheck(t, "key before", e.get(t, "GET", keyURL), 200, "")

		del, err := e.c.DeleteDatasetWithResponse(t.Context(), d.Id)
		must(t, err)
		wantStatus(t, del.StatusCode(), 204, del.Body)
		tlCheck(t, "token after", e.get(t, "GET", tokenURL), 404, "")
		tlCheck(t, "key after", e.get(t, "GET", keyURL), 404, "")
		files, err := filepath.Glob(filepath.Join(e.dataDir, "*.mbtiles"))
		must(t, err)
		if len(files) != 0 {
			t.Errorf("files left after the delete: %v", files)
		}
	})
}
