// Package checksum is the self-check of the secrets tilegate issues (service tokens, API key
// tokens): a token's body is followed by its CRC-32 in lower-case base32, so that a typo, a
// truncated copy or a made-up string is refused by the token's own form, without a database query.
// The CRC is no secret and no authenticator: the body's random part is what cannot be guessed.
package checksum

import (
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"hash/crc32"
)

// Encoding is the alphabet of the tokens' random parts and of their checksums: lower-case
// base32 without padding (URL-safe, no look-alike case pairs).
var Encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Len is the length of a checksum: 4 bytes of CRC-32, base32.
const Len = 7

// Append returns body followed by its checksum.
func Append(body string) string { return body + sum(body) }

// Valid reports whether token ends with the checksum of what precedes it (constant time in
// the checksum; the caller checks the token's length and alphabet).
func Valid(token string) bool {
	if len(token) < Len {
		return false
	}
	body, got := token[:len(token)-Len], token[len(token)-Len:]
	return subtle.ConstantTimeCompare([]byte(sum(body)), []byte(got)) == 1
}

// InAlphabet reports whether every byte of s is a character of Encoding.
func InAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

func sum(body string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE([]byte(body)))
	return Encoding.EncodeToString(b[:])
}
