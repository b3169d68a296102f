package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Audited actions and their targets.
const (
	ActionKeyCreate     = "api_key.create"
	ActionKeyChange     = "api_key.change"
	ActionKeyRotate     = "api_key.rotate"
	ActionKeyDelete     = "api_key.delete"
	ActionDatasetCreate = "dataset.create"
	ActionDatasetChange = "dataset.change"
	ActionDatasetDelete = "dataset.delete"
	ActionDatasetUpload = "dataset.upload"
	ActionGrantCreate   = "grant.create"
	ActionGrantDelete   = "grant.delete"

	TargetKey     = "api_key"
	TargetDataset = "dataset"
	TargetGrant   = "grant"
)

// DefaultAuditRetention is how long audit events are kept unless configured.
const DefaultAuditRetention = 400 * 24 * time.Hour

// AuditEvent is one entry of an account's audit trail. Changes maps a field to [before, after];
// secrets (key tokens) never appear in it.
type AuditEvent struct {
	ID         uuid.UUID `gorm:"primaryKey"`
	AccountID  uuid.UUID
	At         time.Time
	ActorID    *uuid.UUID
	ActorName  *string
	Action     string
	TargetType string
	TargetID   uuid.UUID
	Changes    JSON
}

func (AuditEvent) TableName() string { return "audit_events" }

// Actor is who makes a change: the principal of the request.
type Actor struct {
	ID   uuid.UUID
	Name string
}

type actorKey struct{}

// WithActor tells the store who makes the changes done with ctx (for the audit trail).
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// audit records a change in tx, the transaction that makes it: the trail holds exactly what
// was committed. Without an actor in ctx (the admin CLI, tests) the actor is null.
func (s *Store) audit(ctx context.Context, tx *gorm.DB, accountID uuid.UUID, action, targetType string, targetID uuid.UUID, changes map[string][2]any) error {
	if changes == nil {
		changes = map[string][2]any{}
	}
	b, err := json.Marshal(changes)
	if err != nil {
		return fmt.Errorf("audit %s: encode changes: %w", action, err)
	}
	e := AuditEvent{ID: uuid.New(), AccountID: accountID, At: Now(), Action: action,
		TargetType: targetType, TargetID: targetID, Changes: b}
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		e.ActorID, e.ActorName = &a.ID, &a.Name
	}
	if err := tx.Create(&e).Error; err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// ListAudit pages through an account's audit trail, newest first.
func (s *Store) ListAudit(ctx context.Context, accountID uuid.UUID, cur *Cursor, limit int) (Page[AuditEvent], error) {
	var page Page[AuditEvent]
	db := s.db.WithContext(ctx)
	var err error
	if page.Total, err = accountCount(db, accountID, "audit_events"); err != nil {
		return page, err
	}
	if err := auditPage(db, accountID, cur, limit).Find(&page.Items).Error; err != nil {
		return page, fmt.Errorf("list audit events: %w", err)
	}
	pageOf(&page, limit, func(e *AuditEvent) Cursor { return Cursor{Created: e.At, ID: e.ID} })
	return page, nil
}

// auditPage is the statement of a page of the trail: a range of audit_events_page, walked
// backwards.
func auditPage(db *gorm.DB, accountID uuid.UUID, cur *Cursor, limit int) *gorm.DB {
	return before(db.Model(&AuditEvent{}).Where("account_id = ?", accountID.String()), cur).Order("at DESC, id DESC").Limit(limit + 1)
}

// PruneAudit deletes the audit events older than before, and returns how many. It deletes in
// batches of RetentionBatch rows (audit_events_at finds them), each its own statement: one
// statement over millions of rows would hold SQLite's only writer, and PostgreSQL's row locks
// and the account counters' rows, for as long as it ran (issue #20).
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	return s.deleteBatches(ctx, "prune audit events",
		"DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ? ORDER BY at LIMIT ?)", before.UTC())
}

// deleteBatches runs stmt (whose last parameter is the batch size) until a batch deletes fewer
// rows than the batch size, and returns the rows deleted.
func (s *Store) deleteBatches(ctx context.Context, what, stmt string, args ...any) (int64, error) {
	batch := s.retentionBatch
	if batch <= 0 {
		batch = RetentionBatch
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("%s: %w", what, err)
		}
		res := s.db.WithContext(ctx).Exec(stmt, append(args, batch)...)
		if res.Error != nil {
			return total, fmt.Errorf("%s: %w", what, res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < int64(batch) {
			return total, nil
		}
	}
}

// keyFields is what the audit trail shows of a key: every setting, never the token.
func keyFields(k APIKey) map[string]any {
	if k.ID == uuid.Nil {
		return map[string]any{}
	}
	// Named and shaped as APIKey in the API, so a change reads as the setting it was
	// (TestAuditListsEverySetting holds this list to the spec's settable fields).
	var rateLimit any
	if k.RateLimitRPS != nil && k.RateLimitBurst != nil {
		rateLimit = map[string]int{"requests_per_second": *k.RateLimitRPS, "burst": *k.RateLimitBurst}
	}
	return map[string]any{
		"name": k.Name, "description": k.Description, "user_agent": k.UserAgent,
		"origins": []string(k.Origins), "expires_at": k.ExpiresAt, "enabled": k.Enabled,
		"dataset_ids": k.DatasetIDs, "ip_ranges": k.IPRanges,
		"rate_limit": rateLimit, "monthly_quota": k.MonthlyQuota,
	}
}

func keyDiff(before, after APIKey) map[string][2]any {
	return diff(keyFields(before), keyFields(after))
}

// datasetFields is what the audit trail shows of a dataset.
func datasetFields(d Dataset) map[string]any {
	if d.ID == uuid.Nil {
		return map[string]any{}
	}
	return map[string]any{
		"name": d.Name, "description": d.Description, "kind": d.Kind, "visibility": d.Visibility,
		"format": d.Format, "minzoom": d.MinZoom, "maxzoom": d.MaxZoom, "bounds": d.Bounds,
		"center": d.Center, "attribution": d.Attribution, "vector_layers": d.VectorLayers,
		"tile_size": d.TileSize, "access_version": d.AccessVersion, "has_tiles": d.TileFile != nil,
		// The upstream's headers are secrets: the trail shows that they changed (their sealed
		// form changes), never what they are.
		"upstream_url": d.UpstreamURL, "upstream_missing": d.UpstreamMissing, "upstream_tilejson": d.UpstreamTileJSON,
		"upstream_headers": sealedMarker(d.UpstreamHeaders),
	}
}

// sealedMarker stands for a sealed secret in the audit trail: a short digest of its sealed
// form (which changes with every new value), or nil.
func sealedMarker(sealed *string) any {
	if sealed == nil {
		return nil
	}
	sum := sha256.Sum256([]byte(*sealed))
	return "sealed:" + hex.EncodeToString(sum[:4])
}

// grantFields is what the audit trail shows of a grant.
func grantFields(g Grant) map[string]any {
	if g.ID == uuid.Nil {
		return map[string]any{}
	}
	return map[string]any{"dataset_id": g.DatasetID, "account_id": g.AccountID, "principal_id": g.PrincipalID}
}

func grantDiff(before, after Grant) map[string][2]any {
	return diff(grantFields(before), grantFields(after))
}

func datasetDiff(before, after Dataset) map[string][2]any {
	return diff(datasetFields(before), datasetFields(after))
}

// diff lists the fields whose JSON form differs between before and after (a field absent on
// one side is null there), as [before, after].
func diff(before, after map[string]any) map[string][2]any {
	out := map[string][2]any{}
	for _, m := range []map[string]any{before, after} {
		for name := range m {
			if _, done := out[name]; done {
				continue
			}
			b, a := jsonValue(before[name]), jsonValue(after[name])
			if !reflect.DeepEqual(b, a) {
				out[name] = [2]any{b, a}
			}
		}
	}
	return out
}

// jsonValue is v as it will read back from JSON, so equal values compare equal whatever their
// Go types (a nil pointer and a missing field are both null).
func jsonValue(v any) any {
	var b []byte
	if j, ok := v.(JSON); ok {
		b = j // already JSON (json.Marshal would base64 it)
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil
		}
	}
	var out any
	if len(b) == 0 || json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}
