package store_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/store"
)

// planRule is what one statement's plan must show: each of want (regular expressions), none
// of the forbidden patterns.
type planRule struct {
	want []string
}

// Every statement that can grow with an account is answered by an index range, without a scan
// or a sort, on both engines: a later change that falls back to a scan fails here.
func TestPagedListsUseIndexRanges(t *testing.T) {
	rules := map[string]map[string]planRule{
		"postgres": {
			"key page 1":          {want: []string{`Index Scan using api_keys_page on api_keys .*\n\s+Index Cond: \(account_id = `}},
			"key page after":      {want: []string{`Index Scan using api_keys_page on api_keys .*\n\s+Index Cond: \(\(account_id = .*\) AND \(ROW\(created, id\) > ROW\(`}},
			"key page with usage": {want: []string{`Index Scan using api_keys_page on api_keys .*\n\s+Index Cond: \(\(account_id = .*\) AND \(ROW\(created, id\) > ROW\(`, `(Index Scan using usage_hours_key on usage_hours u|Bitmap Index Scan on usage_hours_key) .*\n\s+Index Cond: \(\(key_id = api_keys.id\) AND \(hour >= `, `Index Scan using account_counts_pkey on account_counts c`}},
			"usage of a key":      {want: []string{`(Bitmap Index Scan on|Index Scan using) usage_hours_key .*\n\s+Index Cond: \(\(key_id = .*\) AND \(hour >= .*\) AND \(hour < `}},
			"usage of a dataset":  {want: []string{`(Bitmap Index Scan on|Index Scan using) usage_hours_dataset .*\n\s+Index Cond: \(\(dataset_id = .*\) AND \(hour >= .*\) AND \(hour < `}},
			"token batch of 50":   {want: []string{`(Bitmap Index Scan on|Index Scan using) datasets_pkey.*\n\s+Index Cond: \(id = ANY `, `Index Scan using grants_(grantee_account|account) on grants g `, `Index (Only )?Scan using grants_principal on grants g_1`}},
			"audit page 1":        {want: []string{`Index Scan Backward using audit_events_page on audit_events .*\n\s+Index Cond: \(account_id = `}},
			"audit page after":    {want: []string{`Index Scan Backward using audit_events_page on audit_events .*\n\s+Index Cond: \(\(account_id = .*\) AND \(ROW\(at, id\) < ROW\(`}},
			"dataset page after":  {want: []string{`Index Scan using datasets_page on datasets .*\n\s+Index Cond: \(\(account_id = .*\) AND \(ROW\(created, id\) > ROW\(`, `Index Scan using grants_grantee_account on grants g`, `Index Scan using datasets_pkey on datasets d`}},
			"grants of a dataset": {want: []string{`Index Scan using grants_page on grants .*\n\s+Index Cond: \(dataset_id = `}},
			"account count":       {want: []string{`Index Scan using account_counts_pkey on account_counts .*\n\s+Index Cond: \(\(account_id = .*\) AND \(kind = `}},
			"key name lookup":     {want: []string{`Index Only Scan using api_keys_name on api_keys .*\n\s+Index Cond: \(\(account_id = .*\) AND \(name = `}},
		},
		"sqlite": {
			"key page 1":          {want: []string{`^SEARCH api_keys USING INDEX api_keys_page \(account_id=\?\)$`}},
			"key page after":      {want: []string{`^SEARCH api_keys USING INDEX api_keys_page \(account_id=\? AND \(created,id\)>\(\?,\?\)\)$`}},
			"key page with usage": {want: []string{`SEARCH api_keys USING INDEX api_keys_page \(account_id=\? AND \(created,id\)>\(\?,\?\)\)`, `SEARCH u USING INDEX usage_hours_key \(key_id=\? AND hour>\?\)`, `SEARCH c USING INDEX sqlite_autoindex_account_counts_1 \(account_id=\? AND kind=\?\)`}},
			"usage of a key":      {want: []string{`^SEARCH usage_hours USING INDEX usage_hours_key \(key_id=\? AND hour>\? AND hour<\?\)$`}},
			"usage of a dataset":  {want: []string{`^SEARCH usage_hours USING INDEX usage_hours_dataset \(dataset_id=\? AND hour>\? AND hour<\?\)$`}},
			"token batch of 50":   {want: []string{`SEARCH d USING (COVERING )?INDEX sqlite_autoindex_datasets_1 \(id=\?\)`, `SEARCH g USING COVERING INDEX grants_account \(dataset_id=\? AND account_id=\?\)`, `SEARCH g USING COVERING INDEX grants_principal \(dataset_id=\? AND principal_id=\?\)`}},
			"audit page 1":        {want: []string{`^SEARCH audit_events USING INDEX audit_events_page \(account_id=\?\)$`}},
			"audit page after":    {want: []string{`^SEARCH audit_events USING INDEX audit_events_page \(account_id=\? AND \(at,id\)<\(\?,\?\)\)$`}},
			"dataset page after":  {want: []string{`SEARCH datasets USING INDEX datasets_page \(account_id=\? AND \(created,id\)>\(\?,\?\)\)`, `SEARCH g USING INDEX grants_grantee_account \(account_id=\?\)`}},
			"grants of a dataset": {want: []string{`^SEARCH grants USING INDEX grants_page \(dataset_id=\?\)$`}},
			"account count":       {want: []string{`^SEARCH account_counts USING INDEX sqlite_autoindex_account_counts_1 \(account_id=\? AND kind=\?\)$`}},
			"key name lookup":     {want: []string{`SEARCH api_keys USING COVERING INDEX api_keys_name \(account_id=\? AND name=\?\)`}},
		},
	}
	// A scan of a whole table, or sorting what an index should have delivered in order. The
	// shared-datasets half of a dataset page sorts the account's grants (a handful), and the
	// merge of the two halves sorts at most 2×(limit+1) rows.
	forbidden := map[string][]string{
		"postgres": {`Seq Scan`, `Filter:`},
		"sqlite":   {`(?m)^SCAN (api_keys|audit_events|datasets|grants|usage_hours|d|g)\b`, `USE TEMP B-TREE FOR ORDER BY`},
	}
	// The shared half of a dataset page reads the account's grants and filters their datasets
	// by the cursor (a handful of rows: shares, not the account's own datasets).
	// A usage range groups and orders one key's (or dataset's) rows of the range: bounded by its
	// hours, not by the account.
	sortAllowed := map[string]bool{"dataset page after": true, "usage of a key": true, "usage of a dataset": true}
	// A key's usage rows within the month are read by the index and filtered on reason (the
	// refusals of that key's hours: bounded by the key's own traffic, not the account's size).
	filterAllowed := map[string]bool{"key page with usage": true}
	for dialect, st := range freshStores(t) {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			big, dataset := fillLargeAccount(t, st)
			plans, err := st.Plans(ctx, big, dataset, store.Cursor{Created: store.Now().Add(-time.Hour), ID: uuid.New()})
			must(t, err)
			checkPlans(t, dialect, plans, rules[dialect], forbidden[dialect], sortAllowed, filterAllowed)
		})
	}
}

func checkPlans(t *testing.T, dialect string, plans map[string]string, rules map[string]planRule, forbidden []string, sortAllowed, filterAllowed map[string]bool) {
	for name, rule := range rules {
		plan, ok := plans[name]
		if !ok {
			t.Errorf("%s: no plan", name)
			continue
		}
		for _, w := range rule.want {
			if !regexp.MustCompile(`(?m)` + w).MatchString(plan) {
				t.Errorf("%s: plan does not match %s:\n%s", name, w, plan)
			}
		}
		for _, f := range forbidden {
			if (sortAllowed[name] && (strings.Contains(f, "B-TREE") || f == "Filter:")) || (filterAllowed[name] && f == "Filter:") {
				continue
			}
			if regexp.MustCompile(f).MatchString(plan) {
				t.Errorf("%s: plan has %s:\n%s", name, f, plan)
			}
		}
		if dialect == "postgres" && !sortAllowed[name] && strings.Contains(plan, "Sort") {
			t.Errorf("%s: plan sorts:\n%s", name, plan)
		}
	}
	for name := range plans {
		if _, ok := rules[name]; !ok {
			t.Errorf("%s: a plan without a rule", name)
		}
	}
}

// fillLargeAccount makes an account large enough that the planners choose as they would in
// production: on PostgreSQL 20,000 keys, 20,000 audit events and 2,000 datasets, beside another
// account of the same size that shares 20 datasets with it, and one of its datasets granted to
// 30 accounts; then ANALYZE. SQLite's planner takes an index range whatever the table's size:
// 500 keys and 50 datasets are enough there (its pure-Go engine is slow under the race
// detector). It returns the large account and that dataset.
func fillLargeAccount(t *testing.T, st *store.Store) (account, dataset uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	must(t, st.Migrate(ctx))
	a, err := st.CreateAccount(ctx, "large")
	must(t, err)
	b, err := st.CreateAccount(ctx, "neighbour")
	must(t, err)
	start := store.Now().Add(-2 * time.Hour)
	keys, datasets := 20000, 2000
	if st.Dialect() == store.SQLite {
		keys, datasets = 500, 50
	}
	for _, acct := range []uuid.UUID{a.AccountID, b.AccountID} {
		must(t, st.BulkInsertKeys(ctx, acct, keys, start))
		// rows(n) yields i (1..n) and uid, a fresh UUID as text.
		rows := func(n int) string {
			return fmt.Sprintf(`(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)
				SELECT i, lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' || substr(h, 17, 4) || '-' || substr(h, 21)) AS uid
				FROM (SELECT i, hex(randomblob(16)) AS h FROM c)) AS s`, n)
		}
		at := "datetime('now', '-' || i || ' seconds')"
		if st.Dialect() == store.Postgres {
			rows = func(n int) string {
				return fmt.Sprintf("(SELECT i, gen_random_uuid() AS uid FROM generate_series(1, %d) AS g(i)) AS s", n)
			}
			at = "now() - i * interval '1 second'"
		}
		must(t, st.DB().Exec("INSERT INTO audit_events (id, account_id, at, action, target_type, target_id, changes) "+
			"SELECT uid, ?, "+at+", 'api_key.create', 'api_key', uid, '{}' FROM "+rows(keys), acct.String()).Error)
		must(t, st.DB().Exec("INSERT INTO datasets (id, account_id, name, kind, visibility, format, minzoom, maxzoom, created, changed) "+
			"SELECT uid, ?, 'd' || i, 'vector', 'private', 'pbf', 0, 14, "+at+", "+at+" FROM "+rows(datasets), acct.String()).Error)
	}
	var theirs []string
	must(t, st.DB().Model(&store.Dataset{}).Where("account_id = ?", b.AccountID.String()).Limit(21).Pluck("id", &theirs).Error)
	for _, d := range theirs[:20] {
		_, err := st.CreateGrant(ctx, b.AccountID, uuid.MustParse(d), &a.AccountID, nil)
		must(t, err)
	}
	var ours []string
	must(t, st.DB().Model(&store.Dataset{}).Where("account_id = ?", a.AccountID.String()).Limit(1).Pluck("id", &ours).Error)
	dataset = uuid.MustParse(ours[0])
	for range 30 {
		other, err := st.CreateAccount(ctx, "grantee")
		must(t, err)
		_, err = st.CreateGrant(ctx, a.AccountID, dataset, &other.AccountID, nil)
		must(t, err)
	}
	// Five hours of usage per key of the large account (served, and refused for one reason),
	// so the planner sees usage_hours as it is in production: many keys, few hours each.
	now := store.Now().Unix() / 3600 * 3600
	hours := "(SELECT CAST(? AS bigint) AS hour UNION ALL SELECT ? UNION ALL SELECT ? UNION ALL SELECT ? UNION ALL SELECT ?)"
	for _, reason := range []string{"", "origin"} {
		must(t, st.DB().Exec("INSERT INTO usage_hours (hour, key_id, dataset_id, credential, reason, served, refused) "+
			"SELECT h.hour, k.id, k.id, 'key', ?, 3, 1 FROM api_keys k CROSS JOIN "+hours+" h WHERE k.account_id = ?",
			reason, now, now-3600, now-7200, now-10800, now-14400, a.AccountID.String()).Error)
	}
	must(t, st.DB().Exec("ANALYZE").Error)
	return a.AccountID, dataset
}

// Walks over rows that share one timestamp see each row once, in order, on every paged list
// (the row comparison orders by id within a timestamp).
func TestKeysetWalksWithTies(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		ctx := context.Background()
		st := db.Store
		acct, err := st.CreateAccount(ctx, "ties")
		must(t, err)
		owner, err := st.CreateAccount(ctx, "sharer")
		must(t, err)
		same := store.Now()
		for i := range 13 {
			e := store.AuditEvent{ID: uuid.New(), AccountID: acct.AccountID, At: same, Action: store.ActionKeyCreate,
				TargetType: store.TargetKey, TargetID: uuid.New(), Changes: store.JSON(`{}`)}
			must(t, st.DB().Create(&e).Error)
			for _, a := range []uuid.UUID{acct.AccountID, owner.AccountID} {
				d := store.Dataset{ID: uuid.New(), AccountID: a, Name: fmt.Sprint("d", i), Kind: "vector", Visibility: store.Private,
					Format: "pbf", MaxZoom: 14, AccessVersion: 1, Created: same, Changed: same}
				must(t, st.DB().Create(&d).Error)
				if a == owner.AccountID {
					_, err := st.CreateGrant(ctx, owner.AccountID, d.ID, &acct.AccountID, nil)
					must(t, err)
				}
			}
		}
		walk := func(name string, want int, page func(cur *store.Cursor) ([]store.Cursor, *store.Cursor)) {
			var cur *store.Cursor
			var seen []store.Cursor
			for range want {
				items, next := page(cur)
				seen = append(seen, items...)
				if cur = next; cur == nil {
					break
				}
			}
			if len(seen) != want {
				t.Errorf("%s: %d rows, want %d", name, len(seen), want)
			}
			for i := 1; i < len(seen); i++ {
				if !seen[i].Created.Equal(seen[0].Created) || seen[i].ID == seen[i-1].ID {
					t.Errorf("%s: row %d %+v after %+v", name, i, seen[i], seen[i-1])
				}
			}
		}
		walk("audit", 13, func(cur *store.Cursor) ([]store.Cursor, *store.Cursor) {
			p, err := st.ListAudit(ctx, acct.AccountID, cur, 4)
			must(t, err)
			var out []store.Cursor
			for _, e := range p.Items {
				if len(out) > 0 && e.ID.String() >= out[len(out)-1].ID.String() {
					t.Errorf("audit out of order")
				}
				out = append(out, store.Cursor{Created: e.At, ID: e.ID})
			}
			return out, p.Next
		})
		walk("datasets", 26, func(cur *store.Cursor) ([]store.Cursor, *store.Cursor) {
			p, err := st.ListDatasets(ctx, acct.AccountID, cur, 4)
			must(t, err)
			var out []store.Cursor
			for _, d := range p.Items {
				if len(out) > 0 && d.ID.String() <= out[len(out)-1].ID.String() {
					t.Errorf("datasets out of order")
				}
				out = append(out, store.Cursor{Created: d.Created, ID: d.ID})
			}
			return out, p.Next
		})
	})
}
