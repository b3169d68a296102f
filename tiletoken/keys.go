package tiletoken

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
)

// MinSecretLen is the minimum signing secret length in bytes. HMAC-SHA256
// gains nothing from keys longer than its 32-byte output for our purposes,
// and anything shorter weakens it, so 32 bytes (64 hex characters) is the floor.
const MinSecretLen = 32

// Key is one HMAC signing key. The ID is not part of the token (GeoLens
// tokens carry no key id); it only names the key in configuration so that
// operators can rotate keys without downtime.
type Key struct {
	ID     string
	Secret []byte
}

// ParseKeys parses the TILEGATE_SIGNING_KEYS format "id:hex,id:hex".
//
// The first key signs new tokens and every key verifies, so rotation is:
// prepend a new key, wait at least one token lifetime, drop the old one.
// Whitespace around entries is ignored because the value usually comes from
// an environment variable or a YAML file where stray spaces are easy to add.
// Error messages never include secret material.
func ParseKeys(s string) ([]Key, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("tiletoken: no signing keys configured")
	}
	entries := strings.Split(s, ",")
	keys := make([]Key, 0, len(entries))
	for i, entry := range entries {
		entry = strings.TrimSpace(entry)
		id, secretHex, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("tiletoken: signing key #%d: want \"id:hex\"", i+1)
		}
		secret, err := hex.DecodeString(secretHex)
		if err != nil {
			return nil, fmt.Errorf("tiletoken: signing key #%d (%q): secret is not valid hex", i+1, id)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	if err := validateKeys(keys); err != nil {
		return nil, err
	}
	for i, k := range keys {
		if why := weakness(k.Secret); why != "" {
			return nil, fmt.Errorf("tiletoken: signing key #%d (%q): %w: %s; use 32 random bytes, e.g. openssl rand -hex 32",
				i+1, k.ID, ErrWeakKey, why)
		}
	}
	return keys, nil
}

// ErrWeakKey: a configured secret is not random enough to sign tokens with.
var ErrWeakKey = errors.New("secret is not random")

// MinSecretEntropy is the least estimated entropy of a configured secret, in bits per byte of
// its byte-value histogram (Shannon). 32 random bytes estimate 4.8 on average (at most 5:
// log2(32)): of 10⁷ drawn from crypto/rand the lowest was 4.29 and none was refused by any rule
// of weakness (2026-12-03); 16 hex digits' worth of values reach 4 at most.
const MinSecretEntropy = 4.0

// weakness says why a configured secret is not one a random generator makes ("" when it could
// be): one byte value throughout, a short pattern repeated, a counting sequence, text (every
// byte printable ASCII: a passphrase or a hex string encoded twice), or too little estimated
// entropy. Each of these is astronomically unlikely for random bytes and typical of a key
// someone typed, copied from an example, or left at its zero value; an attacker who guesses
// the key mints tokens for every dataset. Only configured keys are checked (ParseKeys): New
// takes what a caller built, tests' fixed keys among them.
func weakness(secret []byte) string {
	n := len(secret)
	if n == 0 {
		return "empty"
	}
	// A pattern of period p ≤ n/2 repeated (p = 1: one byte value throughout, all zeros among them).
	for p := 1; p <= n/2; p++ {
		if periodic(secret, p) {
			if p == 1 {
				return "every byte is the same value"
			}
			return fmt.Sprintf("a pattern of %d bytes repeated", p)
		}
	}
	// A counting sequence: the same step between every two bytes (00 01 02 …, ff fe fd …).
	step, counting := secret[1]-secret[0], true
	for i := 2; i < n && counting; i++ {
		counting = secret[i]-secret[i-1] == step
	}
	if counting {
		return "a counting sequence"
	}
	printable := true
	for _, b := range secret {
		if b < 0x20 || b > 0x7e {
			printable = false
			break
		}
	}
	if printable {
		return "every byte is printable text (a passphrase, or hex encoded twice), not random bytes"
	}
	if e := entropyPerByte(secret); e < MinSecretEntropy {
		return fmt.Sprintf("estimated entropy %.1f bits per byte, want at least %.0f", e, MinSecretEntropy)
	}
	return ""
}

// periodic reports whether b repeats with period p.
func periodic(b []byte, p int) bool {
	for i := p; i < len(b); i++ {
		if b[i] != b[i-p] {
			return false
		}
	}
	return true
}

// entropyPerByte is the Shannon entropy of b's byte-value histogram, in bits.
func entropyPerByte(b []byte) float64 {
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	h, n := 0.0, float64(len(b))
	for _, c := range counts {
		if c > 0 {
			q := float64(c) / n
			h -= q * math.Log2(q)
		}
	}
	return h
}

// EncodeKeys is the inverse of ParseKeys; it is used to persist a generated
// key. Secrets are written as lowercase hex.
func EncodeKeys(keys []Key) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k.ID)
		b.WriteByte(':')
		b.WriteString(hex.EncodeToString(k.Secret))
	}
	return b.String()
}

// GenerateKey makes a fresh random 32-byte key with the given id.
func GenerateKey(id string) (Key, error) {
	if err := validateID(id); err != nil {
		return Key{}, fmt.Errorf("tiletoken: %w", err)
	}
	secret := make([]byte, MinSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("tiletoken: generating key %q: %w", id, err)
	}
	return Key{ID: id, Secret: secret}, nil
}

// validateKeys enforces the configuration invariants. New calls it too, so
// keys built by hand cannot bypass what ParseKeys would refuse.
func validateKeys(keys []Key) error {
	if len(keys) == 0 {
		return errors.New("tiletoken: no signing keys configured")
	}
	seen := make(map[string]struct{}, len(keys))
	for i, k := range keys {
		if err := validateID(k.ID); err != nil {
			return fmt.Errorf("tiletoken: signing key #%d: %w", i+1, err)
		}
		if len(k.Secret) < MinSecretLen {
			return fmt.Errorf("tiletoken: signing key #%d (%q): secret is %d bytes, want at least %d",
				i+1, k.ID, len(k.Secret), MinSecretLen)
		}
		if _, dup := seen[k.ID]; dup {
			// A duplicate id is almost certainly a copy-paste mistake during
			// rotation; refusing it keeps "which key is current" unambiguous.
			return fmt.Errorf("tiletoken: signing key #%d: duplicate id %q", i+1, k.ID)
		}
		seen[k.ID] = struct{}{}
	}
	return nil
}

// validateID accepts non-empty ids made of [A-Za-z0-9_-], which keeps them
// free of the ':' and ',' separators and safe to log.
func validateID(id string) error {
	if id == "" {
		return errors.New("key id is empty")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return fmt.Errorf("key id %q: invalid character %q (allowed: A-Z a-z 0-9 _ -)", id, c)
		}
	}
	return nil
}
