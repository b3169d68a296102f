package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tilegate/tilegate/servicetoken"
)

// Credential is what a service token resolves to.
type Credential struct {
	PrincipalID uuid.UUID
	AccountID   uuid.UUID
	Role        string
	Name        string
	SecretHash  servicetoken.Hash
	Revoked     bool
}

// Issued is a freshly created principal and its token, shown once.
type Issued struct {
	AccountID   uuid.UUID `json:"account_id"`
	PrincipalID uuid.UUID `json:"principal_id"`
	Role        string    `json:"role"`
	Token       string    `json:"token"`
}

// CreateAccount makes an account with an admin principal and its first token.
func (s *Store) CreateAccount(ctx context.Context, name string) (Issued, error) {
	var out Issued
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		acc := Account{ID: uuid.New(), Name: name, Created: Now()}
		if err := tx.Create(&acc).Error; err != nil {
			return fmt.Errorf("create account: %w", err)
		}
		var err error
		out, err = createPrincipal(tx, acc.ID, RoleAdmin, name+" admin")
		return err
	})
	return out, err
}

// CreatePrincipal adds a principal with a role and a token to an existing account.
func (s *Store) CreatePrincipal(ctx context.Context, accountID uuid.UUID, role, name string) (Issued, error) {
	var out Issued
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&Account{}).Where("id = ?", accountID).Count(&n).Error; err != nil {
			return fmt.Errorf("find account %s: %w", accountID, err)
		}
		if n == 0 {
			return fmt.Errorf("account %s: %w", accountID, ErrNotFound)
		}
		var err error
		out, err = createPrincipal(tx, accountID, role, name)
		return err
	})
	return out, err
}

func createPrincipal(tx *gorm.DB, accountID uuid.UUID, role, name string) (Issued, error) {
	switch role {
	case RoleAdmin, RoleEditor, RoleViewer:
	default:
		return Issued{}, fmt.Errorf("role %q is not admin, editor or viewer", role)
	}
	p := Principal{ID: uuid.New(), AccountID: accountID, Name: name, Role: role, Created: Now()}
	if err := tx.Create(&p).Error; err != nil {
		return Issued{}, fmt.Errorf("create principal: %w", err)
	}
	token, lookupID, hash, err := servicetoken.New()
	if err != nil {
		return Issued{}, err
	}
	st := ServiceToken{LookupID: lookupID, PrincipalID: p.ID, SecretHash: hash[:], Created: Now()}
	if err := tx.Create(&st).Error; err != nil {
		return Issued{}, fmt.Errorf("create service token: %w", err)
	}
	return Issued{AccountID: accountID, PrincipalID: p.ID, Role: role, Token: token}, nil
}

// RevokePrincipalTokens revokes every token of a principal; it returns how many were live.
func (s *Store) RevokePrincipalTokens(ctx context.Context, principalID uuid.UUID) (int64, error) {
	var n int64
	if err := s.db.WithContext(ctx).Model(&Principal{}).Where("id = ?", principalID).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("find principal %s: %w", principalID, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("principal %s: %w", principalID, ErrNotFound)
	}
	res := s.db.WithContext(ctx).Model(&ServiceToken{}).
		Where("principal_id = ? AND revoked IS NULL", principalID).
		Update("revoked", Now())
	if res.Error != nil {
		return 0, fmt.Errorf("revoke tokens of %s: %w", principalID, res.Error)
	}
	return res.RowsAffected, nil
}

// LookupCredential finds the principal behind a token's lookup id in one statement.
// It returns ErrNotFound for an unknown id; the caller compares hashes.
func (s *Store) LookupCredential(ctx context.Context, lookupID string) (Credential, error) {
	var row struct {
		PrincipalID uuid.UUID
		AccountID   uuid.UUID
		Role        string
		Name        string
		SecretHash  []byte
		Revoked     *string
	}
	err := s.db.WithContext(ctx).Table("service_tokens AS t").
		Select("t.principal_id, p.account_id, p.role, p.name, t.secret_hash, CASE WHEN t.revoked IS NULL THEN NULL ELSE 'y' END AS revoked").
		Joins("JOIN principals p ON p.id = t.principal_id").
		Where("t.lookup_id = ?", lookupID).
		Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Credential{}, ErrNotFound
	}
	if err != nil {
		return Credential{}, fmt.Errorf("look up service token: %w", err)
	}
	c := Credential{PrincipalID: row.PrincipalID, AccountID: row.AccountID, Role: row.Role, Name: row.Name, Revoked: row.Revoked != nil}
	copy(c.SecretHash[:], row.SecretHash)
	return c, nil
}

// AccountListing is an account as `tilegate admin list` shows it: its principals and their
// service tokens, by id and dates only. A token's id is its lookup id (the part after tgs_
// that names it, which authenticates nothing on its own); secrets and hashes are never read.
type AccountListing struct {
	ID         uuid.UUID          `json:"id"`
	Name       string             `json:"name"`
	Created    time.Time          `json:"created"`
	Principals []PrincipalListing `json:"principals"`
}

// PrincipalListing is one principal of an AccountListing.
type PrincipalListing struct {
	ID      uuid.UUID      `json:"id"`
	Name    string         `json:"name"`
	Role    string         `json:"role"`
	Created time.Time      `json:"created"`
	Tokens  []TokenListing `json:"tokens"`
}

// TokenListing is one service token of a PrincipalListing.
type TokenListing struct {
	ID      string     `json:"id"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked"`
}

// ListAccounts lists every account (or only accountID's, when not uuid.Nil) with its
// principals and their tokens, oldest first. It is an operator's command over the whole
// database, not an API call: three statements, whatever the number of accounts.
func (s *Store) ListAccounts(ctx context.Context, accountID uuid.UUID) ([]AccountListing, error) {
	db := s.db.WithContext(ctx)
	var accounts []Account
	q := db.Order("created, id")
	if accountID != uuid.Nil {
		q = q.Where("id = ?", accountID)
	}
	if err := q.Find(&accounts).Error; err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	if accountID != uuid.Nil && len(accounts) == 0 {
		return nil, fmt.Errorf("account %s: %w", accountID, ErrNotFound)
	}
	var principals []Principal
	q = db.Order("created, id")
	if accountID != uuid.Nil {
		q = q.Where("account_id = ?", accountID)
	}
	if err := q.Find(&principals).Error; err != nil {
		return nil, fmt.Errorf("list principals: %w", err)
	}
	var tokens []struct {
		LookupID    string
		PrincipalID uuid.UUID
		Created     time.Time
		Revoked     *time.Time
	}
	q = db.Table("service_tokens AS t").Select("t.lookup_id, t.principal_id, t.created, t.revoked").Order("t.created, t.lookup_id")
	if accountID != uuid.Nil {
		q = q.Joins("JOIN principals p ON p.id = t.principal_id").Where("p.account_id = ?", accountID)
	}
	if err := q.Scan(&tokens).Error; err != nil {
		return nil, fmt.Errorf("list service tokens: %w", err)
	}
	byPrincipal := map[uuid.UUID][]TokenListing{}
	for _, t := range tokens {
		byPrincipal[t.PrincipalID] = append(byPrincipal[t.PrincipalID], TokenListing{ID: t.LookupID, Created: t.Created.UTC(), Revoked: utcPtr(t.Revoked)})
	}
	byAccount := map[uuid.UUID][]PrincipalListing{}
	for _, p := range principals {
		toks := byPrincipal[p.ID]
		if toks == nil {
			toks = []TokenListing{}
		}
		byAccount[p.AccountID] = append(byAccount[p.AccountID], PrincipalListing{ID: p.ID, Name: p.Name, Role: p.Role, Created: p.Created.UTC(), Tokens: toks})
	}
	out := make([]AccountListing, len(accounts))
	for i, a := range accounts {
		ps := byAccount[a.ID]
		if ps == nil {
			ps = []PrincipalListing{}
		}
		out[i] = AccountListing{ID: a.ID, Name: a.Name, Created: a.Created.UTC(), Principals: ps}
	}
	return out, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
