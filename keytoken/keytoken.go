// Package keytoken makes API key tokens (the public key in tile URLs, `?key=`) and tells, from
// a string's form alone, whether it can be one, so that made-up keys are refused without a
// database query.
//
// A token issued now is "tgk_" + 32 random characters (20 bytes, 160 bits) + a 7-character
// CRC-32 checksum, all lower-case base32: the mechanism of service tokens (internal/checksum),
// a prefix secret scanners can find. Tokens issued before it are 24 characters of unpadded
// base64url (18 random bytes) with no checksum; they still work, and rotating such a key gives
// it a token of the current form. The two forms have different lengths, so neither can be
// taken for the other.
package keytoken

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/tilegate/tilegate/internal/checksum"
)

// Prefix starts every current token.
const Prefix = "tgk_"

const (
	randomLen = 32 // 20 random bytes, base32
	// Len is the length of a current token.
	Len = len(Prefix) + randomLen + checksum.Len
	// LegacyLen is the length of a token issued before the checksum.
	LegacyLen = 24
)

// Form is what a string's form says it can be.
type Form uint8

const (
	// Invalid: no token tilegate issued looks like this.
	Invalid Form = iota
	// Legacy: a token without checksum (issued before it); only a lookup can tell.
	Legacy
	// Current: a token with a valid checksum; only a lookup can tell whether it exists.
	Current
)

// New returns a fresh token of the current form.
func New() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate key token: %w", err)
	}
	return checksum.Append(Prefix + checksum.Encoding.EncodeToString(b)), nil
}

// Check tells the form of s without any lookup.
func Check(s string) Form {
	switch len(s) {
	case Len:
		if strings.HasPrefix(s, Prefix) && checksum.InAlphabet(s[len(Prefix):]) && checksum.Valid(s) {
			return Current
		}
	case LegacyLen:
		if base64URL(s) {
			return Legacy
		}
	}
	return Invalid
}

// base64URL reports whether s is made of unpadded base64url characters only.
func base64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
