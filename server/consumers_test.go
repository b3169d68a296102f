package server_test

// Tests for issue #8 "Contract for every consumer": what independent tools (byte-decoding clients,
// strict JSON Schema validators, Swagger UI, openapi-typescript) found wrong in the contract or in
// what the server does against it.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// A cursor is `format: byte`: standard, padded base64 that a strict decoder accepts. The
// unpadded base64url form handed out before is still read, and walks the same pages.
func TestCursorIsStandardBase64(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		c := env.Client(t, env.NewAccount(t).Token)
		ctx := context.Background()
		for range 23 {
			_, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})
			must(t, err)
		}
		limit := 10
		first, err := c.ListAPIKeysWithResponse(ctx, &gen.ListAPIKeysParams{Limit: &limit})
		must(t, err)
		wantStatus(t, first.StatusCode(), 200, first.Body)
		cur := mustGet(first.JSON200.Cursor)
		raw, err := base64.StdEncoding.Strict().DecodeString(cur)
		if err != nil {
			t.Fatalf("cursor %q is not standard padded base64: %v", cur, err)
		}
		if len(cur)%4 != 0 {
			t.Errorf("cursor %q is not padded", cur)
		}
		seen := map[string]bool{}
		for _, k := range first.JSON200.Items {
			seen[k.Id.String()] = true
		}
		// The padded cursor, then the legacy form of the same position: same second page.
		legacy := base64.RawURLEncoding.EncodeToString(raw)
		var pages [2][]string
		for i, cursor := range []string{cur, legacy} {
			p, err := c.ListAPIKeysWithResponse(ctx, &gen.ListAPIKeysParams{Limit: &limit, Cursor: &cursor})
			must(t, err)
			wantStatus(t, p.StatusCode(), 200, p.Body)
			for _, k := range p.JSON200.Items {
				pages[i] = append(pages[i], k.Id.String())
			}
		}
		wantJSON(t, pages[1], pages[0])
		if len(pages[0]) != 10 || seen[pages[0][0]] {
			t.Errorf("second page %v overlaps the first or is short", pages[0])
		}
		// A '+' sent unescaped arrives as a space; it is taken back rather than refused.
		if strings.Contains(cur, "+") {
			res, err := env.HTTPClient(t).Do(authed(t, env, "GET", "/v1/api_keys?limit=10&cursor="+cur, ""))
			must(t, err)
			res.Body.Close()
			wantStatus(t, res.StatusCode, 200, nil)
		}
		bad := "/v1/api_keys?cursor=" + url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("nonsense")))
		res, err := env.HTTPClient(t).Do(authed(t, env, "GET", bad, ""))
		must(t, err)
		res.Body.Close()
		wantStatus(t, res.StatusCode, 422, nil)
	})
}

func authed(t testing.TB, env *testenv.Env, method, path, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, env.URL+path, rd)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+env.NewAccount(t).Token)
	return req
}

// Every schema marked nullable says its type: OAS 3.0.3 gives `nullable` no effect without one,
// so strict validators refused the null the server sends for bounds and center.
func TestNullableSchemasDeclareAType(t *testing.T) {
	spec, err := server.LoadSpec()
	must(t, err)
	walkSchemas(spec, func(where string, s *openapi3.Schema) {
		composed := len(s.AllOf)+len(s.AnyOf)+len(s.OneOf) > 0
		if s.Nullable && (s.Type == nil || len(*s.Type) == 0) && composed {
			t.Errorf("%s: nullable beside allOf/anyOf/oneOf without a type", where)
		}
	})
}

// walkSchemas visits every component schema and its properties and items (inline ones included).
func walkSchemas(spec *openapi3.T, fn func(string, *openapi3.Schema)) {
	var visit func(string, *openapi3.SchemaRef, int)
	visit = func(where string, ref *openapi3.SchemaRef, depth int) {
		if ref == nil || ref.Value == nil || depth > 8 {
			return
		}
		if ref.Ref != "" && depth > 0 {
			return // visited as a component
		}
		fn(where, ref.Value)
		for name, p := range ref.Value.Properties {
			visit(where+"."+name, p, depth+1)
		}
		visit(where+"[]", ref.Value.Items, depth+1)
	}
	for name, s := range spec.Components.Schemas {
		visit(name, s, 0)
	}
}

// The served document has no junk keys: YAML flow mappings with commas inside descriptions had
// split into keys with null values ("400: z" in Swagger UI). Examples are data, where null is a
// value (a nullable field's), and are checked against their schemas by the linters instead.
func TestServedContractHasNoNullKeys(t *testing.T) {
	db := testenv.Databases()[0]
	env := testenv.Start(t, db, server.Config{})
	res, err := env.HTTPClient(t).Get(env.URL + "/openapi.json")
	must(t, err)
	defer res.Body.Close()
	var doc any
	must(t, json.NewDecoder(res.Body).Decode(&doc))
	var walk func(string, any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "example" || k == "examples" {
					continue // sample answers: null is a real value of a nullable field there
				}
				if x == nil {
					t.Errorf("%s/%s is null (a key split out of a flow mapping?)", path, k)
				}
				walk(path+"/"+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		}
	}
	walk("", doc)
	paths := doc.(map[string]any)["paths"].(map[string]any)
	head := paths["/api/tiles/{dataset_id}/{z}/{x}/{y}.{format}"].(map[string]any)["head"].(map[string]any)
	for code, r := range head["responses"].(map[string]any) {
		for k := range r.(map[string]any) {
			if k != "description" && k != "headers" && k != "content" {
				t.Errorf("headTile response %s has key %q", code, k)
			}
		}
	}
}

// A key as fetched can be posted back with its changes: its read-only fields are accepted and
// ignored; a misspelt name is still refused.
func TestAPIKeyReadModifyWrite(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		hc := env.HTTPClient(t)
		ctx := context.Background()
		created, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{Origins: nullable.NewNullableWithValue([]string{"example.com"})})
		must(t, err)
		wantStatus(t, created.StatusCode(), 200, created.Body)
		k := created.JSON200

		fetched, err := c.GetAPIKeyWithResponse(ctx, k.Id)
		must(t, err)
		var doc map[string]any
		must(t, json.Unmarshal(fetched.Body, &doc))
		for _, f := range []string{"id", "token", "created", "changed", "last_used"} {
			if _, ok := doc[f]; !ok {
				t.Fatalf("fetched key lacks %q: %s", f, fetched.Body)
			}
		}
		doc["name"] = "renamed"
		doc["token"] = "not-the-token" // ignored, never stored
		body, _ := json.Marshal(doc)
		doJSON(t, hc, env.URL, acct.Token, "POST", "/v1/api_keys/"+k.Id.String()+"/change_settings", string(body), 200)
		got, err := c.GetAPIKeyWithResponse(ctx, k.Id)
		must(t, err)
		if g := got.JSON200; g.Name != "renamed" || g.Token != k.Token || g.Id != k.Id || !g.Created.Equal(k.Created) {
			t.Errorf("after posting the key back: %+v (was %+v)", g, k)
		}
		wantJSON(t, got.JSON200.Origins, []string{"example.com"})

		items := doJSON(t, hc, env.URL, acct.Token, "POST", "/v1/api_keys/"+k.Id.String()+"/change_settings", `{"nmae":"typo"}`, 422)
		if items[0].Type != "extra_forbidden" || len(items[0].Loc) != 2 || items[0].Loc[1] != "nmae" {
			t.Errorf("typo: %+v, want extra_forbidden at [body, nmae]", items)
		}
		// The same rule holds on create.
		doJSON(t, hc, env.URL, acct.Token, "POST", "/v1/api_keys", string(body), 200)
	})
}

// The rule covers every read-only field of APIKey, present and future: each is declared in
// APIKeySettings (without readOnly, which kin-openapi refuses in requests).
func TestAPIKeyReadOnlyFieldsAreAcceptedInSettings(t *testing.T) {
	spec, err := server.LoadSpec()
	must(t, err)
	key := spec.Components.Schemas["APIKey"].Value
	settings := spec.Components.Schemas["APIKeySettings"].Value
	n := 0
	for name, p := range key.Properties {
		if !p.Value.ReadOnly {
			continue
		}
		n++
		sp, ok := settings.Properties[name]
		if !ok {
			t.Errorf("APIKey.%s is read-only but APIKeySettings does not accept it", name)
			continue
		}
		if sp.Value.ReadOnly {
			t.Errorf("APIKeySettings.%s is readOnly: kin-openapi refuses it in requests", name)
		}
		if !sp.Value.Type.Is((*p.Value.Type)[0]) || sp.Value.Format != p.Value.Format || sp.Value.Nullable != p.Value.Nullable {
			t.Errorf("APIKeySettings.%s is not declared as APIKey.%s is", name, name)
		}
	}
	if n < 5 {
		t.Errorf("APIKey marks %d fields read-only, want id, token, created, changed, last_used", n)
	}
	if settings.AdditionalProperties.Has == nil || *settings.AdditionalProperties.Has {
		t.Errorf("APIKeySettings must still refuse unknown names")
	}
}

// POST /v1/api_keys with no body, or an empty one, creates a key with every default.
func TestCreateAPIKeyWithEmptyBody(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		token := env.NewAccount(t).Token
		hc := env.HTTPClient(t)
		for _, ct := range []string{"", "application/json"} {
			req, err := http.NewRequest("POST", env.URL+"/v1/api_keys", http.NoBody)
			must(t, err)
			req.Header.Set("Authorization", "Bearer "+token)
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			res, err := hc.Do(req)
			must(t, err)
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			wantStatus(t, res.StatusCode, 200, raw)
			var k gen.APIKey
			must(t, json.Unmarshal(raw, &k))
			if k.Name == "" || len(k.Origins) != 0 || !k.UserAgent.IsNull() {
				t.Errorf("content-type %q: key %+v is not all defaults", ct, k)
			}
		}
	})
}

// HEAD is answered wherever GET is (uptime checkers probe with HEAD), with GET's status and
// headers and no body.
func TestHeadWhereverGet(t *testing.T) {
	db := testenv.Databases()[0]
	env := testenv.Start(t, db, server.Config{})
	validated := env.HTTPClient(t)
	for _, p := range []string{"/healthz", "/readyz", "/openapi.yaml", "/openapi.json", "/docs", "/v1/api_keys"} {
		hc := validated
		if p == "/docs" || p == "/v1/api_keys" {
			hc = http.DefaultClient // Swagger UI is outside the contract; HEAD on management is undeclared
		}
		req, err := http.NewRequest("HEAD", env.URL+p, nil)
		must(t, err)
		req.Header.Set("Authorization", "Token "+env.NewAccount(t).Token)
		res, err := hc.Do(req)
		must(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		get, err := http.NewRequest("GET", env.URL+p, nil)
		must(t, err)
		get.Header = req.Header
		gres, err := http.DefaultClient.Do(get)
		must(t, err)
		gres.Body.Close()
		if res.StatusCode != 200 || len(body) != 0 || res.Header.Get("Content-Type") != gres.Header.Get("Content-Type") {
			t.Errorf("HEAD %s: %d, %d body bytes, Content-Type %q (GET: %q)", p, res.StatusCode, len(body),
				res.Header.Get("Content-Type"), gres.Header.Get("Content-Type"))
		}
	}
}

// The spec says what the server accepts: `Authorization: Token …` is a declared scheme beside
// bearer, /openapi.yaml is YAML text, and the tile token's exp is an integer wherever it appears.
func TestContractDeclaresWhatTheServerAccepts(t *testing.T) {
	spec, err := server.LoadSpec()
	must(t, err)
	scheme := spec.Components.SecuritySchemes["ServiceTokenHeader"]
	if scheme == nil || scheme.Value.Type != "apiKey" || scheme.Value.In != "header" || scheme.Value.Name != "Authorization" {
		t.Errorf("no apiKey scheme for the Authorization: Token form: %+v", scheme)
	}
	alternatives := map[string]bool{}
	for _, req := range spec.Security {
		for name := range req {
			alternatives[name] = true
		}
	}
	if !alternatives["ServiceToken"] || !alternatives["ServiceTokenHeader"] {
		t.Errorf("global security %v must offer bearer and the Token header", spec.Security)
	}
	yamlSchema := spec.Paths.Value("/openapi.yaml").Get.Responses.Status(200).Value.Content.Get("application/yaml").Schema.Value
	if !yamlSchema.Type.Is(openapi3.TypeString) {
		t.Errorf("/openapi.yaml is declared as %v, want text (string)", yamlSchema.Type)
	}
	exp := spec.Components.Parameters["Exp"].Value.Schema.Value
	token := spec.Components.Schemas["VectorTileToken"].Value.Properties["exp"].Value
	if !exp.Type.Is(openapi3.TypeInteger) || !token.Type.Is(openapi3.TypeInteger) {
		t.Errorf("exp: query %v, token %v; want integer both", exp.Type, token.Type)
	}

	// And the server does it: the Token form authenticates, /openapi.yaml validates as text.
	db := testenv.Databases()[0]
	env := testenv.Start(t, db, server.Config{})
	req, err := http.NewRequest("GET", env.URL+"/v1/api_keys", nil)
	must(t, err)
	req.Header.Set("Authorization", "Token "+env.NewAccount(t).Token)
	res, err := env.HTTPClient(t).Do(req)
	must(t, err)
	res.Body.Close()
	wantStatus(t, res.StatusCode, 200, nil)
	res, err = env.HTTPClient(t).Get(env.URL + "/openapi.yaml")
	must(t, err)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/yaml") {
		t.Errorf("/openapi.yaml: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// A 422's input is any JSON value, nulls included at any depth the contract describes, and every
// tool reads that the same way (typed anyOf branches, no `nullable` without a type).
func TestValidationInputIsAnyJSON(t *testing.T) {
	db := testenv.Databases()[0]
	env := testenv.Start(t, db, server.Config{})
	token := env.NewAccount(t).Token
	for _, body := range []string{`{"extra":null}`, `{"extra":[null,[null],{"a":[null]}]}`, `{"extra":{"a":{"b":null}}}`, `{"extra":[1,"x",true,[[1]]]}`} {
		items := doJSON(t, env.HTTPClient(t), env.URL, token, "POST", "/v1/api_keys", body, 422)
		if items[0].Type != "extra_forbidden" {
			t.Errorf("%s: %+v", body, items)
		}
	}
}
