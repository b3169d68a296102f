package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tilegate/tilegate/keytoken"
)

// ListAPIKeys returns a page of an account's keys, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, accountID uuid.UUID, cur *Cursor, limit int) (Page[APIKey], error) {
	var page Page[APIKey]
	db := s.db.WithContext(ctx)
	var err error
	if page.Total, err = accountCount(db, accountID, "api_keys"); err != nil {
		return page, err
	}
	if page.Items, err = scanKeys(keyPage(db, accountID, cur, limit)); err != nil {
		return page, err
	}
	pageOf(&page, limit, func(k *APIKey) Cursor { return Cursor{Created: k.Created, ID: k.ID} })
	return page, loadScopes(db, page.Items)
}

// keyColumns are the columns scanKeys reads, in its order.
const keyColumns = "id, account_id, token, name, name_generated, description, user_agent, origins, created, changed, " +
	"last_used, expires_at, enabled, dataset_scoped, ip_ranges, previous_token_hash, previous_token_expires_at, " +
	"rate_limit_rps, rate_limit_burst, monthly_quota"

// scanKeys runs q (which selects keyColumns) and scans each row straight into an APIKey: GORM's
// reflective scan was a fifth of a key page's CPU (issue #20). The statement still runs through
// GORM, so deadlines, statement counting and error translation apply.
func scanKeys(q *gorm.DB) ([]APIKey, error) {
	return scanKeysWith(q.Select(keyColumns), 0, nil)
}

// scanKeysWith scans rows of keyColumns followed by the columns extra returns destinations for
// (row i's); capacity is the rows expected.
func scanKeysWith(q *gorm.DB, capacity int, extra func(i int) []any) ([]APIKey, error) {
	rows, err := q.Rows()
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	out := make([]APIKey, 0, capacity)
	// One set of destinations for every row (k is cleared before each): per-row slices and
	// the page's growth were most of a page's garbage (issue #20).
	var k APIKey
	dest := []any{&k.ID, &k.AccountID, &k.Token, &k.Name, &k.NameGenerated, &k.Description, &k.UserAgent,
		&k.Origins, &k.Created, &k.Changed, &k.LastUsed, &k.ExpiresAt, &k.Enabled, &k.DatasetScoped, &k.IPRanges,
		&k.PreviousTokenHash, &k.PreviousTokenExpiresAt, &k.RateLimitRPS, &k.RateLimitBurst, &k.MonthlyQuota}
	fixed := len(dest)
	for rows.Next() {
		k = APIKey{}
		dest = dest[:fixed]
		if extra != nil {
			dest = append(dest, extra(len(out))...)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("scan api key: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// ListAPIKeysServed is ListAPIKeys with, for each key of the page, the tiles it served from
// since (unix seconds) on as flushed by every replica (ServedSince's figure). The page, its
// usage and the account's total come from one statement (plus the scopes' when a key is
// scoped): a page of keys is the management call an account's size must not slow (issue #20).
func (s *Store) ListAPIKeysServed(ctx context.Context, accountID uuid.UUID, cur *Cursor, limit int, since int64) (Page[APIKey], []int64, error) {
	var page Page[APIKey]
	db := s.db.WithContext(ctx)
	served := make([]int64, 0, limit+1)
	var total int64
	extra := []any{nil, &total}
	var err error
	page.Items, err = scanKeysWith(keyPageServed(db, accountID, cur, limit, since), limit+1, func(i int) []any {
		served = append(served, 0)
		extra[0] = &served[i]
		return extra
	})
	if err != nil {
		return page, nil, err
	}
	page.Total = total
	if len(page.Items) == 0 { // no row carried the total
		if page.Total, err = accountCount(db, accountID, "api_keys"); err != nil {
			return page, nil, err
		}
	}
	pageOf(&page, limit, func(k *APIKey) Cursor { return Cursor{Created: k.Created, ID: k.ID} })
	return page, served[:len(page.Items)], loadScopes(db, page.Items)
}

// keyPageServed is keyPage with two more columns: the key's tiles served from since on
// (usage_hours_key answers it per key) and the account's number of keys (account_counts).
func keyPageServed(db *gorm.DB, accountID uuid.UUID, cur *Cursor, limit int, since int64) *gorm.DB {
	return keyPage(db, accountID, cur, limit).Select(keyColumns+
		", (SELECT COALESCE(SUM(u.served), 0) FROM usage_hours u WHERE u.key_id = api_keys.id AND u.hour >= ? AND u.reason = '')"+
		", (SELECT COALESCE(SUM(c.n), 0) FROM account_counts c WHERE c.account_id = ? AND c.kind = 'api_keys')",
		since, accountID.String())
}

// keyPage is the statement of a page of keys (and one row more, which tells whether there is
// a next page): a range of api_keys_page.
func keyPage(db *gorm.DB, accountID uuid.UUID, cur *Cursor, limit int) *gorm.DB {
	return after(db.Model(&APIKey{}).Where("account_id = ?", accountID.String()), "", cur).Order("created, id").Limit(limit + 1)
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
	keys := []APIKey{k}
	err = loadScopes(s.db.WithContext(ctx), keys)
	return keys[0], err
}

// CreateAPIKey stores a new key. A nil name gets a generated one, unique within the account.
// k.DatasetIDs (nil: unscoped) must all be datasets the account sees (InvalidDatasetError).
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
		k.DatasetScoped = k.DatasetIDs != nil
		if err := insertAPIKey(tx, &k, name); err != nil {
			return err
		}
		if err := s.writeScope(tx, &k, false); err != nil {
			return err
		}
		return s.audit(ctx, tx, accountID, ActionKeyCreate, TargetKey, k.ID, keyDiff(APIKey{}, k))
	})
	return k, err
}

// UpdateAPIKey applies change to a key inside a transaction that holds the key (lockForUpdate)
// from read to write, so concurrent changes of different fields are all kept and a change racing
// a delete either commits first or is ErrNotFound. When change sets regenerateName, a fresh
// unique name replaces the current one. change returns an error to refuse (it is returned as it
// is, and nothing is written).
//
// Lock order: the key row first, then the dataset scope's rows; the datasets a new scope names
// are read without locks, and their foreign keys make a racing dataset delete either commit
// first (the insert fails: InvalidDatasetError) or wait for this change (its cascade then drops
// the id). A dataset delete never locks key rows, so the two cannot deadlock.
func (s *Store) UpdateAPIKey(ctx context.Context, accountID, id uuid.UUID, change func(k *APIKey) (regenerateName bool, err error)) (APIKey, error) {
	var k APIKey
	err := s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		if err := s.lockOwned(tx, "api key", accountID, id, &k); err != nil {
			return err
		}
		keys := []APIKey{k}
		if err := loadScopes(tx, keys); err != nil {
			return err
		}
		k = keys[0]
		before := k
		regenerate, err := change(&k)
		if err != nil {
			return err
		}
		if regenerate {
			if err := renameGenerated(tx, &k); err != nil {
				return err
			}
		} else if k.Name != before.Name {
			k.NameGenerated = false // the client's choice now
		}
		k.Changed = later(k.Changed)
		k.DatasetScoped = k.DatasetIDs != nil
		res := tx.Model(&APIKey{}).Where("account_id = ? AND id = ?", accountID, id).Updates(map[string]any{
			"name": k.Name, "name_generated": k.NameGenerated, "description": k.Description, "user_agent": k.UserAgent,
			"origins": k.Origins, "changed": k.Changed, "expires_at": k.ExpiresAt, "enabled": k.Enabled,
			"dataset_scoped": k.DatasetScoped, "ip_ranges": k.IPRanges,
			"rate_limit_rps": k.RateLimitRPS, "rate_limit_burst": k.RateLimitBurst, "monthly_quota": k.MonthlyQuota,
		})
		if res.Error != nil {
			return fmt.Errorf("update api key %s: %w", id, res.Error)
		}
		if res.RowsAffected == 0 {
			// Unreachable while the row is locked; kept so a lost lock can never answer success.
			return fmt.Errorf("api key %s: %w", id, ErrNotFound)
		}
		if !slices.Equal(before.DatasetIDs, k.DatasetIDs) || (before.DatasetIDs == nil) != (k.DatasetIDs == nil) {
			if err := s.writeScope(tx, &k, true); err != nil {
				return err
			}
		}
		if err := s.audit(ctx, tx, accountID, ActionKeyChange, TargetKey, id, keyDiff(before, k)); err != nil {
			return err
		}
		return announce(keyChange(k.ID))
	})
	return k, err
}

// InvalidDatasetError: a key's dataset_ids names a dataset its account does not see (or none).
type InvalidDatasetError struct {
	Index int
	ID    uuid.UUID
}

func (e *InvalidDatasetError) Error() string {
	return fmt.Sprintf("dataset_ids[%d]: %s is not a dataset of the key's account", e.Index, e.ID)
}

// writeScope stores k's dataset scope (none when unscoped), replacing the stored one when
// replace, after checking with the access rules that the key's account sees every dataset it
// names. Duplicates are dropped (first kept).
//
// Lock order, against a racing dataset delete (which locks its dataset row, then cascades to
// the scope rows naming it, and never locks a key): the key row (the caller's), then the named
// datasets' rows in KEY SHARE mode, and only then the scope rows. Taking the scope rows first
// would deadlock with a delete of a dataset the key already names.
func (s *Store) writeScope(tx *gorm.DB, k *APIKey, replace bool) error {
	if k.DatasetIDs != nil && s.dialect == Postgres && len(k.DatasetIDs) > 0 {
		var locked []string
		err := tx.Raw("SELECT id FROM datasets WHERE id IN ? ORDER BY id FOR KEY SHARE", idStrings(k.DatasetIDs)).Scan(&locked).Error
		if err != nil {
			return fmt.Errorf("lock datasets of api key %s: %w", k.ID, err)
		}
	}
	if replace {
		if err := tx.Where("key_id = ?", k.ID).Delete(&APIKeyDataset{}).Error; err != nil {
			return fmt.Errorf("clear dataset scope of api key %s: %w", k.ID, err)
		}
	}
	if k.DatasetIDs == nil {
		return nil
	}
	facts, err := s.datasetsAccess(tx, Caller{AccountID: k.AccountID}, k.DatasetIDs, false)
	if err != nil {
		return err
	}
	seen := make(map[uuid.UUID]bool, len(k.DatasetIDs))
	ids := make([]uuid.UUID, 0, len(k.DatasetIDs))
	for i, id := range k.DatasetIDs {
		a, ok := facts[id]
		if !ok || a.See(Caller{AccountID: k.AccountID}) != nil {
			return &InvalidDatasetError{Index: i, ID: id}
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		row := APIKeyDataset{KeyID: k.ID, DatasetID: id, Position: len(ids)}
		if err := tx.Create(&row).Error; err != nil {
			if errors.Is(err, gorm.ErrForeignKeyViolated) {
				// Deleted since it was read (unreachable on PostgreSQL while it is locked).
				return &InvalidDatasetError{Index: i, ID: id}
			}
			return fmt.Errorf("scope api key %s to dataset %s: %w", k.ID, id, err)
		}
		ids = append(ids, id)
	}
	k.DatasetIDs = ids
	return nil
}

// loadScopes fills the DatasetIDs of the scoped keys among keys, in one statement.
func loadScopes(db *gorm.DB, keys []APIKey) error {
	var scoped []string
	at := map[uuid.UUID]int{}
	for i := range keys {
		keys[i].DatasetIDs = nil
		if keys[i].DatasetScoped {
			keys[i].DatasetIDs = []uuid.UUID{}
			scoped = append(scoped, keys[i].ID.String())
			at[keys[i].ID] = i
		}
	}
	if len(scoped) == 0 {
		return nil
	}
	var rows []APIKeyDataset
	if err := db.Where("key_id IN ?", scoped).Order("key_id, position").Find(&rows).Error; err != nil {
		return fmt.Errorf("load dataset scopes: %w", err)
	}
	for _, r := range rows {
		k := &keys[at[r.KeyID]]
		k.DatasetIDs = append(k.DatasetIDs, r.DatasetID)
	}
	return nil
}

// RotateAPIKey gives a key a fresh token. The replaced token keeps working, with the key's
// rules, for grace (0: not at all); a previous token still in its grace from an earlier
// rotation ends now (a key has at most two tokens).
func (s *Store) RotateAPIKey(ctx context.Context, accountID, id uuid.UUID, grace time.Duration) (APIKey, error) {
	var k APIKey
	err := s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		if err := s.lockOwned(tx, "api key", accountID, id, &k); err != nil {
			return err
		}
		token, err := newKeyToken()
		if err != nil {
			return err
		}
		now := Now()
		endedGrace := k.PreviousTokenExpiresAt
		if endedGrace != nil && !endedGrace.After(now) {
			endedGrace = nil // long over: nothing ends now
		}
		k.PreviousTokenHash, k.PreviousTokenExpiresAt = nil, nil
		if grace > 0 {
			until := now.Add(grace)
			k.PreviousTokenHash, k.PreviousTokenExpiresAt = TokenHash(k.Token), &until
		}
		k.Token = token
		k.Changed = later(k.Changed)
		err = tx.Model(&APIKey{}).Where("id = ?", id).Updates(map[string]any{
			"token": k.Token, "previous_token_hash": k.PreviousTokenHash,
			"previous_token_expires_at": k.PreviousTokenExpiresAt, "changed": k.Changed,
		}).Error
		if err != nil {
			return fmt.Errorf("rotate api key %s: %w", id, err)
		}
		keys := []APIKey{k}
		if err := loadScopes(tx, keys); err != nil {
			return err
		}
		k = keys[0]
		// That it happened and the grace it gave, never the tokens.
		changes := diff(map[string]any{"previous_token_expires_at": endedGrace},
			map[string]any{"grace_seconds": int64(grace / time.Second), "previous_token_expires_at": k.PreviousTokenExpiresAt})
		if err := s.audit(ctx, tx, accountID, ActionKeyRotate, TargetKey, id, changes); err != nil {
			return err
		}
		return announce(keyChange(k.ID))
	})
	return k, err
}

// TokenHash is what is kept of a previous key token.
func TokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// DeleteAPIKey removes a key of the account, or returns ErrNotFound.
func (s *Store) DeleteAPIKey(ctx context.Context, accountID, id uuid.UUID) error {
	return s.changing(ctx, func(tx *gorm.DB, announce func(Change) error) error {
		var k APIKey
		if err := s.lockOwned(tx, "api key", accountID, id, &k); err != nil {
			return err
		}
		keys := []APIKey{k}
		if err := loadScopes(tx, keys); err != nil {
			return err
		}
		if err := tx.Where("id = ?", id).Delete(&APIKey{}).Error; err != nil {
			return fmt.Errorf("delete api key %s: %w", id, err)
		}
		if err := s.audit(ctx, tx, accountID, ActionKeyDelete, TargetKey, id, keyDiff(keys[0], APIKey{})); err != nil {
			return err
		}
		return announce(keyChange(k.ID))
	})
}

// newKeyToken makes a public key token of the current form (keytoken: random, with a checksum
// the tile path checks before any lookup). Created and rotated keys get one.
func newKeyToken() (string, error) { return keytoken.New() }

var (
	adjectives = []string{"amber", "bold", "brisk", "calm", "clever", "coral", "crisp", "dusky", "eager", "fair",
		"gentle", "golden", "hazel", "jolly", "keen", "lively", "lucid", "mellow", "misty", "nimble",
		"noble", "olive", "proud", "quiet", "rapid", "rosy", "sage", "sandy", "silver", "steady",
		"sunny", "swift", "tidy", "vivid", "warm", "wise"}
	nouns = []string{"atlas", "bay", "canyon", "cape", "cliff", "compass", "delta", "dune", "fjord", "glacier",
		"grove", "harbor", "island", "lagoon", "meadow", "mesa", "oasis", "peak", "plateau", "prairie",
		"reef", "ridge", "river", "summit", "tundra", "valley", "volcano", "atoll", "marsh", "strait"}
)

// nameAttempts bounds the tries at a free generated name. The name space holds 9.7 million
// names: even an account of a million keys finds one within a try or two.
const nameAttempts = 10

// generateName is readableName; tests replace it to force collisions.
var generateName = readableName

// insertAPIKey inserts k with the client's name, or, when name is nil, with a generated one
// ("swift-harbor-4821") that no other key of the account has. Each try costs two index lookups
// whatever the account's size: the name is first looked up in api_keys_name (it must not repeat
// any name, chosen or generated), then inserted with ON CONFLICT DO NOTHING against the unique
// api_keys_generated_name, which settles a race between two creates that drew the same name
// (the loser draws again; DO NOTHING leaves a PostgreSQL transaction usable, where a failed
// insert would abort it).
func insertAPIKey(tx *gorm.DB, k *APIKey, name *string) error {
	if name != nil {
		k.Name, k.NameGenerated = *name, false
		if err := tx.Omit("DatasetIDs").Create(k).Error; err != nil {
			return fmt.Errorf("create api key: %w", err)
		}
		return nil
	}
	k.NameGenerated = true
	onConflict := clause.OnConflict{
		Columns:     []clause.Column{{Name: "account_id"}, {Name: "name"}},
		TargetWhere: clause.Where{Exprs: []clause.Expression{clause.Expr{SQL: "name_generated"}}},
		DoNothing:   true,
	}
	for range nameAttempts {
		free, err := freeName(tx, k.AccountID)
		if err != nil {
			return err
		}
		if free == "" {
			continue
		}
		k.Name = free
		res := tx.Omit("DatasetIDs").Clauses(onConflict).Create(k)
		if res.Error != nil {
			return fmt.Errorf("create api key: %w", res.Error)
		}
		if res.RowsAffected == 1 {
			return nil
		}
	}
	return fmt.Errorf("generate a unique key name: %w", ErrConflict)
}

// renameGenerated gives the (locked) key k a fresh generated name, as insertAPIKey does. A
// conflicting UPDATE cannot do nothing, so each try runs in a savepoint that a unique violation
// rolls back (on PostgreSQL it would otherwise abort the whole transaction).
func renameGenerated(tx *gorm.DB, k *APIKey) error {
	for range nameAttempts {
		free, err := freeName(tx, k.AccountID)
		if err != nil {
			return err
		}
		if free == "" {
			continue
		}
		err = tx.Transaction(func(sp *gorm.DB) error {
			return sp.Model(&APIKey{}).Where("id = ?", k.ID).
				Updates(map[string]any{"name": free, "name_generated": true}).Error
		})
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rename api key %s: %w", k.ID, err)
		}
		k.Name, k.NameGenerated = free, true
		return nil
	}
	return fmt.Errorf("generate a unique key name: %w", ErrConflict)
}

// nameTaken is the statement that tells whether a key of the account has the name: one lookup
// in api_keys_name.
func nameTaken(db *gorm.DB, accountID uuid.UUID, name string) *gorm.DB {
	return db.Raw("SELECT EXISTS (SELECT 1 FROM api_keys WHERE account_id = ? AND name = ?)", accountID.String(), name)
}

// freeName draws a readable name and returns it when no key of the account has it (an index
// lookup in api_keys_name), "" when one does.
func freeName(tx *gorm.DB, accountID uuid.UUID) (string, error) {
	name, err := generateName()
	if err != nil {
		return "", err
	}
	var taken bool
	if err := nameTaken(tx, accountID, name).Scan(&taken).Error; err != nil {
		return "", fmt.Errorf("check key name: %w", err)
	}
	if taken {
		return "", nil
	}
	return name, nil
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
