// Package servicetoken makes and checks the secret service tokens that authenticate management
// calls. A token is "tgs_" + a 16-character lookup id + a 32-character secret + a 7-character
// CRC-32 checksum, all lower-case base32: the prefix makes leaked tokens easy to find with secret
// scanners, and the checksum lets a typo or a truncated token be refused without a database query.
package servicetoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Prefix starts every service token.
const Prefix = "tgs_"

const (
	idLen       = 16 // 10 random bytes
	secretLen   = 32 // 20 random bytes (160 bits)
	checksumLen = 7  // 4 bytes of CRC-32
	// Len is the length of every well-formed token.
	Len = len(Prefix) + idLen + secretLen + checksumLen
)

var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

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
	token = body + checksum(body)
	return token, token[len(Prefix) : len(Prefix)+idLen], sha256.Sum256([]byte(token)), nil
}

// Parse checks a token's form and checksum and returns its lookup id and hash.
func Parse(token string) (lookupID string, hash Hash, err error) {
	if len(token) != Len || !strings.HasPrefix(token, Prefix) {
		return "", Hash{}, ErrMalformed
	}
	body, sum := token[:Len-checksumLen], token[Len-checksumLen:]
	for _, c := range token[len(Prefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", Hash{}, ErrMalformed
		}
	}
	if subtle.ConstantTimeCompare([]byte(checksum(body)), []byte(sum)) != 1 {
		return "", Hash{}, ErrMalformed
	}
	return token[len(Prefix) : len(Prefix)+idLen], sha256.Sum256([]byte(token)), nil
}

// Equal compares two hashes in constant time.
func Equal(a, b Hash) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

func checksum(body string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE([]byte(body)))
	return encoding.EncodeToString(b[:])
}
