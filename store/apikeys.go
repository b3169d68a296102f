package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// ListAPIKeys returns a page of an account's keys, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, accountID uuid.UUID, cur *Cursor, limit int) (Page[APIKey], error) {
	var page Page[APIKey]
	db := s.db.WithContext(ctx)
	if err := db.Model(&APIKey{}).Where("account_id = ?", accountID).Count(&page.Total).Error; err != nil {
		return page, fmt.Errorf("count api keys: %w", err)
	}
	q := after(db.Where("account_id = ?", accountID), "", cur).Order("created, id").Limit(limit + 1)
	if err := q.Find(&page.Items).Error; err != nil {
		return page, fmt.Errorf("list api keys: %w", err)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.Next = &Cursor{Created: last.Created, ID: last.ID}
	}
	return page, nil
}

// GetAPIKey returns one key of the account, or ErrNotFound.
func (s *Store) GetAPIKey(ctx context.Context, accountID, id uuid.UUID) (APIKey, error) {
	var k APIKey
	err := s.db.WithContext(ctx).Where("account_id = ? AND id = ?", accountID, id).Take(&k).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return k, fmt.Errorf("api key %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("get api key %s: %w", id, err)
	}
	return k, nil
}

// CreateAPIKey stores a new key. A nil name gets a generated one, unique within the account.
func (s *Store) CreateAPIKey(ctx context.Context, accountID uuid.UUID, name *string, k APIKey) (APIKey, error) {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		k.ID = uuid.New()
		k.AccountID = accountID
		k.Created = Now()
		k.Changed = k.Created
		if k.Origins == nil {
			k.Origins = StringList{}
		}
		token, err := newKeyToken()
		if err != nil {
			return err
		}
		k.Token = token
		if name != nil {
			k.Name = *name
		} else if k.Name, err = uniqueName(tx, accountID); err != nil {
			return err
		}
		if err := tx.Create(&k).Error; err != nil {
			return fmt.Errorf("create api key: %w", err)
		}
		return nil
	})
	return k, err
}

// UpdateAPIKey applies change to a key inside a transaction that holds the key (lockForUpdate)
// from read to write, so concurrent changes of different fields are all kept and a change racing
// a delete either commits first or is ErrNotFound. When change sets regenerateName, a fresh
// unique name replaces the current one.
func (s *Store) UpdateAPIKey(ctx context.Context, accountID, id uuid.UUID, change func(k *APIKey) (regenerateName bool)) (APIKey, error) {
	var k APIKey
	err := s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		err := s.lockForUpdate(tx).Where("account_id = ? AND id = ?", accountID, id).Take(&k).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("api key %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("get api key %s: %w", id, err)
		}
		if change(&k) {
			if k.Name, err = uniqueName(tx, accountID); err != nil {
				return err
			}
		}
		k.Changed = later(k.Changed)
		res := tx.Model(&APIKey{}).Where("account_id = ? AND id = ?", accountID, id).Updates(map[string]any{
			"name": k.Name, "description": k.Description, "user_agent": k.UserAgent,
			"origins": k.Origins, "changed": k.Changed,
			"rate_limit_rps": k.RateLimitRPS, "rate_limit_burst": k.RateLimitBurst, "monthly_quota": k.MonthlyQuota,
		})
		if res.Error != nil {
			return fmt.Errorf("update api key %s: %w", id, res.Error)
		}
		if res.RowsAffected == 0 {
			// Unreachable while the row is locked; kept so a lost lock can never answer success.
			return fmt.Errorf("api key %s: %w", id, ErrNotFound)
		}
		return announce(keyChange(k.Token))
	})
	return k, err
}

// DeleteAPIKey removes a key of the account, or returns ErrNotFound.
func (s *Store) DeleteAPIKey(ctx context.Context, accountID, id uuid.UUID) error {
	return s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		var k APIKey
		err := s.lockForUpdate(tx).Where("account_id = ? AND id = ?", accountID, id).Take(&k).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("api key %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("get api key %s: %w", id, err)
		}
		if err := tx.Where("id = ?", id).Delete(&APIKey{}).Error; err != nil {
			return fmt.Errorf("delete api key %s: %w", id, err)
		}
		return announce(keyChange(k.Token))
	})
}

// newKeyToken makes a public key token: 144 random bits, URL-safe.
func newKeyToken() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate key token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var (
	adjectives = []string{"amber", "bold", "brisk", "calm", "clever", "coral", "crisp", "dusky", "eager", "fair",
		"gentle", "golden", "hazel", "jolly", "keen", "lively", "lucid", "mellow", "misty", "nimble",
		"noble", "olive", "proud", "quiet", "rapid", "rosy", "sage", "sandy", "silver", "steady",
		"sunny", "swift", "tidy", "vivid", "warm", "wise"}
	nouns = []string{"atlas", "bay", "canyon", "cape", "cliff", "compass", "delta", "dune", "fjord", "glacier",
		"grove", "harbor", "island", "lagoon", "meadow", "mesa", "oasis", "peak", "plateau", "prairie",
		"reef", "ridge", "river", "summit", "tundra", "valley", "volcano", "atoll", "marsh", "strait"}
)

// uniqueName makes a readable name ("swift-harbor-4821") not used by another key of the account.
func uniqueName(tx *gorm.DB, accountID uuid.UUID) (string, error) {
	for range 10 {
		name, err := readableName()
		if err != nil {
			return "", err
		}
		var n int64
		if err := tx.Model(&APIKey{}).Where("account_id = ? AND name = ?", accountID, name).Count(&n).Error; err != nil {
			return "", fmt.Errorf("check name: %w", err)
		}
		if n == 0 {
			return name, nil
		}
	}
	return "", fmt.Errorf("generate a unique key name: %w", ErrConflict)
}

func readableName() (string, error) {
	pick := func(n int) (int, error) {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
		if err != nil {
			return 0, fmt.Errorf("generate name: %w", err)
		}
		return int(v.Int64()), nil
	}
	a, err := pick(len(adjectives))
	if err != nil {
		return "", err
	}
	n, err := pick(len(nouns))
	if err != nil {
		return "", err
	}
	d, err := pick(9000)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%s-%d", adjectives[a], nouns[n], 1000+d), nil
}
