package store

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/access"
)

// Roles a principal can hold, from most to least powerful.
const (
	RoleAdmin  = access.RoleAdmin
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
	ID        uuid.UUID `gorm:"primaryKey"`
	AccountID uuid.UUID
	Token     string
	Name      string
	// NameGenerated: tilegate made Name (unique within the account, by an index); a name a
	// client chose may repeat.
	NameGenerated bool
	Description   *string
	UserAgent     *string
	Origins       StringList
	Created       time.Time
	Changed       time.Time
	LastUsed      *time.Time
	// ExpiresAt is when the key stops working; nil: never.
	ExpiresAt *time.Time
	Enabled   bool
	// DatasetScoped limits the key to DatasetIDs (kept in api_key_datasets, in their order);
	// unscoped keys may read every dataset their account may use. Reads fill DatasetIDs
	// (nil when unscoped); writes take it as the whole list (nil: unscoped).
	DatasetScoped bool
	DatasetIDs    []uuid.UUID `gorm:"-"`
	// IPRanges are normalised CIDRs; nil: any client address.
	IPRanges *StringList
	// PreviousTokenHash is the SHA-256 of the token a rotation replaced, which keeps working
	// until PreviousTokenExpiresAt.
	PreviousTokenHash      []byte
	PreviousTokenExpiresAt *time.Time
	// RateLimitRPS and RateLimitBurst are the key's rate limit (both nil: none); MonthlyQuota
	// the tiles it may serve per calendar month, UTC (nil: no quota).
	RateLimitRPS   *int `gorm:"column:rate_limit_rps"`
	RateLimitBurst *int
	MonthlyQuota   *int64
}

func (APIKey) TableName() string { return "api_keys" }

// APIKeyDataset is one dataset of a key's dataset scope.
type APIKeyDataset struct {
	KeyID     uuid.UUID `gorm:"primaryKey"`
	DatasetID uuid.UUID `gorm:"primaryKey"`
	Position  int
}

func (APIKeyDataset) TableName() string { return "api_key_datasets" }

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
	if len(b) == 2 && b[0] == '[' && b[1] == ']' { // most keys' origins: no decoder needed
		*l = StringList{}
		return nil
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

// JSON is a raw JSON column (jsonb on PostgreSQL, text on SQLite); nil is SQL NULL.
type JSON []byte

func (j JSON) Value() (driver.Value, error) {
	if j == nil {
		return nil, nil
	}
	return string(j), nil
}

func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case string:
		*j = JSON(v)
	case []byte:
		*j = append(JSON(nil), v...)
	default:
		return fmt.Errorf("scan json from %T", src)
	}
	return nil
}

// Dataset visibilities.
const (
	Private    = access.Private
	Restricted = access.Restricted
	Public     = access.Public
)

type Dataset struct {
	ID            uuid.UUID `gorm:"primaryKey"`
	AccountID     uuid.UUID
	Name          string
	Description   *string
	Kind          string
	Visibility    string
	Format        string
	MinZoom       int `gorm:"column:minzoom"`
	MaxZoom       int `gorm:"column:maxzoom"`
	Bounds        JSON
	Center        JSON
	Attribution   *string
	VectorLayers  JSON
	TileSize      *int
	AccessVersion int64
	// TileFile is the MBTiles file's name under the data directory; nil before the first upload.
	TileFile *string
	// UpstreamURL is the XYZ template of an upstream tile server the tiles come from instead of
	// a file; UpstreamHeaders the headers sent to it, sealed (package sealed); UpstreamMissing what
	// an upstream 404 becomes ("empty" or "not_found").
	UpstreamURL     *string
	UpstreamHeaders *string
	UpstreamMissing *string
	// UpstreamTileJSON is the upstream's own TileJSON URL, read when a write sends it.
	UpstreamTileJSON *string `gorm:"column:upstream_tilejson"`
	Created          time.Time
	Changed         time.Time
}

type Grant struct {
	ID          uuid.UUID `gorm:"primaryKey"`
	DatasetID   uuid.UUID
	AccountID   *uuid.UUID
	PrincipalID *uuid.UUID
	Created     time.Time
}

type Setting struct {
	Name  string `gorm:"primaryKey"`
	Value string
}
