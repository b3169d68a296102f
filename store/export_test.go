package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// SetNameSource makes generated key names come from next until the returned restore runs.
func SetNameSource(next func() (string, error)) (restore func()) {
	prev := generateName
	generateName = next
	return func() { generateName = prev }
}

// MigrateTo applies the migrations up to version and no further (a database as an older
// tilegate left it).
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	p, err := s.migrations()
	if err != nil {
		return err
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		return fmt.Errorf("migrate to %d: %w", version, err)
	}
	return nil
}

// Plans returns the plan the database chooses for each statement the plan test holds to an
// index, by name, built exactly as the store builds it.
func (s *Store) Plans(ctx context.Context, accountID, datasetID uuid.UUID, cur Cursor) (map[string]string, error) {
	dry := s.db.Session(&gorm.Session{DryRun: true, NewDB: true})
	var taken bool
	var n int64
	stmts := map[string]*gorm.Statement{
		"key page 1":          keyPage(dry, accountID, nil, 100).Find(&[]APIKey{}).Statement,
		"key page after":      keyPage(dry, accountID, &cur, 100).Find(&[]APIKey{}).Statement,
		"key page with usage": keyPageServed(dry, accountID, &cur, 100, cur.Created.Unix()).Find(&[]APIKey{}).Statement,
		"audit page 1":        auditPage(dry, accountID, nil, 100).Find(&[]AuditEvent{}).Statement,
		"audit page after":    auditPage(dry, accountID, &cur, 100).Find(&[]AuditEvent{}).Statement,
		"dataset page after":  datasetPage(dry, accountID, &cur, 100).Scan(&[]Dataset{}).Statement,
		"grants of a dataset": grantsOf(dry, datasetID).Find(&[]Grant{}).Statement,
		"account count":       accountCountQuery(dry, accountID, "api_keys").Scan(&n).Statement,
		"key name lookup":     nameTaken(dry, accountID, "swift-harbor-4821").Scan(&taken).Statement,
	}
	var batch []string
	if err := s.db.WithContext(ctx).Model(&Dataset{}).Where("account_id = ?", accountID.String()).Order("id").Limit(50).Pluck("id", &batch).Error; err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(batch))
	for i, id := range batch {
		ids[i] = uuid.MustParse(id)
	}
	caller := Caller{AccountID: accountID, PrincipalID: uuid.New()}
	stmts["token batch of 50"] = accessQuery(dry, "d.id", caller, ids).Scan(&[]struct{ ID string }{}).Statement
	month := Now().Unix() - 30*86400
	for name, q := range map[string]UsageQuery{
		"usage of a key":     {KeyID: &ids[0], From: month, To: Now().Unix(), Bucket: 86400},
		"usage of a dataset": {DatasetID: &ids[0], From: month, To: Now().Unix(), Bucket: 3600},
	} {
		stmt, err := usageQuery(dry, q)
		if err != nil {
			return nil, err
		}
		stmts[name] = stmt.Scan(&[]usageRaw{}).Statement
	}
	out := map[string]string{}
	for name, st := range stmts {
		plan, err := s.explain(ctx, st.SQL.String(), st.Vars)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = plan
	}
	return out, nil
}

func (s *Store) explain(ctx context.Context, query string, vars []any) (string, error) {
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback() }()
	prefix := "EXPLAIN QUERY PLAN "
	if s.dialect == Postgres {
		prefix = "EXPLAIN "
		// The test's grants table holds a few dozen rows, where a sequential scan is right;
		// without one the planner shows which index it takes.
		if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			return "", err
		}
	}
	rows, err := tx.QueryContext(ctx, prefix+query, vars...)
	if err != nil {
		return "", fmt.Errorf("explain %s: %w", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for rows.Next() {
		cells := make([]any, len(cols))
		for i := range cells {
			cells[i] = new(any)
		}
		if err := rows.Scan(cells...); err != nil {
			return "", err
		}
		// PostgreSQL: one column of text; SQLite: id, parent, notused, detail.
		fmt.Fprintln(&b, *cells[len(cells)-1].(*any))
	}
	return b.String(), rows.Err()
}

// SetRetentionBatch sets the rows a retention delete removes per statement.
func (s *Store) SetRetentionBatch(n int) { s.retentionBatch = n }
