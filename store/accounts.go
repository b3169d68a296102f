package store

import (
	"context"
	"errors"
	"fmt"

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
