package server_test

import (
	"context"
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
