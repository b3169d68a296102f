package store

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// The tile path reads keys and datasets through an in-process cache (server/tilecache.go); the
// statements here run on a cache miss only. Ids are passed as text: pgx otherwise probes several
// encode plans for uuid.UUID per parameter.

// APIKeyByToken returns the key whose current or previous token is token (previous tells
// which: the previous token works until the key's PreviousTokenExpiresAt), with its dataset
// scope; ErrNotFound when there is none. Only the previous token's hash is stored.
func (s *Store) APIKeyByToken(ctx context.Context, token string) (k APIKey, previous bool, err error) {
	db := s.db.WithContext(ctx)
	hash := TokenHash(token)
	err = db.Where("token = ? OR previous_token_hash = ?", token, hash).Take(&k).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return k, false, fmt.Errorf("api key: %w", ErrNotFound)
	}
	if err != nil {
		return k, false, fmt.Errorf("look up api key: %w", err)
	}
	switch {
	case subtle.ConstantTimeCompare([]byte(k.Token), []byte(token)) == 1:
	case subtle.ConstantTimeCompare(k.PreviousTokenHash, hash) == 1:
		previous = true
	default:
		return APIKey{}, false, fmt.Errorf("api key: %w", ErrNotFound)
	}
	keys := []APIKey{k}
	if err := loadScopes(db, keys); err != nil {
		return k, false, err
	}
	return keys[0], previous, nil
}

// TileSource is a dataset with the accounts it is shared with: everything needed to decide, with
// no further query, whether an API key of some account may read its tiles.
type TileSource struct {
	Dataset
	GrantedAccounts []uuid.UUID
}

// TileSource loads a dataset and its account grants (two statements), or ErrNotFound.
func (s *Store) TileSource(ctx context.Context, id uuid.UUID) (TileSource, error) {
	var src TileSource
	db := s.db.WithContext(ctx)
	err := db.Where("id = ?", id.String()).Take(&src.Dataset).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return src, fmt.Errorf("dataset %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return src, fmt.Errorf("get dataset %s: %w", id, err)
	}
	var grantees []string
	if err := db.Model(&Grant{}).Where("dataset_id = ? AND account_id IS NOT NULL", id.String()).
		Pluck("account_id", &grantees).Error; err != nil {
		return src, fmt.Errorf("grants of dataset %s: %w", id, err)
	}
	for _, g := range grantees {
		a, err := uuid.Parse(g)
		if err != nil {
			return src, fmt.Errorf("grants of dataset %s: account id %q: %w", id, g, err)
		}
		src.GrantedAccounts = append(src.GrantedAccounts, a)
	}
	return src, nil
}

// ReplaceTiles publishes a new MBTiles file for a dataset of the account: change sets TileFile
// and the metadata taken from the file on the locked row (and may refuse with an error, which is
// returned as it is). Only the upload's columns and `changed` are written — access_version is
// not: who may read the dataset did not change. Replicas are told through the dataset channel.
// It returns the updated dataset and the file it replaced (nil when there was none); removing
// that file is the caller's job, after the commit.
func (s *Store) ReplaceTiles(ctx context.Context, accountID, id uuid.UUID, change func(d *Dataset) error) (Dataset, *string, error) {
	var d Dataset
	var old *string
	err := s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		if err := s.lockOwned(tx, "dataset", accountID, id, &d); err != nil {
			return err
		}
		old = d.TileFile
		before := d
		if err := change(&d); err != nil {
			return err
		}
		d.Changed = later(d.Changed)
		err := tx.Model(&Dataset{}).Where("id = ?", id.String()).Updates(map[string]any{
			"format": d.Format, "minzoom": d.MinZoom, "maxzoom": d.MaxZoom, "bounds": d.Bounds,
			"center": d.Center, "attribution": d.Attribution, "vector_layers": d.VectorLayers,
			"tile_file": d.TileFile, "changed": d.Changed,
		}).Error
		if err != nil {
			return fmt.Errorf("update tiles of dataset %s: %w", id, err)
		}
		if err := s.audit(ctx, tx, accountID, ActionDatasetUpload, TargetDataset, id, datasetDiff(before, d)); err != nil {
			return err
		}
		return announce(datasetChange(id))
	})
	if err != nil {
		return Dataset{}, nil, err
	}
	return d, old, nil
}

// TouchAPIKeys records when keys were last used, in one transaction of one UPDATE per key. A
// time never moves last_used backwards (another replica may have written a later one), and a
// deleted key is skipped silently. `changed` is not touched: using a key does not change it.
func (s *Store) TouchAPIKeys(ctx context.Context, used map[uuid.UUID]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for id, at := range used {
			at = at.UTC().Truncate(time.Microsecond)
			err := tx.Exec("UPDATE api_keys SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
				at, id.String(), at).Error
			if err != nil {
				return fmt.Errorf("record last use of api key %s: %w", id, err)
			}
		}
		return nil
	})
}

// TileFiles returns the names of the tile files that datasets reference.
func (s *Store) TileFiles(ctx context.Context) (map[string]bool, error) {
	var names []string
	if err := s.db.WithContext(ctx).Model(&Dataset{}).Where("tile_file IS NOT NULL").Pluck("tile_file", &names).Error; err != nil {
		return nil, fmt.Errorf("list tile files: %w", err)
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}
