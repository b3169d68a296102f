package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// wantProblem checks an error answer as GeoLens's Python SDK reads it (ProblemDetail.from_dict
// takes title and status, a KeyError when absent) and as the seed clients read it (detail), and
// returns detail.
func wantProblem(t testing.TB, res *http.Response, body []byte, status int) any {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", res.StatusCode, status, body)
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, body)
	}
	title, ok := p["title"].(string)
	if !ok || title != http.StatusText(status) {
		t.Errorf("title = %#v, want %q", p["title"], http.StatusText(status))
	}
	if s, ok := p["status"].(float64); !ok || int(s) != status {
		t.Errorf("status field = %#v, want %d", p["status"], status)
	}
	if p["type"] != "about:blank" {
		t.Errorf("type = %#v, want about:blank", p["type"])
	}
	d, ok := p["detail"]
	if !ok || d == nil || d == "" {
		t.Errorf("no detail: %s", body)
	}
	return d
}

// send makes one request through the validating transport (every answer checked against
// openapi.yaml, problem+json included) and returns the answer and its body.
func send(t testing.TB, hc *http.Client, method, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	must(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := hc.Do(req)
	must(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	must(t, err)
	return res, raw
}

// TestProblemDetails: every kind of error answer (the contract's 401/403/404/405/409/422, a tile
// refusal, TileJSON's refusal, a path outside the spec) carries the RFC 9457 fields with the
// detail as before, labelled application/problem+json only when Accept asks for it.
func TestProblemDetails(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		viewer := env.NewPrincipal(t, acct.ID, "viewer")
		c := env.Client(t, acct.Token)
		ctx := context.Background()
		private := createDataset(t, c, gen.DatasetCreate{Name: "p", Kind: gen.DatasetKindVector})
		other := env.NewAccount(t)
		res, err := c.CreateGrantWithResponse(ctx, private.Id, gen.GrantCreate{AccountId: &other.ID})
		must(t, err)
		wantStatus(t, res.StatusCode(), 201, res.Body)
		hc := env.HTTPClient(t)
		bearer := "Bearer " + acct.Token
		cases := []struct {
			name, method, path, body string
			header                   []string
			status                   int
			detail                   string // "" when the detail is the 422 list
		}{
			{"missing token", "GET", "/v1/api_keys", "", nil, 401, "Missing or invalid service token"},
			{"viewer", "POST", "/v1/api_keys", "{}", []string{"Authorization", "Bearer " + viewer.Token}, 403, "This operation needs the editor role or higher"},
			{"unknown key", "GET", "/v1/api_keys/" + uuid.NewString(), "", []string{"Authorization", bearer}, 404, "API key not found"},
			{"unknown dataset token", "GET", "/api/tiles/token/" + uuid.NewString() + "/", "", []string{"Authorization", bearer}, 404, "Dataset not found"},
			{"grant twice", "POST", "/api/datasets/" + private.Id.String() + "/grants/", `{"account_id":"` + other.ID.String() + `"}`, []string{"Authorization", bearer}, 409, "That grant already exists"},
			{"validation", "POST", "/api/tiles/tokens/", `{}`, []string{"Authorization", bearer}, 422, ""},
			{"tile without credential", "GET", "/api/tiles/" + private.Id.String() + "/0/0/0.pbf", "", nil, 401, ""},
			{"tilejson unknown", "GET", "/api/tiles/" + uuid.NewString() + "/tilejson.json", "", nil, 404, "Dataset not found"},
			{"outside the spec", "GET", "/nowhere", "", nil, 404, "Not Found"},
			{"method", "PUT", "/v1/api_keys", "", []string{"Authorization", bearer}, 405, "Method Not Allowed"},
		}
		for _, tc := range cases {
			for accept, wantType := range map[string]string{
				"":                                    "application/json",
				"*/*":                                 "application/json",
				"application/json":                    "application/json",
				"application/problem+json":            "application/problem+json",
				"application/problem+json, */*;q=0.5": "application/problem+json",
			} {
				h := append([]string{}, tc.header...)
				if accept != "" {
					h = append(h, "Accept", accept)
				}
				r, body := send(t, hc, tc.method, env.URL+tc.path, tc.body, h...)
				d := wantProblem(t, r, body, tc.status)
				if got := r.Header.Get("Content-Type"); got != wantType {
					t.Errorf("%s, Accept %q: Content-Type %q, want %q", tc.name, accept, got, wantType)
				}
				switch {
				case tc.status == 422:
					if l, ok := d.([]any); !ok || len(l) != 1 {
						t.Errorf("%s: detail %#v, want the FastAPI list", tc.name, d)
					}
				case tc.detail != "" && d != tc.detail:
					t.Errorf("%s: detail %#v, want %q", tc.name, d, tc.detail)
				}
			}
		}

		// The generated client reads both labels.
		got, err := c.GetAPIKeyWithResponse(ctx, uuid.New())
		must(t, err)
		if got.JSON404 == nil || got.JSON404.Title != "Not Found" || got.JSON404.Status != 404 || got.JSON404.Detail != "API key not found" {
			t.Errorf("generated client, no Accept: %+v %s", got.JSON404, got.Body)
		}
		got, err = c.GetAPIKeyWithResponse(ctx, uuid.New(), func(_ context.Context, r *http.Request) error {
			r.Header.Set("Accept", "application/problem+json")
			return nil
		})
		must(t, err)
		if p := got.ApplicationproblemJSON404; p == nil || p.Type != "about:blank" || p.Status != 404 || p.Detail != "API key not found" {
			t.Errorf("generated client, problem+json: %+v %s", p, got.Body)
		}
	})
}
