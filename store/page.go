package store

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Cursor is a position in a keyset walk over (created, id): the last row of the previous page.
// Rows never change their created time, so a row that exists for a whole walk is seen exactly once
// whatever is inserted or deleted meanwhile.
type Cursor struct {
	Created time.Time
	ID      uuid.UUID
}

// ErrBadCursor: the cursor was not made by Encode.
var ErrBadCursor = errors.New("invalid cursor")

// Encode makes the opaque form given to clients: standard, padded base64, as the contract's
// `format: byte` says, so clients that decode byte strings (.NET, Java, Go) accept it.
func (c Cursor) Encode() string {
	raw := strconv.FormatInt(c.Created.UnixMicro(), 36) + "." + c.ID.String()
	return base64.StdEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses what Encode makes, and what it made before (unpadded base64url), so a
// cursor handed out by an older version still works; anything else is ErrBadCursor. A '+' that
// reached us as a space (a query string built without escaping) is taken back.
func DecodeCursor(s string) (Cursor, error) {
	s = strings.ReplaceAll(s, " ", "+")
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	ts, id, ok := strings.Cut(string(raw), ".")
	if !ok {
		return Cursor{}, ErrBadCursor
	}
	micros, err := strconv.ParseInt(ts, 36, 64)
	if err != nil || micros < 0 {
		return Cursor{}, ErrBadCursor
	}
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{Created: time.UnixMicro(micros).UTC(), ID: u}, nil
}

// Page is one page of a keyset walk.
type Page[T any] struct {
	Items []T
	Next  *Cursor // nil on the last page
	Total int64
}

// after restricts a query to rows after the cursor, in (created, id) order. It is a row
// comparison, which both engines answer as one range of an index on (account_id, created, id)
// (SQLite since 3.15): the equivalent `created > ? OR (created = ? AND id > ?)` is not a range on
// PostgreSQL, which then filters every row of the account up to the cursor (issue #20). The plan
// tests (TestPagedListsUseIndexRanges) hold every paged list to this.
func after(q *gorm.DB, prefix string, c *Cursor) *gorm.DB {
	if c == nil {
		return q
	}
	return q.Where("("+prefix+"created, "+prefix+"id) > (?, ?)", c.Created, c.ID.String())
}

// before is after for walks newest first, over (at, id).
func before(q *gorm.DB, c *Cursor) *gorm.DB {
	if c == nil {
		return q
	}
	return q.Where("(at, id) < (?, ?)", c.Created, c.ID.String())
}

// pageOf cuts the extra row a list reads (limit+1) and makes the cursor of the next page from
// the last row kept.
func pageOf[T any](page *Page[T], limit int, key func(*T) Cursor) {
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		c := key(&page.Items[limit-1])
		page.Next = &c
	}
}

// accountCount is an account's number of rows of a kind (api_keys, datasets, audit_events) as
// the account_counts triggers keep it, in the writing transactions: exact, and a read of at most
// 16 rows of one primary-key range whatever the account's size, where count(*) read the account.
func accountCount(db *gorm.DB, accountID uuid.UUID, kind string) (int64, error) {
	var n int64
	err := accountCountQuery(db, accountID, kind).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", kind, err)
	}
	return n, nil
}

func accountCountQuery(db *gorm.DB, accountID uuid.UUID, kind string) *gorm.DB {
	return db.Raw("SELECT COALESCE(SUM(n), 0) FROM account_counts WHERE account_id = ? AND kind = ?", accountID.String(), kind)
}
