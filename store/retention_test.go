package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// Retention deletes in batches (here of 40 rows) until nothing old is left, keeps every newer
// row, and keeps the account's audit total exact, on both engines.
func TestRetentionDeletesInBatches(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		st.SetRetentionBatch(40)
		acct, err := st.CreateAccount(ctx, "retention")
		must(t, err)
		old := store.Now().Add(-400 * 24 * time.Hour)
		for i := range 133 { // 3 full batches and a partial one, and 3 recent events
			at := old.Add(time.Duration(i) * time.Second)
			if i >= 130 {
				at = store.Now()
			}
			e := store.AuditEvent{ID: uuid.New(), AccountID: acct.AccountID, At: at,
				Action: store.ActionKeyCreate, TargetType: store.TargetKey, TargetID: uuid.New(), Changes: store.JSON(`{}`)}
			must(t, st.DB().Create(&e).Error)
		}
		before, err := st.ListAudit(ctx, acct.AccountID, nil, 1)
		must(t, err)
		n, err := st.PruneAudit(ctx, old.Add(time.Hour))
		must(t, err)
		after, err := st.ListAudit(ctx, acct.AccountID, nil, 10)
		must(t, err)
		if n != 130 || before.Total != 133 || after.Total != 3 || len(after.Items) != 3 {
			t.Errorf("pruned %d (want 130); total %d before (want 133), %d after with %d listed (want 3)", n, before.Total, after.Total, len(after.Items))
		}

		now := time.Now().Unix() / 3600 * 3600
		key := uuid.New()
		var rows []store.UsageRow
		for i := range 90 {
			rows = append(rows, store.UsageRow{Hour: now - int64(500+i)*86400, KeyID: key, DatasetID: uuid.New(), Credential: store.CredentialKey, Served: 1})
		}
		rows = append(rows, store.UsageRow{Hour: now, KeyID: key, DatasetID: uuid.New(), Credential: store.CredentialKey, Served: 7})
		must(t, st.AddUsage(ctx, rows))
		n, err = st.DeleteUsageBefore(ctx, now-400*86400)
		must(t, err)
		left, err := st.ServedSince(ctx, []uuid.UUID{key}, 0)
		must(t, err)
		if n != 90 || left[key] != 7 {
			t.Errorf("deleted %d usage rows (want 90), %d served left (want 7)", n, left[key])
		}
	})
}
