package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// mintCall is one token call as a client without a service token makes it.
func (e *tlEnv) mintCall(t testing.TB, method, path, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	return send(t, e.hc, method, e.URL+path, body, header...)
}

// batchEntries decodes {"tokens": {...}} into each entry's raw JSON.
func batchEntries(t testing.TB, body []byte) map[string]map[string]any {
	t.Helper()
	var v struct {
		Tokens map[string]map[string]any `json:"tokens"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("batch body: %v: %s", err, body)
	}
	return v.Tokens
}

func idsBody(ids ...uuid.UUID) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id.String())
	}
	return `{"dataset_ids":[` + strings.Join(q, ",") + `]}`
}

// tokenQuery is the ?sig=&exp=&scope= of a token entry's tile template.
func tokenQuery(t testing.TB, entry map[string]any) string {
	t.Helper()
	tiles, _ := entry["tiles"].([]any)
	if len(tiles) != 1 {
		t.Fatalf("token entry without tiles: %v", entry)
	}
	tmpl := tiles[0].(string)
	return tmpl[strings.IndexByte(tmpl, '?')+1:]
}

// TestAnonymousMinting re-creates GeoLens's embed: its front end posts the batch with no
// credential from a page (fetch, Content-Type JSON, an Origin), and its SDKs' anonymous clients
// call both endpoints. Public datasets get tokens; everything else is a 404 entry, never a 401
// for the batch; answers carry CORS for the page.
func TestAnonymousMinting(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		public := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		private := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		restricted := e.dataset(t, e.c, gen.DatasetKindVector, gen.Restricted)
		unknown := uuid.New()
		page := []string{"Origin", "https://embed.example.org"}

		res, body := e.mintCall(t, "POST", "/api/tiles/tokens/", idsBody(private.Id, public.Id, restricted.Id, unknown), page...)
		wantStatus(t, res.StatusCode, 200, body)
		if res.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("anonymous batch without CORS: %v", res.Header)
		}
		got := batchEntries(t, body)
		if got[public.Id.String()]["kind"] != "vector" || got[public.Id.String()]["sig"] == "" {
			t.Errorf("public dataset: %v", got[public.Id.String()])
		}
		for _, id := range []uuid.UUID{private.Id, restricted.Id, unknown} {
			if en := got[id.String()]; en["status"] != 404.0 || en["error"] != "Dataset not found" {
				t.Errorf("dataset %s: %v, want a 404 entry", id, en)
			}
		}
		// First-seen order kept, as with a service token.
		if i, j := strings.Index(string(body), private.Id.String()), strings.Index(string(body), public.Id.String()); i > j {
			t.Errorf("order lost: %s", body)
		}

		res, body = e.mintCall(t, "GET", "/api/tiles/token/"+public.Id.String()+"/", "", page...)
		wantStatus(t, res.StatusCode, 200, body)
		for _, id := range []uuid.UUID{private.Id, restricted.Id, unknown} {
			res, body = e.mintCall(t, "GET", "/api/tiles/token/"+id.String()+"/", "")
			wantProblem(t, res, body, 404)
		}
		// A service token that is not valid is still 401 for the whole batch (and gets no CORS).
		res, body = e.mintCall(t, "POST", "/api/tiles/tokens/", idsBody(public.Id), "Authorization", "Bearer tgs_not_a_token")
		wantProblem(t, res, body, 401)
		if res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("a call with Authorization got CORS: %v", res.Header)
		}
	})
}

// TestAnonymousMintingRate: anonymous calls are limited per client address (the trusted-proxy
// rule decides the address): 429 with Retry-After past the burst, other addresses unaffected.
func TestAnonymousMintingRate(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{AnonymousMintRate: 0.01, AnonymousMintBurst: 2,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
		public := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		from := func(addr string) (*http.Response, []byte) {
			return e.mintCall(t, "POST", "/api/tiles/tokens/", idsBody(public.Id), "X-Forwarded-For", addr)
		}
		for i := 0; i < 2; i++ {
			res, body := from("203.0.113.7")
			wantStatus(t, res.StatusCode, 200, body)
		}
		res, body := from("203.0.113.7")
		wantProblem(t, res, body, 429)
		if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q", res.Header.Get("Retry-After"))
		}
		if r := res.Header.Get("X-Tilegate-Reason"); r != "anonymous_rate_limited" || res.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("429 headers: %v", res.Header)
		}
		res, body = e.mintCall(t, "GET", "/api/tiles/token/"+public.Id.String()+"/", "", "X-Forwarded-For", "203.0.113.7")
		wantProblem(t, res, body, 429)
		res, body = from("203.0.113.8")
		wantStatus(t, res.StatusCode, 200, body)
		// A spoofed hop left of the real client proves nothing: the client is still .7.
		res, body = from("198.51.100.1, 203.0.113.7")
		wantProblem(t, res, body, 429)
		// Service tokens are not limited by address.
		r, err := e.c.GetTileTokenWithResponse(context.Background(), public.Id, func(_ context.Context, r *http.Request) error {
			r.Header.Set("X-Forwarded-For", "203.0.113.7")
			return nil
		})
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
	})
}

// TestAPIKeyMinting: an API key (GeoLens's X-Api-Key header, as its SDKs' apiKey option and its
// front end send it, or ?key=) mints tokens for the datasets that key may use, every rule of the
// key applied as on tiles; the tokens open the tiles; usage is counted for the key.
func TestAPIKeyMinting(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		ctx := context.Background()
		private := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		e.uploadOK(t, private.Id, tlVectorFile())
		restricted := e.dataset(t, e.c, gen.DatasetKindVector, gen.Restricted)
		outOfScope := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		public := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
		other := e.NewAccount(t)
		theirs := e.dataset(t, e.Client(t, other.Token), gen.DatasetKindVector, gen.Private)

		kr, err := e.c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{
			Origins:    nullable.NewNullableWithValue([]string{"maps.example.com"}),
			UserAgent:  nullable.NewNullableWithValue("Mozilla"),
			DatasetIds: nullable.NewNullableWithValue([]uuid.UUID{private.Id, restricted.Id, public.Id}),
		})
		must(t, err)
		wantStatus(t, kr.StatusCode(), 200, kr.Body)
		key := kr.JSON200
		browser := []string{"Origin", "https://maps.example.com", "User-Agent", "Mozilla/5.0"}
		ids := idsBody(private.Id, restricted.Id, outOfScope.Id, theirs.Id, public.Id)

		for _, how := range []struct {
			name, path string
			header     []string
		}{
			{"X-Api-Key", "/api/tiles/tokens/", append([]string{"X-Api-Key", key.Token}, browser...)},
			{"X-API-Key (SDK spelling)", "/api/tiles/tokens/", append([]string{"X-API-Key", key.Token}, browser...)},
			{"?key=", "/api/tiles/tokens/?key=" + key.Token, browser},
		} {
			res, body := e.mintCall(t, "POST", how.path, ids, how.header...)
			wantStatus(t, res.StatusCode, 200, body)
			if res.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s: no CORS for a key caller", how.name)
			}
			got := batchEntries(t, body)
			tok := got[private.Id.String()]
			if tok["kind"] != "vector" {
				t.Fatalf("%s: private dataset the key may use: %v", how.name, tok)
			}
			if r := e.get(t, "GET", tlTilePath(private.Id, "0/0/0", "pbf", tokenQuery(t, tok))); r.status != 200 {
				t.Errorf("%s: the minted token does not open the tile: %d %s", how.name, r.status, r.body)
			}
			if en := got[restricted.Id.String()]; en["status"] != 403.0 || !strings.Contains(en["error"].(string), "restricted") {
				t.Errorf("%s: restricted: %v", how.name, en)
			}
			if en := got[outOfScope.Id.String()]; en["status"] != 403.0 || !strings.Contains(en["error"].(string), "not allowed to read this dataset") {
				t.Errorf("%s: outside the key's dataset_ids: %v", how.name, en)
			}
			if en := got[theirs.Id.String()]; en["status"] != 404.0 {
				t.Errorf("%s: another account's dataset: %v", how.name, en)
			}
			if got[public.Id.String()]["kind"] != "vector" {
				t.Errorf("%s: public: %v", how.name, got[public.Id.String()])
			}
		}

		// The key's origin and user agent rules, as on tiles: per dataset entries in the batch,
		// 403 with X-Tilegate-Reason on the single endpoint.
		res, body := e.mintCall(t, "POST", "/api/tiles/tokens/", idsBody(private.Id, public.Id), "X-Api-Key", key.Token, "Origin", "https://evil.example.net", "User-Agent", "Mozilla/5.0")
		wantStatus(t, res.StatusCode, 200, body)
		if got := batchEntries(t, body); got[private.Id.String()]["status"] != 403.0 || got[public.Id.String()]["kind"] != "vector" {
			t.Errorf("wrong origin: %s", body)
		}
		for _, tc := range []struct {
			header []string
			reason string
		}{
			{[]string{"Origin", "https://evil.example.net", "User-Agent", "Mozilla/5.0"}, "origin"},
			{[]string{"Origin", "https://maps.example.com", "User-Agent", "curl/8"}, "user_agent"},
			{[]string{"User-Agent", "Mozilla/5.0"}, "unknown_origin"},
		} {
			res, body := e.mintCall(t, "GET", "/api/tiles/token/"+private.Id.String()+"/", "", append([]string{"X-Api-Key", key.Token}, tc.header...)...)
			wantProblem(t, res, body, 403)
			if r := res.Header.Get("X-Tilegate-Reason"); r != tc.reason {
				t.Errorf("reason %q, want %q", r, tc.reason)
			}
		}
		res, body = e.mintCall(t, "GET", "/api/tiles/token/"+private.Id.String()+"/?key="+key.Token, "", browser...)
		wantStatus(t, res.StatusCode, 200, body)

		// A key that is not valid is 401 for the whole call, public datasets included.
		for _, h := range [][]string{{"X-Api-Key", "not-a-key"}, {"X-Api-Key", ""}} {
			res, body = e.mintCall(t, "POST", "/api/tiles/tokens/", idsBody(public.Id), h...)
			wantProblem(t, res, body, 401)
			res, body = e.mintCall(t, "GET", "/api/tiles/token/"+public.Id.String()+"/", "", h...)
			wantProblem(t, res, body, 401)
		}
		// Disabled and expired keys are refused by their rules (403), as on tiles.
		off, err := e.c.ChangeAPIKeySettingsWithResponse(ctx, key.Id, gen.APIKeySettings{Enabled: nullable.NewNullableWithValue(false)})
		must(t, err)
		wantStatus(t, off.StatusCode(), 200, off.Body)
		res, body = e.mintCall(t, "GET", "/api/tiles/token/"+private.Id.String()+"/", "", append([]string{"X-Api-Key", key.Token}, browser...)...)
		wantProblem(t, res, body, 403)
		if r := res.Header.Get("X-Tilegate-Reason"); r != "key_disabled" {
			t.Errorf("disabled key: reason %q", r)
		}

		// Usage: each token minted with the key counts for the key and dataset.
		must(t, e.Server.FlushUsage(ctx))
		u, err := e.c.GetAPIKeyUsageWithResponse(ctx, key.Id, nil)
		must(t, err)
		wantStatus(t, u.StatusCode(), 200, u.Body)
		var served, refused int64
		for _, it := range u.JSON200.Items {
			served += it.Datasets[private.Id.String()]
			for _, n := range it.Refused {
				refused += n
			}
		}
		// Three batches and one single call minted the private dataset with the key.
		if served != 4 || refused == 0 {
			t.Errorf("usage: %d tokens for the private dataset (want 4), %d refusals: %s", served, refused, u.Body)
		}
	})
}

// TestAPIKeyMintingRateLimit: a key's rate limit counts each token call once (429 past it).
func TestAPIKeyMintingRateLimit(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		kr, err := e.c.CreateAPIKeyWithResponse(context.Background(), gen.APIKeySettings{
			RateLimit: nullable.NewNullableWithValue(gen.RateLimit{RequestsPerSecond: 1, Burst: 1})})
		must(t, err)
		wantStatus(t, kr.StatusCode(), 200, kr.Body)
		res, body := e.mintCall(t, "POST", "/api/tiles/tokens/", idsBody(d.Id), "X-Api-Key", kr.JSON200.Token)
		wantStatus(t, res.StatusCode, 200, body)
		res, body = e.mintCall(t, "POST", "/api/tiles/tokens/", idsBody(d.Id), "X-Api-Key", kr.JSON200.Token)
		wantProblem(t, res, body, 429)
		if res.Header.Get("X-Tilegate-Reason") != "rate_limited" || res.Header.Get("Retry-After") == "" {
			t.Errorf("429 headers: %v", res.Header)
		}
	})
}

// TestTokenEndpointsCORS: the browser's preflight for a key call is allowed, never for
// Authorization; answers to calls with Authorization carry no CORS allowance.
func TestTokenEndpointsCORS(t *testing.T) {
	db := testenv.Databases()[0]
	e := tlStart(t, db, server.Config{})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
	for _, p := range []string{"/api/tiles/tokens/", "/api/tiles/token/" + d.Id.String() + "/"} {
		res, body := e.mintCall(t, "OPTIONS", p, "", "Origin", "https://maps.example.com",
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,x-api-key")
		wantStatus(t, res.StatusCode, 204, body)
		allowed := strings.ToLower(res.Header.Get("Access-Control-Allow-Headers"))
		if res.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(allowed, "x-api-key") ||
			!strings.Contains(allowed, "content-type") || strings.Contains(allowed, "authorization") {
			t.Errorf("%s preflight: %v", p, res.Header)
		}
	}
	r, err := e.c.GetTileTokenWithResponse(context.Background(), d.Id, func(_ context.Context, r *http.Request) error {
		r.Header.Set("Origin", "https://maps.example.com")
		return nil
	})
	must(t, err)
	wantStatus(t, r.StatusCode(), 200, r.Body)
	if r.HTTPResponse.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("service token call got CORS: %v", r.HTTPResponse.Header)
	}
}
