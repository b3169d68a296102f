package server_test

import (
	"context"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// TestTrailingSlashSpellings: every path of the spec, for every method it has, answers as
// spelled, and its other spelling (trailing slash added or removed) answers 308 to it with the
// query kept; a client that follows (POST included: 308 keeps the method and body) gets the
// operation.
func TestTrailingSlashSpellings(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		k := e.key(t, e.c, nil, "")
		spec, err := server.LoadSpec()
		must(t, err)
		fill := strings.NewReplacer("{dataset_id}", d.Id.String(), "{key_id}", k.Id.String(), "{grant_id}", uuid.NewString(),
			"{z}", "0", "{x}", "0", "{y}", "0", "{format}", "pbf")
		noFollow := e.HTTPClient(t)
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		paths := spec.Paths.InMatchingOrder()
		sort.Strings(paths)
		checked := 0
		for _, tmpl := range paths {
			canonical := fill.Replace(tmpl)
			other := canonical + "/"
			if strings.HasSuffix(canonical, "/") {
				other = strings.TrimSuffix(canonical, "/")
			}
			for method := range spec.Paths.Value(tmpl).Operations() {
				req, err := http.NewRequest(method, e.URL+other+"?limit=10&x=%2F", nil)
				must(t, err)
				req.Header.Set("Authorization", "Bearer "+e.acct.Token)
				res, err := noFollow.Do(req)
				must(t, err)
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != canonical+"?limit=10&x=%2F" {
					t.Errorf("%s %s: %d Location %q, want 308 to %s: %s", method, other, res.StatusCode, res.Header.Get("Location"), canonical, body)
				}
				// (Without a credential, so that nothing is changed or deleted: the spelling
				// is decided before authentication.)
				req, err = http.NewRequest(method, e.URL+canonical, nil)
				must(t, err)
				res, err = noFollow.Do(req)
				must(t, err)
				res.Body.Close()
				if res.StatusCode == http.StatusPermanentRedirect {
					t.Errorf("%s %s, the seed spelling, redirects", method, canonical)
				}
				checked++
			}
		}
		if checked < 30 {
			t.Fatalf("only %d operations checked", checked)
		}
		// Followed: a POST keeps its body through the 308.
		res, body := send(t, e.hc, "POST", e.URL+"/api/tiles/tokens", idsBody(d.Id), "Authorization", "Bearer "+e.acct.Token)
		wantStatus(t, res.StatusCode, 200, body)
		if got := batchEntries(t, body); got[d.Id.String()]["kind"] != "vector" {
			t.Errorf("batch through the redirect: %s", body)
		}
		// A path in neither spelling is still a 404.
		res, body = send(t, e.hc, "GET", e.URL+"/v1/api_keyz/", "")
		wantProblem(t, res, body, 404)
	})
}

// TestGeolensTileURL: GeoLens's front end builds vector tile URLs as
// <tileBaseUrl>/tiles/data.<table>/{z}/{x}/{y}.pbf?sig=…&exp=…&scope=… (tile-utils.ts,
// buildSignedTileUrl: the scope unescaped). A tilegate dataset's table is its id (or the token's
// scope, which names it); the token is verified as on the canonical URL.
func TestGeolensTileURL(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, d.Id, tlVectorFile())
		other := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		r, err := e.c.GetTileTokenWithResponse(context.Background(), d.Id)
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
		tok, err := r.JSON200.AsVectorTileToken()
		must(t, err)
		tileBaseURL := e.URL + "/api"
		build := func(table string) string {
			return tileBaseURL + "/tiles/data." + table + "/{z}/{x}/{y}.pbf?sig=" + tok.Sig + "&exp=" + strconv.FormatInt(tok.Exp, 10) + "&scope=" + tok.Scope
		}
		for _, table := range []string{d.Id.String(), tok.Scope} {
			u := strings.NewReplacer("{z}", "1", "{x}", "0", "{y}", "0").Replace(build(table))
			res, body := send(t, e.hc, "GET", u, "")
			wantStatus(t, res.StatusCode, 200, body)
			if string(body) != string(tlVectorTiles[[3]int{1, 0, 0}]) {
				t.Errorf("data.%s: tile %q", table, body)
			}
		}
		// The token is checked against the dataset the alias names.
		u := strings.NewReplacer("{z}", "0", "{x}", "0", "{y}", "0").Replace(build(other.Id.String()))
		res, body := send(t, e.hc, "GET", u, "")
		wantProblem(t, res, body, 404)
		// No credential: refused as on the canonical URL.
		res, body = send(t, e.hc, "GET", e.URL+"/api/tiles/data."+d.Id.String()+"/0/0/0.pbf", "")
		wantProblem(t, res, body, 401)
		// A GeoLens table name that names no tilegate dataset is a validation failure, as before.
		res, body = send(t, e.hc, "GET", e.URL+"/api/tiles/data.recent_earthquakes/0/0/0.pbf", "")
		wantProblem(t, res, body, 422)
	})
}
