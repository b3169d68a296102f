package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// BulkKeyBatch is how many keys one statement of BulkInsertKeys inserts (10 parameters each,
// well under SQLite's and PostgreSQL's limits).
const BulkKeyBatch = 1000

// BulkInsertKeys adds n unscoped, enabled keys to an account in one transaction, created one
// microsecond apart from start on, named "bulk-<i>" (chosen names, not generated ones): the
// fill of a large account for benchmarks and plan tests, without the audit trail a create
// writes. It writes with multi-row INSERTs through database/sql, not GORM, so a million keys take
// seconds, not minutes.
func (s *Store) BulkInsertKeys(ctx context.Context, accountID uuid.UUID, n int, start time.Time) error {
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("bulk insert keys: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	const cols = 10
	token := make([]byte, 18)
	for done := 0; done < n; {
		rows := min(BulkKeyBatch, n-done)
		var q strings.Builder
		q.WriteString("INSERT INTO api_keys (id, account_id, token, name, origins, created, changed, enabled, dataset_scoped, name_generated) VALUES ")
		args := make([]any, 0, rows*cols)
		for r := range rows {
			if r > 0 {
				q.WriteByte(',')
			}
			q.WriteByte('(')
			for c := range cols {
				if c > 0 {
					q.WriteByte(',')
				}
				if s.dialect == Postgres {
					fmt.Fprintf(&q, "$%d", r*cols+c+1)
				} else {
					q.WriteByte('?')
				}
			}
			q.WriteByte(')')
			if _, err := rand.Read(token); err != nil {
				return fmt.Errorf("bulk insert keys: %w", err)
			}
			i := done + r
			at := start.Add(time.Duration(i) * time.Microsecond).UTC()
			args = append(args, uuid.NewString(), accountID.String(), base64.RawURLEncoding.EncodeToString(token),
				fmt.Sprintf("bulk-%d", i), "[]", at, at, true, false, false)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("bulk insert keys: %w", err)
		}
		done += rows
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("bulk insert keys: %w", err)
	}
	return nil
}
