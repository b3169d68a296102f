package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// ListAPIKeysServed's one statement gives each key of a page what ServedSince gives it (served
// tiles from since on, refusals and earlier hours left out) and the account's exact total, on
// every page including one past the end.
func TestListAPIKeysServedMatchesServedSince(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "served")
		must(t, err)
		other, err := st.CreateAccount(ctx, "other")
		must(t, err)
		var ids []uuid.UUID
		for range 7 {
			k, err := st.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{Enabled: true})
			must(t, err)
			ids = append(ids, k.ID)
		}
		_, err = st.CreateAPIKey(ctx, other.AccountID, nil, store.APIKey{Enabled: true})
		must(t, err)
		since := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Unix()
		var rows []store.UsageRow
		for i, id := range ids {
			d := uuid.New()
			rows = append(rows,
				store.UsageRow{Hour: since + int64(i)*3600, KeyID: id, DatasetID: d, Credential: "key", Served: int64(10 * (i + 1))},
				store.UsageRow{Hour: since + int64(i)*3600, KeyID: id, DatasetID: uuid.New(), Credential: "token", Served: int64(i)},
				store.UsageRow{Hour: since - 3600, KeyID: id, DatasetID: d, Credential: "key", Served: 1000},                            // before since
				store.UsageRow{Hour: since + 7200, KeyID: id, DatasetID: d, Credential: "key", Reason: "origin", Served: 0, Refused: 5}, // a refusal
			)
		}
		must(t, st.AddUsage(ctx, rows))
		want, err := st.ServedSince(ctx, ids, since)
		must(t, err)
		if len(want) != len(ids) {
			t.Fatalf("ServedSince: %v", want)
		}
		var cur *store.Cursor
		seen := 0
		for {
			page, served, err := st.ListAPIKeysServed(ctx, acct.AccountID, cur, 3, since)
			must(t, err)
			if page.Total != int64(len(ids)) {
				t.Errorf("total %d, want %d", page.Total, len(ids))
			}
			if len(served) != len(page.Items) {
				t.Fatalf("%d served figures for %d keys", len(served), len(page.Items))
			}
			for i, k := range page.Items {
				seen++
				if served[i] != want[k.ID] || served[i] == 0 {
					t.Errorf("key %s served %d, want %d", k.ID, served[i], want[k.ID])
				}
			}
			if page.Next == nil {
				break
			}
			cur = page.Next
		}
		if seen != len(ids) {
			t.Errorf("walked %d keys, want %d", seen, len(ids))
		}
		// Past the last key: no row carries the total, which is still exact.
		last := store.Cursor{Created: store.Now().Add(time.Hour), ID: uuid.Max}
		page, served, err := st.ListAPIKeysServed(ctx, acct.AccountID, &last, 3, since)
		must(t, err)
		if len(page.Items) != 0 || len(served) != 0 || page.Total != int64(len(ids)) {
			t.Errorf("past the end: %d keys, %d figures, total %d", len(page.Items), len(served), page.Total)
		}
	})
}
