package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

func createDataset(t testing.TB, c *gen.ClientWithResponses, body gen.DatasetCreate) gen.Dataset {
	t.Helper()
	r, err := c.CreateDatasetWithResponse(context.Background(), body)
	must(t, err)
	wantStatus(t, r.StatusCode(), 201, r.Body)
	return *r.JSON201
}

func vis(v gen.Visibility) *gen.Visibility { return &v }

func TestDatasetLifecycle(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		ctx := context.Background()

		v := createDataset(t, c, gen.DatasetCreate{Name: "roads", Kind: gen.DatasetKindVector,
			Bounds:       nullable.NewNullableWithValue(gen.Bounds{-10, -20, 30, 40}),
			VectorLayers: nullable.NewNullableWithValue([]gen.VectorLayer{{Id: "roads"}}),
		})
		if v.Format != "pbf" || v.Visibility != gen.Private || v.AccessVersion != 1 || v.HasTiles || v.TileSize.IsSpecified() && !v.TileSize.IsNull() {
			t.Errorf("vector defaults: %+v", v)
		}
		r := createDataset(t, c, gen.DatasetCreate{Name: "imagery", Kind: gen.DatasetKindRaster})
		if r.Format != "png" || mustGet(r.TileSize) != 256 {
			t.Errorf("raster defaults: format %s tile_size %v", r.Format, r.TileSize)
		}

		got, err := c.GetDatasetWithResponse(ctx, v.Id)
		must(t, err)
		wantStatus(t, got.StatusCode(), 200, got.Body)
		wantJSON(t, mustGet(got.JSON200.Bounds), gen.Bounds{-10, -20, 30, 40})

		// PATCH: absent unchanged, null clears, visibility change bumps access_version.
		upd, err := c.UpdateDatasetWithResponse(ctx, v.Id, gen.DatasetUpdate{
			Bounds: nullable.NewNullNullable[gen.Bounds](), Visibility: vis(gen.Public),
			Description: nullable.NewNullableWithValue("all roads"),
		})
		must(t, err)
		wantStatus(t, upd.StatusCode(), 200, upd.Body)
		u := upd.JSON200
		if !u.Bounds.IsNull() || u.Name != "roads" || u.Visibility != gen.Public || u.AccessVersion != 2 || mustGet(u.Description) != "all roads" {
			t.Errorf("after patch: %s", upd.Body)
		}
		if !u.Changed.After(v.Changed) || !u.Created.Equal(v.Created) {
			t.Errorf("changed must move, created must stay")
		}
		same, err := c.UpdateDatasetWithResponse(ctx, v.Id, gen.DatasetUpdate{Name: ptr("main roads")})
		must(t, err)
		if same.JSON200.AccessVersion != 2 {
			t.Errorf("a rename bumped access_version to %d", same.JSON200.AccessVersion)
		}

		page, err := c.ListDatasetsWithResponse(ctx, nil)
		must(t, err)
		wantStatus(t, page.StatusCode(), 200, page.Body)
		if page.JSON200.TotalCount != 2 || len(page.JSON200.Items) != 2 || !page.JSON200.Cursor.IsNull() {
			t.Errorf("list: %s", page.Body)
		}

		del, err := c.DeleteDatasetWithResponse(ctx, v.Id)
		must(t, err)
		wantStatus(t, del.StatusCode(), 204, del.Body)
		for name, s := range map[string]int{
			"get":    mustStatus(c.GetDatasetWithResponse(ctx, v.Id)),
			"patch":  mustStatus(c.UpdateDatasetWithResponse(ctx, v.Id, gen.DatasetUpdate{})),
			"delete": mustStatus(c.DeleteDatasetWithResponse(ctx, v.Id)),
			"token":  mustStatus(c.GetTileTokenWithResponse(ctx, v.Id)),
			"grants": mustStatus(c.ListGrantsWithResponse(ctx, v.Id)),
		} {
			if s != 404 {
				t.Errorf("deleted dataset %s: %d, want 404", name, s)
			}
		}
	})
}

func TestDatasetValidation(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		acct := env.NewAccount(t)
		c := env.Client(t, acct.Token)
		existing := createDataset(t, c, gen.DatasetCreate{Name: "keep", Kind: gen.DatasetKindVector})
		hc := env.HTTPClient(t)
		path := "/api/datasets/" + existing.Id.String() + "/"
		cases := []struct {
			name, method, path, body string
			loc                      []any
			typ                      string
		}{
			{"missing kind", "POST", "/api/datasets/", `{"name":"x"}`, []any{"body", "kind"}, "missing"},
			{"bad kind", "POST", "/api/datasets/", `{"name":"x","kind":"mesh"}`, []any{"body", "kind"}, "enum"},
			{"bad visibility", "POST", "/api/datasets/", `{"name":"x","kind":"vector","visibility":"secret"}`, []any{"body", "visibility"}, "enum"},
			{"zoom too high", "POST", "/api/datasets/", `{"name":"x","kind":"vector","maxzoom":25}`, []any{"body", "maxzoom"}, "less_than_equal"},
			{"zoom negative", "POST", "/api/datasets/", `{"name":"x","kind":"vector","minzoom":-1}`, []any{"body", "minzoom"}, "greater_than_equal"},
			{"min above max", "POST", "/api/datasets/", `{"name":"x","kind":"vector","minzoom":10,"maxzoom":5}`, []any{"body", "maxzoom"}, "value_error"},
			{"bounds short", "POST", "/api/datasets/", `{"name":"x","kind":"vector","bounds":[1,2,3]}`, []any{"body", "bounds"}, "too_short"},
			{"bounds lat out of range", "POST", "/api/datasets/", `{"name":"x","kind":"vector","bounds":[0,-91,10,10]}`, []any{"body", "bounds", float64(1)}, "value_error"},
			{"bounds lon out of range", "POST", "/api/datasets/", `{"name":"x","kind":"vector","bounds":[0,0,181,10]}`, []any{"body", "bounds", float64(2)}, "value_error"},
			{"bounds south above north", "POST", "/api/datasets/", `{"name":"x","kind":"vector","bounds":[0,50,10,10]}`, []any{"body", "bounds", float64(3)}, "value_error"},
			{"vector with png", "POST", "/api/datasets/", `{"name":"x","kind":"vector","format":"png"}`, []any{"body", "format"}, "value_error"},
			{"raster with pbf", "POST", "/api/datasets/", `{"name":"x","kind":"raster","format":"pbf"}`, []any{"body", "format"}, "value_error"},
			{"tile size 300", "POST", "/api/datasets/", `{"name":"x","kind":"raster","tile_size":300}`, []any{"body", "tile_size"}, "enum"},
			{"tile size on vector", "POST", "/api/datasets/", `{"name":"x","kind":"vector","tile_size":512}`, []any{"body", "tile_size"}, "value_error"},
			{"unknown field", "POST", "/api/datasets/", `{"name":"x","kind":"vector","colour":"red"}`, []any{"body", "colour"}, "extra_forbidden"},
			{"center zoom", "POST", "/api/datasets/", `{"name":"x","kind":"vector","center":[0,0,30]}`, []any{"body", "center", float64(2)}, "value_error"},
			{"patch kind is immutable", "PATCH", path, `{"kind":"raster"}`, []any{"body", "kind"}, "extra_forbidden"},
			{"patch min above max", "PATCH", path, `{"minzoom":20}`, []any{"body", "maxzoom"}, "value_error"},
			{"patch null name", "PATCH", path, `{"name":null}`, []any{"body", "name"}, "string_type"},
			{"bad dataset uuid", "GET", "/api/datasets/xyz/", "", []any{"path", "dataset_id"}, "uuid_parsing"},
			{"grant both targets", "POST", path + "grants/", `{"account_id":"` + uuid.NewString() + `","principal_id":"` + uuid.NewString() + `"}`, []any{"body"}, "value_error"},
			{"grant no target", "POST", path + "grants/", `{}`, []any{"body"}, "value_error"},
			{"grant unknown account", "POST", path + "grants/", `{"account_id":"` + uuid.NewString() + `"}`, []any{"body", "account_id"}, "value_error"},
			{"grant own account", "POST", path + "grants/", `{"account_id":"` + acct.ID.String() + `"}`, []any{"body", "account_id"}, "value_error"},
			{"grant foreign principal", "POST", path + "grants/", `{"principal_id":"` + env.NewAccount(t).PrincipalID.String() + `"}`, []any{"body", "principal_id"}, "value_error"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				d := doJSON(t, hc, env.URL, acct.Token, tc.method, tc.path, tc.body, 422)
				if fmt.Sprint(d[0].Loc) != fmt.Sprint(tc.loc) || d[0].Type != tc.typ {
					t.Errorf("got loc %v type %s, want %v %s", d[0].Loc, d[0].Type, tc.loc, tc.typ)
				}
			})
		}
		list, err := c.ListDatasetsWithResponse(context.Background(), nil)
		must(t, err)
		if list.JSON200.TotalCount != 1 || list.JSON200.Items[0].Minzoom != 0 || list.JSON200.Items[0].AccessVersion != 1 {
			t.Errorf("bad input changed datasets: %s", list.Body)
		}
		grants, err := c.ListGrantsWithResponse(context.Background(), existing.Id)
		must(t, err)
		if len(grants.JSON200.Items) != 0 {
			t.Errorf("bad grant input created grants")
		}
	})
}

type detailItem struct {
	Loc  []any  `json:"loc"`
	Type string `json:"type"`
	Msg  string `json:"msg"`
}

// doJSON sends a raw request and returns the FastAPI error items of a 422 (or nil).
func doJSON(t testing.TB, hc *http.Client, base, token, method, path, body string, want int) []detailItem {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := hc.Do(req)
	must(t, err)
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, raw)
	}
	if want != 422 {
		return nil
	}
	var v struct {
		Detail []detailItem `json:"detail"`
	}
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Detail) == 0 {
		t.Fatalf("not a FastAPI error: %s", raw)
	}
	return v.Detail
}

// The access rules of DESIGN.md, from every side: owner roles, shared account, principal grants,
// public datasets and strangers.
func TestDatasetAccessRules(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		ctx := context.Background()
		owner := env.NewAccount(t)
		admin := env.Client(t, owner.Token)
		editorP := env.NewPrincipal(t, owner.ID, "editor")
		viewerP := env.NewPrincipal(t, owner.ID, "viewer")
		editor, viewer := env.Client(t, editorP.Token), env.Client(t, viewerP.Token)
		partner := env.NewAccount(t)
		partnerC := env.Client(t, partner.Token)
		stranger := env.Client(t, env.NewAccount(t).Token)

		private := createDataset(t, admin, gen.DatasetCreate{Name: "private", Kind: gen.DatasetKindVector})
		restricted := createDataset(t, admin, gen.DatasetCreate{Name: "restricted", Kind: gen.DatasetKindVector, Visibility: vis(gen.Restricted)})
		public := createDataset(t, admin, gen.DatasetCreate{Name: "public", Kind: gen.DatasetKindRaster, Visibility: vis(gen.Public)})
		shared := createDataset(t, admin, gen.DatasetCreate{Name: "shared", Kind: gen.DatasetKindVector})

		// Only admins manage grants.
		if s := mustStatus(editor.CreateGrantWithResponse(ctx, shared.Id, gen.GrantCreate{AccountId: &partner.ID})); s != 403 {
			t.Errorf("editor created a grant: %d", s)
		}
		g, err := admin.CreateGrantWithResponse(ctx, shared.Id, gen.GrantCreate{AccountId: &partner.ID})
		must(t, err)
		wantStatus(t, g.StatusCode(), 201, g.Body)
		if s := mustStatus(admin.CreateGrantWithResponse(ctx, shared.Id, gen.GrantCreate{AccountId: &partner.ID})); s != 409 {
			t.Errorf("duplicate grant: %d, want 409", s)
		}
		pg, err := admin.CreateGrantWithResponse(ctx, restricted.Id, gen.GrantCreate{PrincipalId: &viewerP.PrincipalID})
		must(t, err)
		wantStatus(t, pg.StatusCode(), 201, pg.Body)

		type want struct{ get, token int }
		matrix := []struct {
			who    string
			c      *gen.ClientWithResponses
			ds     gen.Dataset
			expect want
		}{
			{"admin/private", admin, private, want{200, 200}},
			{"editor/private", editor, private, want{200, 200}},
			{"viewer/private", viewer, private, want{200, 200}},
			{"admin/restricted", admin, restricted, want{200, 200}},
			{"editor/restricted", editor, restricted, want{200, 403}},
			{"granted viewer/restricted", viewer, restricted, want{200, 200}},
			{"partner/shared", partnerC, shared, want{200, 200}},
			{"partner/private", partnerC, private, want{404, 404}},
			{"partner/public", partnerC, public, want{200, 200}},
			{"stranger/public", stranger, public, want{200, 200}},
			{"stranger/private", stranger, private, want{404, 404}},
			{"stranger/restricted", stranger, restricted, want{404, 404}},
			{"stranger/shared", stranger, shared, want{404, 404}},
		}
		for _, m := range matrix {
			get := mustStatus(m.c.GetDatasetWithResponse(ctx, m.ds.Id))
			tok := mustStatus(m.c.GetTileTokenWithResponse(ctx, m.ds.Id))
			if get != m.expect.get || tok != m.expect.token {
				t.Errorf("%s: get %d token %d, want %d %d", m.who, get, tok, m.expect.get, m.expect.token)
			}
		}

		// Another account's objects: 404 when unseen, 403 when seen (public or shared) but not theirs.
		writes := []struct {
			who  string
			c    *gen.ClientWithResponses
			ds   gen.Dataset
			want int
		}{
			{"stranger", stranger, private, 404},
			{"partner on shared", partnerC, shared, 403},
			{"stranger on public", stranger, public, 403},
		}
		for _, w := range writes {
			for op, s := range map[string]int{
				"patch":        mustStatus(w.c.UpdateDatasetWithResponse(ctx, w.ds.Id, gen.DatasetUpdate{Name: ptr("mine")})),
				"delete":       mustStatus(w.c.DeleteDatasetWithResponse(ctx, w.ds.Id)),
				"list grants":  mustStatus(w.c.ListGrantsWithResponse(ctx, w.ds.Id)),
				"create grant": mustStatus(w.c.CreateGrantWithResponse(ctx, w.ds.Id, gen.GrantCreate{AccountId: &partner.ID})),
				"delete grant": mustStatus(w.c.DeleteGrantWithResponse(ctx, w.ds.Id, g.JSON201.Id)),
			} {
				if s != w.want {
					t.Errorf("%s %s: %d, want %d", w.who, op, s, w.want)
				}
			}
		}
		if s := mustStatus(viewer.UpdateDatasetWithResponse(ctx, private.Id, gen.DatasetUpdate{Name: ptr("x")})); s != 403 {
			t.Errorf("viewer patch: %d, want 403", s)
		}

		// The partner lists what is shared with it, not the owner's private datasets.
		pl, err := partnerC.ListDatasetsWithResponse(ctx, nil)
		must(t, err)
		if pl.JSON200.TotalCount != 1 || pl.JSON200.Items[0].Id != shared.Id {
			t.Errorf("partner's list: %s", pl.Body)
		}
		after, err := admin.GetDatasetWithResponse(ctx, private.Id)
		must(t, err)
		if after.JSON200.Name != "private" || after.JSON200.AccessVersion != 1 {
			t.Errorf("refused writes changed the dataset: %s", after.Body)
		}

		// Revoking the share: the partner no longer sees it, and access_version moved on.
		before, _ := admin.GetDatasetWithResponse(ctx, shared.Id)
		d, err := admin.DeleteGrantWithResponse(ctx, shared.Id, g.JSON201.Id)
		must(t, err)
		wantStatus(t, d.StatusCode(), 204, d.Body)
		if s := mustStatus(partnerC.GetDatasetWithResponse(ctx, shared.Id)); s != 404 {
			t.Errorf("partner after revoke: %d", s)
		}
		now, _ := admin.GetDatasetWithResponse(ctx, shared.Id)
		if now.JSON200.AccessVersion <= before.JSON200.AccessVersion {
			t.Errorf("revoke did not bump access_version: %d → %d", before.JSON200.AccessVersion, now.JSON200.AccessVersion)
		}
		if s := mustStatus(admin.DeleteGrantWithResponse(ctx, shared.Id, g.JSON201.Id)); s != 404 {
			t.Errorf("deleting a revoked grant: %d", s)
		}
	})
}

func TestDatasetPagination(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		c := env.Client(t, env.NewAccount(t).Token)
		ids := map[uuid.UUID]bool{}
		for i := range 23 {
			ids[createDataset(t, c, gen.DatasetCreate{Name: fmt.Sprint("d", i), Kind: gen.DatasetKindVector}).Id] = true
		}
		seen := 0
		limit := 10
		var cur *string
		for pages := 0; ; pages++ {
			r, err := c.ListDatasetsWithResponse(context.Background(), &gen.ListDatasetsParams{Cursor: cur, Limit: &limit})
			must(t, err)
			wantStatus(t, r.StatusCode(), 200, r.Body)
			for _, d := range r.JSON200.Items {
				if !ids[d.Id] {
					t.Fatalf("unexpected or repeated dataset %s", d.Id)
				}
				delete(ids, d.Id)
				seen++
			}
			if r.JSON200.Cursor.IsNull() {
				break
			}
			next := mustGet(r.JSON200.Cursor)
			cur = &next
			if pages > 5 {
				t.Fatal("too many pages")
			}
		}
		if seen != 23 || len(ids) != 0 {
			t.Errorf("saw %d of 23", seen)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func mustGet[T any](n nullable.Nullable[T]) T {
	v, err := n.Get()
	if err != nil {
		panic(fmt.Sprintf("nullable has no value: %v", err))
	}
	return v
}
