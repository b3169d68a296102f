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
