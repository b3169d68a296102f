package tiletoken

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
	return keys, nil
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
