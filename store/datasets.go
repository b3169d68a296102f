package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tilegate/tilegate/access"
)

// Caller is who asks about datasets: a principal of an account with a role. An API key acts
// as its account with no principal and no role.
type Caller struct {
	AccountID   uuid.UUID
	PrincipalID uuid.UUID
	Role        string
}

// DatasetAccess is a dataset together with the caller's grants on it.
type DatasetAccess struct {
	Dataset
	AccountGrant   bool
	PrincipalGrant bool
}

// Policy is the caller as the access rules know it.
func (c Caller) Policy() access.Caller {
	return access.Caller{Account: c.AccountID, Principal: c.PrincipalID, Role: c.Role}
}

// Facts is what the access rules need of the dataset (the grants are the caller's).
func (a DatasetAccess) Facts() access.Dataset {
	return access.Dataset{Owner: a.AccountID, Visibility: a.Visibility, AccountGrant: a.AccountGrant, PrincipalGrant: a.PrincipalGrant}
}

// See, Use and Own are access.See, Use and Own for this dataset: nil, or why not.
func (a DatasetAccess) See(c Caller) error { return access.See(c.Policy(), a.Facts()) }
func (a DatasetAccess) Use(c Caller) error { return access.Use(c.Policy(), a.Facts()) }
func (a DatasetAccess) Own(c Caller) error { return access.Own(c.Policy(), a.Facts()) }

// Sees and MayUse are See and Use as booleans.
func (a DatasetAccess) Sees(c Caller) bool   { return a.See(c) == nil }
func (a DatasetAccess) MayUse(c Caller) bool { return a.Use(c) == nil }

// DatasetsAccess loads the given datasets (the fields a tile token carries) with the caller's
// grants on them in one statement: metadata and every access check of a token batch cost a
// single round trip. Unknown ids are absent from the map.
func (s *Store) DatasetsAccess(ctx context.Context, c Caller, ids []uuid.UUID) (map[uuid.UUID]DatasetAccess, error) {
	return s.datasetsAccess(s.db.WithContext(ctx), c, ids, false)
}

// datasetsAccess runs the access statement. Token batches (full=false) skip the columns a
// token does not carry; this is their hot statement. It is scanned by hand (GORM's reflective
// scan cost more than the query) but still runs through GORM, so statement counting and error
// translation apply.
func (s *Store) datasetsAccess(db *gorm.DB, c Caller, ids []uuid.UUID, full bool) (map[uuid.UUID]DatasetAccess, error) {
	out := make(map[uuid.UUID]DatasetAccess, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cols := "d.id, d.account_id, d.kind, d.visibility, d.format, d.minzoom, d.maxzoom, d.bounds, d.attribution, d.vector_layers, d.tile_size, d.access_version, d.tile_file"
	if full {
		cols += ", d.name, d.description, d.center, d.created, d.changed, d.upstream_url, d.upstream_headers, d.upstream_missing, d.upstream_tilejson"
	}
	rows, err := accessQuery(db, cols, c, ids).Rows()
	if err != nil {
		return nil, fmt.Errorf("load datasets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a DatasetAccess
		d := &a.Dataset
		dest := []any{&d.ID, &d.AccountID, &d.Kind, &d.Visibility, &d.Format, &d.MinZoom, &d.MaxZoom,
			&d.Bounds, &d.Attribution, &d.VectorLayers, &d.TileSize, &d.AccessVersion, &d.TileFile}
		if full {
			dest = append(dest, &d.Name, &d.Description, &d.Center, &d.Created, &d.Changed,
				&d.UpstreamURL, &d.UpstreamHeaders, &d.UpstreamMissing, &d.UpstreamTileJSON)
		}
		if err := rows.Scan(append(dest, &a.AccountGrant, &a.PrincipalGrant)...); err != nil {
			return nil, fmt.Errorf("scan dataset: %w", err)
		}
		out[d.ID] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load datasets: %w", err)
	}
	return out, nil
}

// accessQuery is datasetsAccess's statement: the datasets by primary key, and the caller's
// grants on each by grants' indexes (the plan test holds it to them with 50 ids).
func accessQuery(db *gorm.DB, cols string, c Caller, ids []uuid.UUID) *gorm.DB {
	return db.Raw(`SELECT `+cols+`,
			EXISTS (SELECT 1 FROM grants g WHERE g.dataset_id = d.id AND g.account_id = ?),
			EXISTS (SELECT 1 FROM grants g WHERE g.dataset_id = d.id AND g.principal_id = ?)
		FROM datasets d WHERE d.id IN ?`, c.AccountID.String(), c.PrincipalID.String(), idStrings(ids))
}

// idStrings passes ids as text: pgx otherwise probes several encode plans for uuid.UUID, building
// an error for each, per parameter.
func idStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// DatasetAccessOne is DatasetsAccess for one id, with every field of the dataset; ErrNotFound
// when there is no such dataset.
func (s *Store) DatasetAccessOne(ctx context.Context, c Caller, id uuid.UUID) (DatasetAccess, error) {
	m, err := s.datasetsAccess(s.db.WithContext(ctx), c, []uuid.UUID{id}, true)
	if err != nil {
		return DatasetAccess{}, err
	}
	a, ok := m[id]
	if !ok {
		return DatasetAccess{}, fmt.Errorf("dataset %s: %w", id, ErrNotFound)
	}
	return a, nil
}

// ListDatasets pages through the datasets of the account and those shared with it: the rows
// access.Listed admits (TestListDatasetsAgreesWithPolicy binds the two).
func (s *Store) ListDatasets(ctx context.Context, accountID uuid.UUID, cur *Cursor, limit int) (Page[Dataset], error) {
	var page Page[Dataset]
	db := s.db.WithContext(ctx)
	// Its own datasets (counted by the triggers) and those granted to it (one grant per shared
	// dataset, never to the owner: a range of grants_grantee_account).
	own, err := accountCount(db, accountID, "datasets")
	if err != nil {
		return page, err
	}
	if err := db.Model(&Grant{}).Where("account_id = ?", accountID.String()).Count(&page.Total).Error; err != nil {
		return page, fmt.Errorf("count shared datasets: %w", err)
	}
	page.Total += own
	if err := datasetPage(db, accountID, cur, limit).Scan(&page.Items).Error; err != nil {
		return page, fmt.Errorf("list datasets: %w", err)
	}
	pageOf(&page, limit, func(d *Dataset) Cursor { return Cursor{Created: d.Created, ID: d.ID} })
	return page, nil
}

// datasetPage is the statement of a page of datasets. "Owned or shared" as one predicate (an
// OR) is no index range, so the page is the first rows of two walks merged: the account's own
// datasets (a range of datasets_page) and those granted to it (its grants, by
// grants_grantee_account; a grant is never to the owning account, and UNION would drop a
// duplicate anyway).
func datasetPage(db *gorm.DB, accountID uuid.UUID, cur *Cursor, limit int) *gorm.DB {
	acct := accountID.String()
	own := after(db.Model(&Dataset{}).Where("account_id = ?", acct), "", cur).Order("created, id").Limit(limit + 1)
	shared := after(db.Table("grants g").Select("d.*").Joins("JOIN datasets d ON d.id = g.dataset_id").
		Where("g.account_id = ?", acct), "d.", cur).Order("d.created, d.id").Limit(limit + 1)
	return db.Raw("SELECT * FROM (?) AS own UNION SELECT * FROM (?) AS shared ORDER BY created, id LIMIT ?", own, shared, limit+1)
}

// CreateDataset stores a new dataset of the account.
func (s *Store) CreateDataset(ctx context.Context, d Dataset) (Dataset, error) {
	if d.ID == uuid.Nil {
		d.ID = uuid.New()
	}
	d.Created = Now()
	d.Changed = d.Created
	d.AccessVersion = 1
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&d).Error; err != nil {
			return fmt.Errorf("create dataset: %w", err)
		}
		return s.audit(ctx, tx, d.AccountID, ActionDatasetCreate, TargetDataset, d.ID, datasetDiff(Dataset{}, d))
	})
	return d, err
}

// UpdateDataset applies change to a dataset of the account inside a transaction. change returns
// whether who may read the dataset changed; then access_version is bumped, which retires every
// outstanding token. A change error aborts the update and is returned as it is.
func (s *Store) UpdateDataset(ctx context.Context, accountID, id uuid.UUID, change func(d *Dataset) (accessChanged bool, err error)) (Dataset, error) {
	var d Dataset
	err := s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		if err := s.lockOwned(tx, "dataset", accountID, id, &d); err != nil {
			return err
		}
		before := d
		bump, err := change(&d)
		if err != nil {
			return err
		}
		if bump {
			d.AccessVersion++
		}
		d.Changed = later(d.Changed)
		res := tx.Select("*").Omit("id", "account_id", "created").Where("id = ?", id).Updates(&d)
		if res.Error != nil {
			return fmt.Errorf("update dataset %s: %w", id, res.Error)
		}
		if res.RowsAffected == 0 {
			// Unreachable while the row is locked; kept so a lost lock can never answer success.
			return fmt.Errorf("dataset %s: %w", id, ErrNotFound)
		}
		if err := s.audit(ctx, tx, accountID, ActionDatasetChange, TargetDataset, id, datasetDiff(before, d)); err != nil {
			return err
		}
		return announce(datasetChange(id))
	})
	return d, err
}

// DeleteDataset removes a dataset of the account with its grants, and returns it (its tile
// file is the caller's to remove).
func (s *Store) DeleteDataset(ctx context.Context, accountID, id uuid.UUID) (Dataset, error) {
	var d Dataset
	err := s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		if err := s.lockOwned(tx, "dataset", accountID, id, &d); err != nil {
			return err
		}
		if err := tx.Where("dataset_id = ?", id).Delete(&Grant{}).Error; err != nil {
			return fmt.Errorf("delete grants of %s: %w", id, err)
		}
		if err := tx.Where("id = ?", id).Delete(&Dataset{}).Error; err != nil {
			return fmt.Errorf("delete dataset %s: %w", id, err)
		}
		if err := s.audit(ctx, tx, accountID, ActionDatasetDelete, TargetDataset, id, datasetDiff(d, Dataset{})); err != nil {
			return err
		}
		return announce(datasetChange(id))
	})
	return d, err
}

// ListGrants returns a dataset's grants, oldest first.
func (s *Store) ListGrants(ctx context.Context, datasetID uuid.UUID) ([]Grant, error) {
	var gs []Grant
	if err := grantsOf(s.db.WithContext(ctx), datasetID).Find(&gs).Error; err != nil {
		return nil, fmt.Errorf("list grants of %s: %w", datasetID, err)
	}
	return gs, nil
}

// grantsOf is the statement listing a dataset's grants: a range of grants_page.
func grantsOf(db *gorm.DB, datasetID uuid.UUID) *gorm.DB {
	return db.Model(&Grant{}).Where("dataset_id = ?", datasetID.String()).Order("created, id")
}

// ErrGrantTarget: the account or principal to grant to does not exist, or is not a valid target.
var ErrGrantTarget = errors.New("invalid grant target")

// CreateGrant shares a dataset of ownerID with another account, or lets one of ownerID's own
// principals use it, and bumps the dataset's access_version.
func (s *Store) CreateGrant(ctx context.Context, ownerID, datasetID uuid.UUID, accountID, principalID *uuid.UUID) (Grant, error) {
	g := Grant{ID: uuid.New(), DatasetID: datasetID, AccountID: accountID, PrincipalID: principalID, Created: Now()}
	err := s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		var n int64
		switch {
		case accountID != nil:
			if *accountID == ownerID {
				return fmt.Errorf("%w: the dataset already belongs to that account", ErrGrantTarget)
			}
			if err := tx.Model(&Account{}).Where("id = ?", *accountID).Count(&n).Error; err != nil {
				return fmt.Errorf("find account: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("%w: no such account", ErrGrantTarget)
			}
		case principalID != nil:
			if err := tx.Model(&Principal{}).Where("id = ? AND account_id = ?", *principalID, ownerID).Count(&n).Error; err != nil {
				return fmt.Errorf("find principal: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("%w: no such principal in the dataset's account", ErrGrantTarget)
			}
		}
		if err := tx.Create(&g).Error; err != nil {
			if errors.Is(err, gorm.ErrDuplicatedKey) {
				return fmt.Errorf("grant: %w", ErrConflict)
			}
			return fmt.Errorf("create grant: %w", err)
		}
		if err := s.audit(ctx, tx, ownerID, ActionGrantCreate, TargetGrant, g.ID, grantDiff(Grant{}, g)); err != nil {
			return err
		}
		return s.bumpAccess(tx, announce, datasetID)
	})
	return g, err
}

// DeleteGrant revokes a grant of a dataset and bumps its access_version.
func (s *Store) DeleteGrant(ctx context.Context, datasetID, grantID uuid.UUID) error {
	return s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		var g Grant
		err := tx.Where("id = ? AND dataset_id = ?", grantID, datasetID).Take(&g).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("grant %s: %w", grantID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("get grant %s: %w", grantID, err)
		}
		res := tx.Where("id = ? AND dataset_id = ?", grantID, datasetID).Delete(&Grant{})
		if res.Error != nil {
			return fmt.Errorf("delete grant %s: %w", grantID, res.Error)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("grant %s: %w", grantID, ErrNotFound)
		}
		var owner Dataset
		if err := tx.Select("account_id").Where("id = ?", datasetID).Take(&owner).Error; err != nil {
			return fmt.Errorf("owner of dataset %s: %w", datasetID, err)
		}
		if err := s.audit(ctx, tx, owner.AccountID, ActionGrantDelete, TargetGrant, grantID, grantDiff(g, Grant{})); err != nil {
			return err
		}
		return s.bumpAccess(tx, announce, datasetID)
	})
}

func (s *Store) bumpAccess(tx *gorm.DB, announce func(Change) error, datasetID uuid.UUID) error {
	err := tx.Model(&Dataset{}).Where("id = ?", datasetID).
		Updates(map[string]any{"access_version": gorm.Expr("access_version + 1"), "changed": Now()}).Error
	if err != nil {
		return fmt.Errorf("bump access version of %s: %w", datasetID, err)
	}
	return announce(datasetChange(datasetID))
}

// lockForUpdate is the one mechanism that makes read-modify-write of a row atomic: a read
// through it, inside a transaction, holds the row until the transaction ends, so a concurrent
// change waits and then reads what this one wrote, and a concurrent delete waits too. On
// PostgreSQL that is SELECT … FOR UPDATE. SQLite has no row locks; there every transaction
// begins with BEGIN IMMEDIATE (_txlock=immediate in sqliteDSN) and so holds the database's single
// write lock from its first statement. A deferred transaction would not: it starts as a reader
// and its later write fails with SQLITE_BUSY_SNAPSHOT when another writer committed in between.
func (s *Store) lockForUpdate(tx *gorm.DB) *gorm.DB {
	if s.dialect == Postgres {
		return tx.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	return tx
}

// lockOwned reads the account's row id (an API key or a dataset) into out and locks it for the
// rest of the transaction; ErrNotFound when the account has no such row.
func (s *Store) lockOwned(tx *gorm.DB, what string, accountID, id uuid.UUID, out any) error {
	err := s.lockForUpdate(tx).Where("account_id = ? AND id = ?", accountID, id).Take(out).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("%s %s: %w", what, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("get %s %s: %w", what, id, err)
	}
	return nil
}

// later returns now, or a microsecond after prev when the clock has not moved past it, so
// `changed` always moves forward.
func later(prev time.Time) time.Time {
	now := Now()
	if !now.After(prev) {
		return prev.Add(1000)
	}
	return now
}

// GetOrCreateSetting returns the stored value of name, storing value first when there is none.
// Replicas starting together agree: the first insert wins and everyone reads it back.
func (s *Store) GetOrCreateSetting(ctx context.Context, name, value string) (string, error) {
	db := s.db.WithContext(ctx)
	if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&Setting{Name: name, Value: value}).Error; err != nil {
		return "", fmt.Errorf("store setting %s: %w", name, err)
	}
	var st Setting
	if err := db.Where("name = ?", name).Take(&st).Error; err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	return st.Value, nil
}
