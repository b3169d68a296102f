package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

func TestAPIKeyLifecycle(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()

		created, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{
			Origins:   nullable.NewNullableWithValue([]string{"Example.COM.", "*.Maps.example.org", "http://LocalHost:3000", "?"}),
			UserAgent: nullable.NewNullableWithValue("MyApp/1.0"),
		})
		must(t, err)
		wantStatus(t, created.StatusCode(), 200, created.Body)
		k := created.JSON200
		if k.Name == "" || !strings.Contains(k.Name, "-") {
			t.Errorf("generated name %q is not readable", k.Name)
		}
		if len(k.Token) < 22 {
			t.Errorf("key token %q is shorter than 128 bits", k.Token)
		}
		wantJSON(t, k.Origins, []string{"example.com", "*.maps.example.org", "http://localhost:3000", "?"})
		if k.Description.IsSpecified() && !k.Description.IsNull() {
			t.Errorf("description = %v, want null", k.Description)
		}
		if !k.Created.Equal(k.Changed) {
			t.Errorf("new key: created %v != changed %v", k.Created, k.Changed)
		}

		got, err := c.GetAPIKeyWithResponse(ctx, k.Id)
		must(t, err)
		wantStatus(t, got.StatusCode(), 200, got.Body)
		if got.JSON200.Token != k.Token || !got.JSON200.Created.Equal(k.Created) {
			t.Errorf("get returned %+v, created %+v", got.JSON200, k)
		}

		// Absent fields stay, null clears, name: null regenerates.
		time.Sleep(2 * time.Millisecond)
		changed, err := c.ChangeAPIKeySettingsWithResponse(ctx, k.Id, gen.APIKeySettings{
			Description: nullable.NewNullableWithValue("production map"),
			UserAgent:   nullable.NewNullNullable[string](),
		})
		must(t, err)
		wantStatus(t, changed.StatusCode(), 200, changed.Body)
		ck := changed.JSON200
		if ck.Name != k.Name || ck.Token != k.Token {
			t.Errorf("name/token changed: %q %q", ck.Name, ck.Token)
		}
		wantJSON(t, ck.Origins, k.Origins)
		if v, _ := ck.Description.Get(); v != "production map" {
			t.Errorf("description = %v", ck.Description)
		}
		if !ck.UserAgent.IsNull() {
			t.Errorf("user_agent = %v, want null", ck.UserAgent)
		}
		if !ck.Created.Equal(k.Created) || !ck.Changed.After(k.Changed) {
			t.Errorf("created %v→%v changed %v→%v: created must stay, changed must move", k.Created, ck.Created, k.Changed, ck.Changed)
		}

		renamed, err := c.ChangeAPIKeySettingsWithResponse(ctx, k.Id, gen.APIKeySettings{
			Name: nullable.NewNullNullable[string](), Origins: nullable.NewNullNullable[[]string](),
		})
		must(t, err)
		wantStatus(t, renamed.StatusCode(), 200, renamed.Body)
		if renamed.JSON200.Name == k.Name || renamed.JSON200.Name == "" {
			t.Errorf("name: null kept %q", renamed.JSON200.Name)
		}
		wantJSON(t, renamed.JSON200.Origins, []string{})

		named, err := c.ChangeAPIKeySettingsWithResponse(ctx, k.Id, gen.APIKeySettings{Name: nullable.NewNullableWithValue("web map")})
		must(t, err)
		if named.JSON200 == nil || named.JSON200.Name != "web map" {
			t.Fatalf("rename: %d %s", named.StatusCode(), named.Body)
		}

		del, err := c.DeleteAPIKeyWithResponse(ctx, k.Id)
		must(t, err)
		wantStatus(t, del.StatusCode(), 200, del.Body)
		for _, status := range []int{
			mustStatus(c.GetAPIKeyWithResponse(ctx, k.Id)),
			mustStatus(c.DeleteAPIKeyWithResponse(ctx, k.Id)),
			mustStatus(c.ChangeAPIKeySettingsWithResponse(ctx, k.Id, gen.APIKeySettings{})),
		} {
			if status != 404 {
				t.Errorf("deleted key answered %d, want 404", status)
			}
		}
	})
}

func TestAPIKeyTokensAndNamesAreUnique(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		c := env.Client(t, env.NewAccount(t).Token)
		tokens, names := map[string]bool{}, map[string]bool{}
		for range 30 {
			r, err := c.CreateAPIKeyWithResponse(context.Background(), gen.APIKeySettings{})
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			if tokens[r.JSON200.Token] || names[r.JSON200.Name] {
				t.Fatalf("duplicate token or name: %+v", r.JSON200)
			}
			tokens[r.JSON200.Token], names[r.JSON200.Name] = true, true
		}
	})
}

// Every operation on another account's key is 404, and changes nothing.
func TestAPIKeysAreIsolatedBetweenAccounts(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		a, b := env.NewAccount(t), env.NewAccount(t)
		ca, cb := env.Client(t, a.Token), env.Client(t, b.Token)
		ctx := context.Background()
		r, err := ca.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{Name: nullable.NewNullableWithValue("a's key")})
		must(t, err)
		id := r.JSON200.Id

		checks := map[string]int{
			"get":    mustStatus(cb.GetAPIKeyWithResponse(ctx, id)),
			"change": mustStatus(cb.ChangeAPIKeySettingsWithResponse(ctx, id, gen.APIKeySettings{Name: nullable.NewNullableWithValue("stolen")})),
			"delete": mustStatus(cb.DeleteAPIKeyWithResponse(ctx, id)),
		}
		for op, status := range checks {
			if status != 404 {
				t.Errorf("B %s on A's key: %d, want 404", op, status)
			}
		}
		list, err := cb.ListAPIKeysWithResponse(ctx, nil)
		must(t, err)
		if list.JSON200.TotalCount != 0 || len(list.JSON200.Items) != 0 {
			t.Errorf("B sees %d keys of A", list.JSON200.TotalCount)
		}
		still, err := ca.GetAPIKeyWithResponse(ctx, id)
		must(t, err)
		if still.StatusCode() != 200 || still.JSON200.Name != "a's key" {
			t.Errorf("A's key after B's attempts: %d %s", still.StatusCode(), still.Body)
		}
	})
}

func TestAuthentication(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		hc := env.HTTPClient(t)
		garbled := corrupt(acct.Token, len(acct.Token)-1)
		unknown := env.NewAccount(t).Token
		if _, err := db.Store.RevokePrincipalTokens(context.Background(), uuid.New()); err == nil {
			t.Fatal("revoking an unknown principal succeeded")
		}
		cases := []struct {
			name, header string
			want         int
		}{
			{"none", "", 401},
			{"bearer", "Bearer " + acct.Token, 200},
			{"maptiler token scheme", "Token " + acct.Token, 200},
			{"lower-case scheme", "bearer " + acct.Token, 200},
			{"basic scheme", "Basic " + acct.Token, 401},
			{"no scheme", acct.Token, 401},
			{"bad checksum", "Bearer " + garbled, 401},
			{"garbage", "Bearer hello", 401},
			{"other account's valid token", "Bearer " + unknown, 200},
		}
		var bodies []string
		for _, tc := range cases {
			req, _ := http.NewRequest("GET", env.URL+"/v1/api_keys", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			res, err := hc.Do(req)
			must(t, err)
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Errorf("%s: %d, want %d (%s)", tc.name, res.StatusCode, tc.want, body)
			}
			if tc.want == 401 {
				bodies = append(bodies, string(body))
				if res.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
				}
			}
		}
		for _, b := range bodies[1:] {
			if b != bodies[0] {
				t.Errorf("401 bodies differ: %q vs %q", b, bodies[0])
			}
		}
	})
}

func TestRevokedTokenIsRefusedAfterCacheTTL(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{AuthCacheTTL: 200 * time.Millisecond})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()
		if s := mustStatus(c.ListAPIKeysWithResponse(ctx, nil)); s != 200 {
			t.Fatalf("before revoke: %d", s)
		}
		n, err := db.Store.RevokePrincipalTokens(ctx, acct.PrincipalID)
		must(t, err)
		if n != 1 {
			t.Fatalf("revoked %d tokens, want 1", n)
		}
		time.Sleep(300 * time.Millisecond)
		if s := mustStatus(c.ListAPIKeysWithResponse(ctx, nil)); s != 401 {
			t.Fatalf("revoked token after the TTL: %d, want 401", s)
		}
	})
}

func TestViewerCannotWrite(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		admin := env.Client(t, acct.Token)
		ctx := context.Background()
		k, err := admin.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})
		must(t, err)
		editor := env.Client(t, env.NewPrincipal(t, acct.ID, "editor").Token)
		viewer := env.Client(t, env.NewPrincipal(t, acct.ID, "viewer").Token)

		for name, s := range map[string]int{
			"viewer list":   mustStatus(viewer.ListAPIKeysWithResponse(ctx, nil)),
			"viewer get":    mustStatus(viewer.GetAPIKeyWithResponse(ctx, k.JSON200.Id)),
			"editor create": mustStatus(editor.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})),
			"editor change": mustStatus(editor.ChangeAPIKeySettingsWithResponse(ctx, k.JSON200.Id, gen.APIKeySettings{})),
		} {
			if s != 200 {
				t.Errorf("%s: %d, want 200", name, s)
			}
		}
		for name, s := range map[string]int{
			"viewer create": mustStatus(viewer.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})),
			"viewer change": mustStatus(viewer.ChangeAPIKeySettingsWithResponse(ctx, k.JSON200.Id, gen.APIKeySettings{Name: nullable.NewNullableWithValue("x")})),
			"viewer delete": mustStatus(viewer.DeleteAPIKeyWithResponse(ctx, k.JSON200.Id)),
		} {
			if s != 403 {
				t.Errorf("%s: %d, want 403", name, s)
			}
		}
		list, err := admin.ListAPIKeysWithResponse(ctx, nil)
		must(t, err)
		if list.JSON200.TotalCount != 2 {
			t.Errorf("after the viewer's attempts there are %d keys, want 2", list.JSON200.TotalCount)
		}
	})
}

// Walk every page while keys are inserted and deleted concurrently: each key that existed for
// the whole walk appears exactly once.
func TestPaginationUnderConcurrentWrites(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()
		stable := map[uuid.UUID]bool{}
		var doomed []uuid.UUID
		for i := range 60 {
			r, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})
			must(t, err)
			if i%3 == 0 {
				doomed = append(doomed, r.JSON200.Id)
			} else {
				stable[r.JSON200.Id] = true
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := env.Client(t, acct.Token)
			for i := 0; i < 40; i++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				if i < len(doomed) {
					_, _ = w.DeleteAPIKeyWithResponse(ctx, doomed[i])
				}
				_, _ = w.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})
			}
		}()
		seen := map[uuid.UUID]int{}
		limit := 10
		var cursor *string
		pages := 0
		for {
			r, err := c.ListAPIKeysWithResponse(ctx, &gen.ListAPIKeysParams{Cursor: cursor, Limit: &limit})
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			pages++
			for _, k := range r.JSON200.Items {
				seen[k.Id]++
			}
			next, err := r.JSON200.Cursor.Get()
			if err != nil || r.JSON200.Cursor.IsNull() {
				break
			}
			cursor = &next
			time.Sleep(5 * time.Millisecond)
			if pages > 100 {
				t.Fatal("pagination does not end")
			}
		}
		close(stop)
		wg.Wait()
		for id := range stable {
			if seen[id] != 1 {
				t.Errorf("stable key %s seen %d times", id, seen[id])
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("key %s seen %d times", id, n)
			}
		}
	})
}

func TestBadInputChangesNothing(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()
		existing, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{Name: nullable.NewNullableWithValue("keep")})
		must(t, err)
		id := existing.JSON200.Id.String()
		hc := env.HTTPClient(t)

		cases := []struct {
			name, method, path, body string
			status                   int
			loc                      []any
			typ                      string
		}{
			{"malformed json", "POST", "/v1/api_keys", `{"name":`, 422, []any{"body", float64(8)}, "json_invalid"},
			{"wrong type", "POST", "/v1/api_keys", `{"name":5}`, 422, []any{"body", "name"}, "string_type"},
			{"unknown field", "POST", "/v1/api_keys", `{"nmae":"x"}`, 422, []any{"body", "nmae"}, "extra_forbidden"},
			{"not an object", "POST", "/v1/api_keys", `[1]`, 422, []any{"body"}, "model_attributes_type"},
			{"origins not a list", "POST", "/v1/api_keys", `{"origins":"example.com"}`, 422, []any{"body", "origins"}, "list_type"},
			{"origin entry wrong type", "POST", "/v1/api_keys", `{"origins":["a.com",3]}`, 422, []any{"body", "origins", float64(1)}, "string_type"},
			{"bad origin path", "POST", "/v1/api_keys", `{"origins":["a.com","b.com","example.com/x"]}`, 422, []any{"body", "origins", float64(2)}, "value_error"},
			{"bad origin wildcard", "POST", "/v1/api_keys", `{"origins":["example.*"]}`, 422, []any{"body", "origins", float64(0)}, "value_error"},
			{"empty origin", "POST", "/v1/api_keys", `{"origins":[""]}`, 422, []any{"body", "origins", float64(0)}, "string_too_short"},
			{"overlong origin", "POST", "/v1/api_keys", `{"origins":["` + strings.Repeat("a", 254) + `"]}`, 422, []any{"body", "origins", float64(0)}, "string_too_long"},
			{"empty name", "POST", "/v1/api_keys", `{"name":""}`, 422, []any{"body", "name"}, "string_too_short"},
			{"control char user agent", "POST", "/v1/api_keys", `{"user_agent":"a\u0001b"}`, 422, []any{"body", "user_agent"}, "value_error"},
			{"change unknown field", "POST", "/v1/api_keys/" + id + "/change_settings", `{"Name":"x"}`, 422, []any{"body", "Name"}, "extra_forbidden"},
			{"change bad origin", "POST", "/v1/api_keys/" + id + "/change_settings", `{"name":"changed","origins":["http://a.com/path"]}`, 422, []any{"body", "origins", float64(0)}, "value_error"},
			{"bad uuid", "GET", "/v1/api_keys/not-a-uuid", "", 422, []any{"path", "key_id"}, "uuid_parsing"},
			{"limit too small", "GET", "/v1/api_keys?limit=9", "", 422, []any{"query", "limit"}, "greater_than_equal"},
			{"limit too large", "GET", "/v1/api_keys?limit=101", "", 422, []any{"query", "limit"}, "less_than_equal"},
			{"limit not a number", "GET", "/v1/api_keys?limit=ten", "", 422, []any{"query", "limit"}, "int_parsing"},
			{"bad cursor", "GET", "/v1/api_keys?cursor=bm90LWEtY3Vyc29y", "", 422, []any{"query", "cursor"}, "value_error"},
			{"cursor with bad characters", "GET", "/v1/api_keys?cursor=%25%25", "", 422, []any{"query", "cursor"}, "value_error"},
			// (POST /v1/api_keys without a body creates a key with defaults: TestCreateAPIKeyWithEmptyBody;
			// change_settings without one changes nothing: TestChangeSettingsWithoutBody.)
			{"wrong content type", "POST", "/v1/api_keys", "text/plain:{}", 422, []any{"header", "Content-Type"}, "value_error"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				req, _ := http.NewRequest(tc.method, env.URL+tc.path, body)
				req.Header.Set("Authorization", "Bearer "+acct.Token)
				if ct, b, ok := strings.Cut(tc.body, ":{"); ok && ct == "text/plain" {
					req, _ = http.NewRequest(tc.method, env.URL+tc.path, strings.NewReader("{"+b))
					req.Header.Set("Authorization", "Bearer "+acct.Token)
					req.Header.Set("Content-Type", ct)
				} else if tc.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				res, err := hc.Do(req)
				must(t, err)
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, raw)
				}
				var v struct {
					Detail []struct {
						Loc   []any          `json:"loc"`
						Type  string         `json:"type"`
						Msg   string         `json:"msg"`
						Input *any           `json:"input"`
						Ctx   map[string]any `json:"ctx"`
					} `json:"detail"`
				}
				if err := json.Unmarshal(raw, &v); err != nil || len(v.Detail) != 1 {
					t.Fatalf("body %s is not one FastAPI error", raw)
				}
				d := v.Detail[0]
				if fmt.Sprint(d.Loc) != fmt.Sprint(tc.loc) || d.Type != tc.typ || d.Msg == "" {
					t.Errorf("got loc %v type %s, want loc %v type %s (%s)", d.Loc, d.Type, tc.loc, tc.typ, raw)
				}
				if !bytes.Contains(raw, []byte(`"input":`)) {
					t.Errorf("no input in %s", raw)
				}
			})
		}
		list, err := c.ListAPIKeysWithResponse(ctx, nil)
		must(t, err)
		if list.JSON200.TotalCount != 1 || list.JSON200.Items[0].Name != "keep" || !list.JSON200.Items[0].Changed.Equal(existing.JSON200.Changed) {
			t.Errorf("bad input changed the keys: %s", list.Body)
		}
	})
}

func TestBodyLimitAndRoutesOutsideTheSpec(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		hc := env.HTTPClient(t)
		big := `{"description":"` + strings.Repeat("x", 1<<20) + `"}`
		req, _ := http.NewRequest("POST", env.URL+"/v1/api_keys", strings.NewReader(big))
		req.Header.Set("Authorization", "Bearer "+acct.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		must(t, err)
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Errorf("1 MiB body: %d, want 413", res.StatusCode)
		}
		for path, want := range map[string]int{"/nope": 404, "/v1/api_keys/x/y/z": 404} {
			res, err := hc.Get(env.URL + path)
			must(t, err)
			res.Body.Close()
			if res.StatusCode != want {
				t.Errorf("%s: %d, want %d", path, res.StatusCode, want)
			}
		}
		req, _ = http.NewRequest("PATCH", env.URL+"/v1/api_keys", nil)
		res, err = hc.Do(req)
		must(t, err)
		res.Body.Close()
		if res.StatusCode != 405 {
			t.Errorf("PATCH /v1/api_keys: %d, want 405", res.StatusCode)
		}
		list, err := env.Client(t, acct.Token).ListAPIKeysWithResponse(context.Background(), nil)
		must(t, err)
		if list.JSON200.TotalCount != 0 {
			t.Errorf("oversized body created a key")
		}
	})
}

func TestOperationalEndpoints(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		c := env.Client(t, "")
		ctx := context.Background()
		for name, s := range map[string]int{
			"healthz":      mustStatus(c.HealthzWithResponse(ctx)),
			"readyz":       mustStatus(c.ReadyzWithResponse(ctx)),
			"openapi.json": mustStatus(c.OpenapiJSONWithResponse(ctx)),
		} {
			if s != 200 {
				t.Errorf("%s: %d", name, s)
			}
		}
		y, err := c.OpenapiYAMLWithResponse(ctx)
		must(t, err)
		if !bytes.HasPrefix(y.Body, []byte("openapi: 3.0.3")) {
			t.Errorf("/openapi.yaml does not serve the contract: %.40s", y.Body)
		}
		res, err := http.Get(env.URL + "/docs")
		must(t, err)
		page, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.Contains(page, []byte("swagger")) || !bytes.Contains(docsScript(t, env.URL), []byte("/openapi.json")) {
			t.Errorf("/docs: %d %.200s", res.StatusCode, page)
		}
		if bytes.Contains(page, []byte("cdn")) || bytes.Contains(page, []byte("unpkg")) {
			t.Errorf("/docs loads assets from a CDN")
		}
	})
}

// corrupt changes the character at i to a different one of the same alphabet class, so the
// result always differs from s.
func corrupt(s string, i int) string {
	c := byte('a')
	if s[i] == 'a' {
		c = 'b'
	}
	return s[:i] + string(c) + s[i+1:]
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantStatus(t testing.TB, got, want int, body []byte) {
	t.Helper()
	if got != want {
		t.Fatalf("status %d, want %d: %s", got, want, body)
	}
}

func wantJSON(t testing.TB, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("got %s, want %s", g, w)
	}
}

type statusCoder interface{ StatusCode() int }

func mustStatus[R statusCoder](r R, err error) int {
	if err != nil {
		panic(err)
	}
	return r.StatusCode()
}
