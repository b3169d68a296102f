package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// total_count comes from the trigger-kept counters: after concurrent creates and deletes of
// keys (and the audit events they write) it equals what count(*) finds, on both engines.
func TestTotalsExactAfterConcurrentCreatesAndDeletes(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "counted")
		must(t, err)
		const writers, each = 8, 12
		var wg sync.WaitGroup
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []uuid.UUID
				for i := range each {
					k, err := st.CreateAPIKey(ctx, acct.AccountID, nil, store.APIKey{Enabled: true})
					if err != nil {
						t.Error(err)
						return
					}
					mine = append(mine, k.ID)
					if i%3 == 2 { // delete every third key soon after creating it
						if err := st.DeleteAPIKey(ctx, acct.AccountID, mine[0]); err != nil {
							t.Error(err)
							return
						}
						mine = mine[1:]
					}
				}
			}()
		}
		wg.Wait()
		wantKeys := int64(writers * (each - each/3))
		var keys, events int64
		must(t, st.DB().Model(&store.APIKey{}).Where("account_id = ?", acct.AccountID.String()).Count(&keys).Error)
		must(t, st.DB().Model(&store.AuditEvent{}).Where("account_id = ?", acct.AccountID.String()).Count(&events).Error)
		if keys != wantKeys || events != int64(writers*(each+each/3)) {
			t.Fatalf("%d keys, %d events stored; the test expected %d and %d", keys, events, wantKeys, writers*(each+each/3))
		}
		kp, err := st.ListAPIKeys(ctx, acct.AccountID, nil, 10)
		must(t, err)
		ap, err := st.ListAudit(ctx, acct.AccountID, nil, 10)
		must(t, err)
		if kp.Total != keys || ap.Total != events {
			t.Errorf("totals: keys %d (count %d), audit %d (count %d)", kp.Total, keys, ap.Total, events)
		}

		// Pruning the trail keeps its total exact too.
		_, err = st.PruneAudit(ctx, store.Now().Add(1))
		must(t, err)
		ap, err = st.ListAudit(ctx, acct.AccountID, nil, 10)
		must(t, err)
		if ap.Total != 0 || len(ap.Items) != 0 {
			t.Errorf("after pruning everything: total %d, %d items", ap.Total, len(ap.Items))
		}
	})
}

// A database migrated with rows already in it starts its counters from them.
func TestCountsMigrateFromExistingRows(t *testing.T) {
	for name, st := range freshStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			must(t, st.MigrateTo(ctx, 7))
			acct, err := st.CreateAccount(ctx, "old")
			must(t, err)
			now := store.Now()
			for range 5 {
				must(t, st.DB().Exec(`INSERT INTO api_keys (id, account_id, token, name, origins, created, changed)
					VALUES (?, ?, ?, 'k', '[]', ?, ?)`, uuid.NewString(), acct.AccountID.String(), uuid.NewString(), now, now).Error)
			}
			must(t, st.Migrate(ctx))
			createKey(t, st, acct.AccountID, nil)
			p, err := st.ListAPIKeys(ctx, acct.AccountID, nil, 10)
			must(t, err)
			if p.Total != 6 || len(p.Items) != 6 {
				t.Errorf("total %d, %d items; want 6", p.Total, len(p.Items))
			}
		})
	}
}
