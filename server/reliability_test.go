package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// Three change_settings calls on one key at once, each to a different field, all answer 200 and
// all three changes are kept (issue #7 item 1: one was lost every time on PostgreSQL).
func TestChangeSettingsConcurrentFieldsAllKept(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		c := env.Client(t, env.NewAccount(t).Token)
		ctx := context.Background()
		for round := range 10 {
			created, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})
			must(t, err)
			wantStatus(t, created.StatusCode(), 200, created.Body)
			id := created.JSON200.Id
			bodies := []gen.APIKeySettings{
				{Name: nullable.NewNullableWithValue("renamed")},
				{Description: nullable.NewNullableWithValue("described")},
				{Origins: nullable.NewNullableWithValue([]string{"example.com"})},
			}
			var wg sync.WaitGroup
			statuses := make([]int, len(bodies))
			for i, body := range bodies {
				wg.Go(func() {
					res, err := c.ChangeAPIKeySettingsWithResponse(ctx, id, body)
					if err != nil {
						t.Error(err)
						return
					}
					statuses[i] = res.StatusCode()
				})
			}
			wg.Wait()
			got, err := c.GetAPIKeyWithResponse(ctx, id)
			must(t, err)
			wantStatus(t, got.StatusCode(), 200, got.Body)
			k := got.JSON200
			desc, _ := k.Description.Get()
			if statuses[0] != 200 || statuses[1] != 200 || statuses[2] != 200 ||
				k.Name != "renamed" || desc != "described" || len(k.Origins) != 1 || k.Origins[0] != "example.com" {
				t.Fatalf("round %d: statuses %v, key name %q description %q origins %v", round, statuses, k.Name, desc, k.Origins)
			}
		}
	})
}

// Grants are admins only (issue #7 item 14): viewers and editors get 403 on every grant
// operation, listing included; an admin lists them.
func TestGrantsAdminsOnly(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		admin := env.Client(t, acct.Token)
		ctx := context.Background()
		ds := createDataset(t, admin, gen.DatasetCreate{Name: "shared", Kind: gen.DatasetKindVector})
		partner := env.NewAccount(t)
		g, err := admin.CreateGrantWithResponse(ctx, ds.Id, gen.GrantCreate{AccountId: &partner.ID})
		must(t, err)
		wantStatus(t, g.StatusCode(), 201, g.Body)
		for _, role := range []string{"viewer", "editor"} {
			c := env.Client(t, env.NewPrincipal(t, acct.ID, role).Token)
			list, err := c.ListGrantsWithResponse(ctx, ds.Id)
			must(t, err)
			wantStatus(t, list.StatusCode(), 403, list.Body)
			if s := mustStatus(c.CreateGrantWithResponse(ctx, ds.Id, gen.GrantCreate{AccountId: &partner.ID})); s != 403 {
				t.Errorf("%s create grant: %d, want 403", role, s)
			}
			if s := mustStatus(c.DeleteGrantWithResponse(ctx, ds.Id, g.JSON201.Id)); s != 403 {
				t.Errorf("%s delete grant: %d, want 403", role, s)
			}
		}
		list, err := admin.ListGrantsWithResponse(ctx, ds.Id)
		must(t, err)
		wantStatus(t, list.StatusCode(), 200, list.Body)
		if len(list.JSON200.Items) != 1 {
			t.Errorf("admin lists %d grants, want 1", len(list.JSON200.Items))
		}
	})
}

// NUL in any string the API accepts is a 422 naming the field, and changes nothing (issue #7
// item 4: it was a 500 on PostgreSQL, whose text cannot hold it).
func TestNULRefusedEverywhere(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()
		key, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{Name: nullable.NewNullableWithValue("keep")})
		must(t, err)
		wantStatus(t, key.StatusCode(), 200, key.Body)
		ds := createDataset(t, c, gen.DatasetCreate{Name: "keep", Kind: gen.DatasetKindVector})
		keyPath := "/v1/api_keys/" + key.JSON200.Id.String()
		dsPath := "/api/datasets/" + ds.Id.String() + "/"
		const nul = `a\u0000b`
		cases := []struct {
			name, method, path, body string
			loc                      []any
		}{
			{"key name", "POST", "/v1/api_keys", `{"name":"` + nul + `"}`, []any{"body", "name"}},
			{"key description", "POST", "/v1/api_keys", `{"description":"` + nul + `"}`, []any{"body", "description"}},
			{"key user_agent", "POST", "/v1/api_keys", `{"user_agent":"` + nul + `"}`, []any{"body", "user_agent"}},
			{"key origin", "POST", "/v1/api_keys", `{"origins":["example.com","` + nul + `"]}`, []any{"body", "origins", float64(1)}},
			{"change name", "POST", keyPath + "/change_settings", `{"name":"` + nul + `"}`, []any{"body", "name"}},
			{"change description", "POST", keyPath + "/change_settings", `{"description":"` + nul + `"}`, []any{"body", "description"}},
			{"change user_agent", "POST", keyPath + "/change_settings", `{"user_agent":"` + nul + `"}`, []any{"body", "user_agent"}},
			{"change origin", "POST", keyPath + "/change_settings", `{"origins":["` + nul + `"]}`, []any{"body", "origins", float64(0)}},
			{"dataset name", "POST", "/api/datasets/", `{"kind":"vector","name":"` + nul + `"}`, []any{"body", "name"}},
			{"dataset description", "POST", "/api/datasets/", `{"kind":"vector","name":"x","description":"` + nul + `"}`, []any{"body", "description"}},
			{"dataset attribution", "POST", "/api/datasets/", `{"kind":"vector","name":"x","attribution":"` + nul + `"}`, []any{"body", "attribution"}},
			{"vector layer id", "POST", "/api/datasets/", `{"kind":"vector","name":"x","vector_layers":[{"id":"` + nul + `"}]}`, []any{"body", "vector_layers", float64(0), "id"}},
			{"vector layer field", "POST", "/api/datasets/", `{"kind":"vector","name":"x","vector_layers":[{"id":"l","fields":{"f":"` + nul + `"}}]}`, []any{"body", "vector_layers", float64(0), "fields", "f"}},
			{"vector layer field name", "POST", "/api/datasets/", `{"kind":"vector","name":"x","vector_layers":[{"id":"l","fields":{"` + nul + `":"String"}}]}`, []any{"body", "vector_layers", float64(0), "fields", "a\x00b"}},
			{"vector layer extra member", "POST", "/api/datasets/", `{"kind":"vector","name":"x","vector_layers":[{"id":"l","note":"` + nul + `"}]}`, []any{"body", "vector_layers", float64(0), "note"}},
			{"patch name", "PATCH", dsPath, `{"name":"` + nul + `"}`, []any{"body", "name"}},
			{"patch attribution", "PATCH", dsPath, `{"attribution":"` + nul + `"}`, []any{"body", "attribution"}},
			{"grant account", "POST", dsPath + "grants/", `{"account_id":"` + nul + `"}`, []any{"body", "account_id"}},
			{"cursor", "GET", "/v1/api_keys?cursor=a%00b", "", []any{"query", "cursor"}},
			{"dataset cursor", "GET", "/api/datasets/?cursor=a%00b", "", []any{"query", "cursor"}},
			{"tile key", "GET", "/api/tiles/" + ds.Id.String() + "/0/0/0.pbf?key=a%00b", "", []any{"query", "key"}},
			{"tilejson key", "GET", "/api/tiles/" + ds.Id.String() + "/tilejson.json?key=a%00b", "", []any{"query", "key"}},
			// A NUL in a tile URL's path (…/0.pbf%00) is not a tile's one spelling: 404 (issue #15
			// item 7, TestTileURLIsCanonical), before any parameter is validated.
		}
		hc := env.HTTPClient(t)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				items := doJSON(t, hc, env.URL, acct.Token, tc.method, tc.path, tc.body, 422)
				if len(items) != 1 || !sameLoc(items[0].Loc, tc.loc) || items[0].Type != "value_error" || !strings.Contains(items[0].Msg, "NUL") {
					t.Errorf("detail %+v, want one value_error at %v about NUL", items, tc.loc)
				}
			})
		}
		keys, err := c.ListAPIKeysWithResponse(ctx, nil)
		must(t, err)
		dss, err := c.ListDatasetsWithResponse(ctx, nil)
		must(t, err)
		if keys.JSON200.TotalCount != 1 || keys.JSON200.Items[0].Name != "keep" || dss.JSON200.TotalCount != 1 || dss.JSON200.Items[0].Name != "keep" {
			t.Errorf("refused requests changed something: keys %s datasets %s", keys.Body, dss.Body)
		}
	})
}

func sameLoc(got, want []any) bool {
	return fmt.Sprint(got) == fmt.Sprint(want) && len(got) == len(want)
}

// Query strings that do not decode, and single-valued parameters given twice, are 422 at
// ["query", NAME] (issue #7 item 5: they answered 200 with the defaults, or 422 at ["body"]).
func TestQueryDecodingAndRepeats(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ds := createDataset(t, c, gen.DatasetCreate{Name: "d", Kind: gen.DatasetKindVector})
		hc := env.HTTPClient(t)
		cases := []struct {
			name, path string
			loc        []any
		}{
			{"cursor bad escapes", "/v1/api_keys?cursor=%%%", []any{"query", "cursor"}},
			{"limit bad escape", "/v1/api_keys?limit=%zz", []any{"query", "limit"}},
			{"limit trailing percent", "/v1/api_keys?limit=5%", []any{"query", "limit"}},
			{"limit repeated", "/v1/api_keys?limit=10&limit=20", []any{"query", "limit"}},
			{"limit repeated, one out of range", "/v1/api_keys?limit=5&limit=20", []any{"query", "limit"}},
			{"cursor repeated", "/v1/api_keys?cursor=a&cursor=b", []any{"query", "cursor"}},
			{"semicolon separator", "/v1/api_keys?limit=10;cursor=x", []any{"query", "limit"}},
			{"datasets limit bad escape", "/api/datasets/?limit=1%G0", []any{"query", "limit"}},
			{"datasets limit repeated", "/api/datasets/?limit=10&limit=10", []any{"query", "limit"}},
			{"tile key bad escape", "/api/tiles/" + ds.Id.String() + "/0/0/0.pbf?key=%zz", []any{"query", "key"}},
			{"tile key repeated", "/api/tiles/" + ds.Id.String() + "/0/0/0.pbf?key=a&key=b", []any{"query", "key"}},
			{"tilejson key repeated", "/api/tiles/" + ds.Id.String() + "/tilejson.json?key=a&key=b", []any{"query", "key"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				items := doJSON(t, hc, env.URL, acct.Token, "GET", tc.path, "", 422)
				if len(items) != 1 || !sameLoc(items[0].Loc, tc.loc) || items[0].Type != "value_error" {
					t.Errorf("detail %+v, want one value_error at %v", items, tc.loc)
				}
			})
		}
		// What decodes is fine: an escaped value, an unknown parameter given twice, an empty pair.
		for _, ok := range []string{"/v1/api_keys?limit=1%30", "/v1/api_keys?x=1&x=2&&limit=10", "/api/datasets/?limit=%31%30"} {
			doJSON(t, hc, env.URL, acct.Token, "GET", ok, "", 200)
		}
	})
}

// change_settings racing delete: the change answers 200 (it landed first) or 404, the delete 200,
// and the key is gone afterwards — never a 503 "database is locked" (SQLite) or a 500.
func TestChangeSettingsRacingDelete(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		c := env.Client(t, env.NewAccount(t).Token)
		ctx := context.Background()
		for round := range 100 {
			created, err := c.CreateAPIKeyWithResponse(ctx, gen.APIKeySettings{})
			must(t, err)
			wantStatus(t, created.StatusCode(), 200, created.Body)
			id := created.JSON200.Id
			var wg sync.WaitGroup
			var change, del int
			wg.Go(func() {
				change = mustStatus(c.ChangeAPIKeySettingsWithResponse(ctx, id, gen.APIKeySettings{Name: nullable.NewNullableWithValue("late")}))
			})
			wg.Go(func() { del = mustStatus(c.DeleteAPIKeyWithResponse(ctx, id)) })
			wg.Wait()
			if (change != 200 && change != 404) || del != 200 {
				t.Fatalf("round %d: change %d, delete %d", round, change, del)
			}
			if s := mustStatus(c.GetAPIKeyWithResponse(ctx, id)); s != 404 {
				t.Fatalf("round %d: the deleted key answers %d", round, s)
			}
		}
	})
}
