package server_test

import (
	"context"
	"testing"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// An editor may not lift restricted, move a dataset into it, or publish anything, on create or
// on change: 403 and nothing changed (the same visibility, the same access_version, still no
// token for the editor). Admins may; editors may still take a public dataset back to private.
func TestVisibilityChangesNeedAdmin(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		env := testenv.Start(t, db, server.Config{})
		ctx := context.Background()
		owner := env.NewAccount(t)
		admin := env.Client(t, owner.Token)
		editor := env.Client(t, env.NewPrincipal(t, owner.ID, "editor").Token)

		restricted := createDataset(t, admin, gen.DatasetCreate{Name: "restricted", Kind: gen.DatasetKindVector, Visibility: vis(gen.Restricted)})
		private := createDataset(t, admin, gen.DatasetCreate{Name: "private", Kind: gen.DatasetKindVector})
		public := createDataset(t, admin, gen.DatasetCreate{Name: "public", Kind: gen.DatasetKindVector, Visibility: vis(gen.Public)})

		refused := []struct {
			name string
			ds   gen.Dataset
			to   gen.Visibility
		}{
			{"restricted to private", restricted, gen.Private},
			{"restricted to public", restricted, gen.Public},
			{"private to restricted", private, gen.Restricted},
			{"private to public", private, gen.Public},
			{"public to restricted", public, gen.Restricted},
		}
		for _, tc := range refused {
			// A rename in the same request is refused with it: the request changes nothing.
			name := "renamed by editor"
			r, err := editor.UpdateDatasetWithResponse(ctx, tc.ds.Id, gen.DatasetUpdate{Visibility: vis(tc.to), Name: &name})
			must(t, err)
			wantStatus(t, r.StatusCode(), 403, r.Body)
			g, err := admin.GetDatasetWithResponse(ctx, tc.ds.Id)
			must(t, err)
			wantStatus(t, g.StatusCode(), 200, g.Body)
			if got := g.JSON200; got.Visibility != tc.ds.Visibility || got.AccessVersion != tc.ds.AccessVersion || got.Name != tc.ds.Name {
				t.Errorf("%s: refused, yet the dataset is now %s v%d %q", tc.name, got.Visibility, got.AccessVersion, got.Name)
			}
		}
		// The editor still may not use the restricted dataset it failed to open up.
		if s := mustStatus(editor.GetTileTokenWithResponse(ctx, restricted.Id)); s != 403 {
			t.Errorf("editor's token for the restricted dataset: %d, want 403", s)
		}

		// Creating: only private is an editor's.
		before := mustList(t, admin)
		for _, v := range []gen.Visibility{gen.Public, gen.Restricted} {
			r, err := editor.CreateDatasetWithResponse(ctx, gen.DatasetCreate{Name: "by editor", Kind: gen.DatasetKindVector, Visibility: vis(v)})
			must(t, err)
			wantStatus(t, r.StatusCode(), 403, r.Body)
		}
		if after := mustList(t, admin); after != before {
			t.Errorf("refused creations left datasets: %d before, %d after", before, after)
		}
		createDataset(t, editor, gen.DatasetCreate{Name: "editor's", Kind: gen.DatasetKindVector, Visibility: vis(gen.Private)})

		// Allowed: an editor withdraws a public dataset; an admin lifts restricted.
		r, err := editor.UpdateDatasetWithResponse(ctx, public.Id, gen.DatasetUpdate{Visibility: vis(gen.Private)})
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
		if r.JSON200.Visibility != gen.Private || r.JSON200.AccessVersion != public.AccessVersion+1 {
			t.Errorf("editor's public -> private: %s v%d", r.JSON200.Visibility, r.JSON200.AccessVersion)
		}
		r, err = admin.UpdateDatasetWithResponse(ctx, restricted.Id, gen.DatasetUpdate{Visibility: vis(gen.Private)})
		must(t, err)
		wantStatus(t, r.StatusCode(), 200, r.Body)
		if s := mustStatus(editor.GetTileTokenWithResponse(ctx, restricted.Id)); s != 200 {
			t.Errorf("editor's token once an admin lifted restricted: %d, want 200", s)
		}
	})
}

func mustList(t testing.TB, c *gen.ClientWithResponses) int {
	t.Helper()
	r, err := c.ListDatasetsWithResponse(context.Background(), nil)
	must(t, err)
	wantStatus(t, r.StatusCode(), 200, r.Body)
	return r.JSON200.TotalCount
}
