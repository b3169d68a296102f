// Package servicetoken makes and checks the secret service tokens that authenticate management
// calls. A token is "tgs_" + a 16-character lookup id + a 32-character secret + a 7-character
// CRC-32 checksum, all lower-case base32: the prefix makes leaked tokens easy to find with secret
// scanners, and the checksum lets a typo or a truncated token be refused without a database query.
package servicetoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/tilegate/tilegate/internal/checksum"
)

// Prefix starts every service token.
const Prefix = "tgs_"

const (
	idLen       = 16 // 10 random bytes
	secretLen   = 32 // 20 random bytes (160 bits)
	checksumLen = checksum.Len
	// Len is the length of every well-formed token.
	Len = len(Prefix) + idLen + secretLen + checksumLen
)

var encoding = checksum.Encoding

// ErrMalformed means the string cannot be a token this service issued.
var ErrMalformed = errors.New("malformed service token")

// Hash is what the database keeps of a token.
type Hash [sha256.Size]byte

// New returns a fresh token, its lookup id and its hash.
func New() (token, lookupID string, hash Hash, err error) {
	buf := make([]byte, 30)
	if _, err := rand.Read(buf); err != nil {
		return "", "", Hash{}, fmt.Errorf("generate service token: %w", err)
	}
	body := Prefix + encoding.EncodeToString(buf[:10]) + encoding.EncodeToString(buf[10:])
	token = checksum.Append(body)
	return token, token[len(Prefix) : len(Prefix)+idLen], sha256.Sum256([]byte(token)), nil
}

// Parse checks a token's form and checksum and returns its lookup id and hash.
func Parse(token string) (lookupID string, hash Hash, err error) {
	if len(token) != Len || !strings.HasPrefix(token, Prefix) {
		return "", Hash{}, ErrMalformed
	}
	if !checksum.InAlphabet(token[len(Prefix):]) || !checksum.Valid(token) {
		return "", Hash{}, ErrMalformed
	}
	return token[len(Prefix) : len(Prefix)+idLen], sha256.Sum256([]byte(token)), nil
}

// Equal compares two hashes in constant time.
func Equal(a, b Hash) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }
