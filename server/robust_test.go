package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// No request a client can send produces a 5xx: odd bodies against every JSON operation. The
// validating transport checks each answer's shape against openapi.yaml.
func TestOddInputNeverFailsTheServer(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ds := createDataset(t, c, gen.DatasetCreate{Name: "d", Kind: gen.DatasetKindVector})
		key := mustKey(t, c)
		hc := env.HTTPClient(t)
		bodies := []string{
			`null`, `true`, `"x"`, `12`, `[]`, `{}`, `{"a":{"b":{"c":{"d":[[[[[]]]]]}}}}`,
			`{"name":null,"description":null,"user_agent":null,"origins":null}`,
			`{"name":"` + strings.Repeat("é", 101) + `"}`, `{"origins":[null]}`, `{"origins":["*"]}`,
			`{"origins":["http://[::1]:99999"]}`, `{"origins":["xn--"]}`, `{"user_agent":""}`,
			`{"kind":"vector","name":"x","minzoom":1e40}`, `{"kind":"vector","name":"x","bounds":[1,2,3,"4"]}`,
			`{"kind":"vector","name":"x","bounds":null,"center":[0,0,0.5]}`, `{"kind":"raster","name":"x","vector_layers":[{"id":"a"}]}`,
			`{"kind":"vector","name":"x","vector_layers":[{}]}`, `{"visibility":"public","format":null,"tile_size":null}`,
			`{"dataset_ids":[null]}`, `{"dataset_ids":[1,2]}`, `{"dataset_ids":["` + uuid.NewString() + `"],"extra":1}`,
			`{"account_id":"` + uuid.Nil.String() + `"}`, `{"principal_id":"` + acct.PrincipalID.String() + `"}`,
			"{\"name\":\"\u0000\"}", `{"name":"\ud800"}`, `{` + strings.Repeat(`"a":1,`, 2000) + `"b":2}`,
		}
		targets := []struct{ method, path string }{
			{"POST", "/v1/api_keys"},
			{"POST", "/v1/api_keys/" + key + "/change_settings"},
			{"POST", "/api/datasets/"},
			{"PATCH", "/api/datasets/" + ds.Id.String() + "/"},
			{"POST", "/api/datasets/" + ds.Id.String() + "/grants/"},
			{"POST", "/api/tiles/tokens/"},
		}
		for _, tg := range targets {
			for _, b := range bodies {
				req, _ := http.NewRequest(tg.method, env.URL+tg.path, strings.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+acct.Token)
				req.Header.Set("Content-Type", "application/json")
				res, err := hc.Do(req)
				must(t, err)
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode >= 500 {
					t.Errorf("%s %s %.80s: %d %s", tg.method, tg.path, b, res.StatusCode, raw)
				}
			}
		}
		for _, p := range []string{"/v1/api_keys?limit=1e3", "/v1/api_keys?limit=", "/v1/api_keys?cursor=" + strings.Repeat("A", 600),
			"/v1/api_keys/%00", "/api/datasets/{" + uuid.NewString() + "}/", "/api/tiles/token/urn:uuid:" + uuid.NewString() + "/",
			"/api/datasets/?limit=50&limit=10", "/v1/api_keys/" + strings.Repeat("a", 5000)} {
			req, _ := http.NewRequest("GET", env.URL+p, nil)
			req.Header.Set("Authorization", "Bearer "+acct.Token)
			res, err := hc.Do(req)
			must(t, err)
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode >= 500 {
				t.Errorf("GET %.80s: %d %s", p, res.StatusCode, raw)
			}
		}
	})
}

func mustKey(t testing.TB, c *gen.ClientWithResponses) string {
	t.Helper()
	r, err := c.CreateAPIKeyWithResponse(t.Context(), gen.APIKeySettings{})
	must(t, err)
	return r.JSON200.Id.String()
}
