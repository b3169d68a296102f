package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/access"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// ListDatasets filters in SQL; access.Listed is the rule. Over a generated world of accounts,
// datasets of every visibility and random grants, every account's listing (walked page by page)
// must be exactly the datasets Listed admits, judged on the facts DatasetsAccess and the tile
// path's TileSource load.
func TestListDatasetsAgreesWithPolicy(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		rng := rand.New(rand.NewPCG(10, 10))
		var accounts []store.Issued
		for i := range 4 {
			a, err := st.CreateAccount(ctx, fmt.Sprintf("acct%d", i))
			must(t, err)
			accounts = append(accounts, a)
		}
		var ids []uuid.UUID
		for _, owner := range accounts {
			for _, vis := range []string{store.Private, store.Restricted, store.Public, store.Private, store.Public} {
				d, err := st.CreateDataset(ctx, store.Dataset{AccountID: owner.AccountID, Name: vis, Kind: "vector", Visibility: vis, Format: "pbf", MaxZoom: 14})
				must(t, err)
				ids = append(ids, d.ID)
				for _, other := range accounts {
					if other.AccountID != owner.AccountID && rng.IntN(3) == 0 {
						_, err := st.CreateGrant(ctx, owner.AccountID, d.ID, &other.AccountID, nil)
						must(t, err)
					}
				}
			}
		}
		for _, a := range accounts {
			c := store.Caller{AccountID: a.AccountID, PrincipalID: a.PrincipalID, Role: store.RoleAdmin}
			facts, err := st.DatasetsAccess(ctx, c, ids)
			must(t, err)
			var want []uuid.UUID
			for _, id := range ids {
				if access.Listed(c.Policy(), facts[id].Facts()) {
					want = append(want, id)
				}
				src, err := st.TileSource(ctx, id)
				must(t, err)
				if got := slices.Contains(src.GrantedAccounts, a.AccountID); got != facts[id].AccountGrant {
					t.Errorf("dataset %s: TileSource grant %v, DatasetsAccess %v", id, got, facts[id].AccountGrant)
				}
			}
			var got []uuid.UUID
			var cur *store.Cursor
			for {
				page, err := st.ListDatasets(ctx, a.AccountID, cur, 3)
				must(t, err)
				if int(page.Total) != len(want) {
					t.Errorf("total %d, want %d", page.Total, len(want))
				}
				for _, d := range page.Items {
					got = append(got, d.ID)
				}
				if cur = page.Next; cur == nil {
					break
				}
			}
			slices.SortFunc(got, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
			slices.SortFunc(want, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
			if !slices.Equal(got, want) {
				t.Errorf("account %s lists %v, the policy admits %v", a.AccountID, got, want)
			}
			if len(want) <= 5 {
				t.Errorf("account %s: only its own %d datasets; the generated grants should share some", a.AccountID, len(want))
			}
		}
	})
}
