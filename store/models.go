package store

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Roles a principal can hold, from most to least powerful.
const (
	RoleAdmin  = "admin"
	RoleEditor = "editor"
	RoleViewer = "viewer"
)

type Account struct {
	ID      uuid.UUID `gorm:"primaryKey"`
	Name    string
	Created time.Time
}

type Principal struct {
	ID        uuid.UUID `gorm:"primaryKey"`
	AccountID uuid.UUID
	Name      string
	Role      string
	Created   time.Time
}

type ServiceToken struct {
	LookupID    string `gorm:"primaryKey"`
	PrincipalID uuid.UUID
	SecretHash  []byte
	Created     time.Time
	Revoked     *time.Time
}

type APIKey struct {
	ID          uuid.UUID `gorm:"primaryKey"`
	AccountID   uuid.UUID
	Token       string
	Name        string
	Description *string
	UserAgent   *string
	Origins     StringList
	Created     time.Time
	Changed     time.Time
	LastUsed    *time.Time
}

func (APIKey) TableName() string { return "api_keys" }

// StringList is a JSON array column (jsonb on PostgreSQL, text on SQLite).
type StringList []string

func (l StringList) Value() (driver.Value, error) {
	if l == nil {
		l = StringList{}
	}
	b, err := json.Marshal([]string(l))
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func (l *StringList) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*l = StringList{}
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scan string list from %T", src)
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("scan string list: %w", err)
	}
	if out == nil {
		out = []string{}
	}
	*l = out
	return nil
}
