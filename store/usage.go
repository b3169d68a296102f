package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Credentials of usage rows: what authorised (or named) the request.
const (
	CredentialKey    = "key"
	CredentialToken  = "token"
	CredentialPublic = "public"
)

// UsageRow is one hour's counts of one (key, dataset, credential, reason). KeyID is uuid.Nil for
// traffic without a key; Reason is "" for served tiles and a refusal reason otherwise.
type UsageRow struct {
	Hour       int64 // the hour's start, unix seconds (UTC)
	KeyID      uuid.UUID
	DatasetID  uuid.UUID
	Credential string
	Reason     string
	Served     int64
	Bytes      int64
	Refused    int64
}

// usageColumns is the number of parameters of a row in AddUsage's statement.
const usageColumns = 8

// maxUsageRowsPerStatement keeps a statement under both engines' parameter limits (SQLite
// 32766, PostgreSQL 65535).
const maxUsageRowsPerStatement = 4000

// AddUsage adds counts to the usage rows: one INSERT … ON CONFLICT DO UPDATE statement that adds
// to what is there (replicas' counts add up), in the rows' key order so that concurrent flushes
// of different replicas lock rows in the same order. More than maxUsageRowsPerStatement rows take
// several statements in one transaction: all are counted, or none.
func (s *Store) AddUsage(ctx context.Context, rows []UsageRow) error {
	if len(rows) == 0 {
		return nil
	}
	rows = append([]UsageRow(nil), rows...) // sorted here; the caller's slice may be read meanwhile
	sort.Slice(rows, func(i, j int) bool { return usageLess(&rows[i], &rows[j]) })
	if len(rows) <= maxUsageRowsPerStatement {
		return addUsage(s.db.WithContext(ctx), rows)
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for len(rows) > 0 {
			n := min(len(rows), maxUsageRowsPerStatement)
			if err := addUsage(tx, rows[:n]); err != nil {
				return err
			}
			rows = rows[n:]
		}
		return nil
	})
}

func addUsage(db *gorm.DB, rows []UsageRow) error {
	var b strings.Builder
	b.WriteString("INSERT INTO usage_hours (hour, key_id, dataset_id, credential, reason, served, bytes, refused) VALUES ")
	args := make([]any, 0, len(rows)*usageColumns)
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?)")
		args = append(args, r.Hour, r.KeyID.String(), r.DatasetID.String(), r.Credential, r.Reason, r.Served, r.Bytes, r.Refused)
	}
	b.WriteString(" ON CONFLICT (hour, key_id, dataset_id, credential, reason) DO UPDATE SET" +
		" served = usage_hours.served + excluded.served, bytes = usage_hours.bytes + excluded.bytes," +
		" refused = usage_hours.refused + excluded.refused")
	if err := db.Exec(b.String(), args...).Error; err != nil {
		return fmt.Errorf("write usage (%d rows): %w", len(rows), err)
	}
	return nil
}

func usageLess(a, b *UsageRow) bool {
	if a.Hour != b.Hour {
		return a.Hour < b.Hour
	}
	if c := strings.Compare(a.KeyID.String(), b.KeyID.String()); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.DatasetID.String(), b.DatasetID.String()); c != 0 {
		return c < 0
	}
	if a.Credential != b.Credential {
		return a.Credential < b.Credential
	}
	return a.Reason < b.Reason
}

// UsageBucket is a bucket's sums of one (key, dataset, credential, reason).
type UsageBucket struct {
	Start      int64 // unix seconds
	KeyID      uuid.UUID
	DatasetID  uuid.UUID
	Credential string
	Reason     string
	Served     int64
	Bytes      int64
	Refused    int64
}

// UsageQuery selects usage rows: of one key or of one dataset, hours in [From, To), summed per
// bucket of Bucket seconds (3600 or 86400; buckets start at multiples of it, UTC).
type UsageQuery struct {
	KeyID, DatasetID *uuid.UUID
	From, To         int64
	Bucket           int64
}

type usageRaw struct {
	Start                  int64
	KeyID, DatasetID       string
	Credential, Reason     string
	Served, Bytes, Refused int64
}

// usageQuery is Usage's statement: a range of usage_hours_key or usage_hours_dataset.
func usageQuery(db *gorm.DB, q UsageQuery) (*gorm.DB, error) {
	where, arg := "key_id = ?", ""
	switch {
	case q.KeyID != nil:
		arg = q.KeyID.String()
	case q.DatasetID != nil:
		where, arg = "dataset_id = ?", q.DatasetID.String()
	default:
		return nil, fmt.Errorf("usage query names no key and no dataset")
	}
	if q.Bucket <= 0 {
		return nil, fmt.Errorf("usage query: bucket %d", q.Bucket)
	}
	bucket := fmt.Sprintf("(hour - hour %% %d)", q.Bucket) // hour ≥ 0: the bucket's start
	sql := "SELECT " + bucket + " AS start, key_id, dataset_id, credential, reason," +
		" SUM(served) AS served, SUM(bytes) AS bytes, SUM(refused) AS refused FROM usage_hours" +
		" WHERE " + where + " AND hour >= ? AND hour < ?" +
		" GROUP BY " + bucket + ", key_id, dataset_id, credential, reason ORDER BY start"
	return db.Raw(sql, arg, q.From, q.To), nil
}

// Usage returns the query's sums per bucket, oldest first.
func (s *Store) Usage(ctx context.Context, q UsageQuery) ([]UsageBucket, error) {
	var raw []usageRaw
	stmt, err := usageQuery(s.db.WithContext(ctx), q)
	if err != nil {
		return nil, err
	}
	if err := stmt.Scan(&raw).Error; err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	out := make([]UsageBucket, len(raw))
	for i, r := range raw {
		k, err := uuid.Parse(r.KeyID)
		if err != nil {
			return nil, fmt.Errorf("read usage: key id %q: %w", r.KeyID, err)
		}
		d, err := uuid.Parse(r.DatasetID)
		if err != nil {
			return nil, fmt.Errorf("read usage: dataset id %q: %w", r.DatasetID, err)
		}
		out[i] = UsageBucket{Start: r.Start, KeyID: k, DatasetID: d, Credential: r.Credential, Reason: r.Reason,
			Served: r.Served, Bytes: r.Bytes, Refused: r.Refused}
	}
	return out, nil
}

// ServedSince returns the tiles each key served from since (unix seconds) on, as flushed by
// every replica: one statement. Keys that served none are absent.
func (s *Store) ServedSince(ctx context.Context, keys []uuid.UUID, since int64) (map[uuid.UUID]int64, error) {
	out := make(map[uuid.UUID]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.String()
	}
	var raw []struct {
		KeyID  string
		Served int64
	}
	err := s.db.WithContext(ctx).Raw("SELECT key_id, SUM(served) AS served FROM usage_hours"+
		" WHERE key_id IN ? AND hour >= ? AND reason = '' GROUP BY key_id", ids, since).Scan(&raw).Error
	if err != nil {
		return nil, fmt.Errorf("read usage since %d: %w", since, err)
	}
	for _, r := range raw {
		if id, err := uuid.Parse(r.KeyID); err == nil {
			out[id] = r.Served
		}
	}
	return out, nil
}

// DeleteUsageBefore deletes the usage rows of hours before (unix seconds) and returns how many,
// in batches as PruneAudit does (the primary key, which starts with hour, finds them).
func (s *Store) DeleteUsageBefore(ctx context.Context, before int64) (int64, error) {
	row := "rowid" // SQLite's
	if s.dialect == Postgres {
		row = "ctid"
	}
	return s.deleteBatches(ctx, fmt.Sprintf("delete usage before %d", before),
		"DELETE FROM usage_hours WHERE "+row+" IN (SELECT "+row+" FROM usage_hours WHERE hour < ? LIMIT ?)", before)
}

// WithUsageLock runs fn unless another replica is running it: on PostgreSQL under a transaction
// advisory lock (pg_try_advisory_xact_lock; ran is false when it is held elsewhere), on SQLite
// (one process) always.
func (s *Store) WithUsageLock(ctx context.Context, fn func(ctx context.Context) error) (ran bool, err error) {
	if s.dialect != Postgres {
		return true, fn(ctx)
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var got bool
		if err := tx.Raw("SELECT pg_try_advisory_xact_lock(?)", usageLockID).Scan(&got).Error; err != nil {
			return fmt.Errorf("usage retention lock: %w", err)
		}
		if !got {
			return nil
		}
		ran = true
		return fn(ctx)
	})
	return ran, err
}

// usageLockID is the advisory lock of the usage retention job ("tgusage").
const usageLockID int64 = 0x7467757361676500

// Heartbeat records that replica id is alive and returns how many replicas were seen within
// live (itself included), by the database's clock. PostgreSQL only: on SQLite it answers 1.
func (s *Store) Heartbeat(ctx context.Context, id uuid.UUID, live time.Duration) (int, error) {
	if s.dialect != Postgres {
		return 1, nil
	}
	db := s.db.WithContext(ctx)
	err := db.Exec("INSERT INTO replicas (id, seen) VALUES (?, now()) ON CONFLICT (id) DO UPDATE SET seen = excluded.seen", id.String()).Error
	if err != nil {
		return 0, fmt.Errorf("replica heartbeat: %w", err)
	}
	var n int
	err = db.Raw("SELECT count(*) FROM replicas WHERE seen > now() - make_interval(secs => ?)", live.Seconds()).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("count live replicas: %w", err)
	}
	return max(n, 1), nil
}

// LeaveReplicas removes replica id (it is shutting down) and rows not seen for a day.
func (s *Store) LeaveReplicas(ctx context.Context, id uuid.UUID) error {
	if s.dialect != Postgres {
		return nil
	}
	err := s.db.WithContext(ctx).Exec("DELETE FROM replicas WHERE id = ? OR seen < now() - interval '1 day'", id.String()).Error
	if err != nil {
		return fmt.Errorf("leave replicas: %w", err)
	}
	return nil
}
