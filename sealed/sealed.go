// Package sealed encrypts the few secrets tilegate must store and use again (an upstream tile
// server's own credentials, sent in headers): AES-256-GCM under keys derived with HKDF-SHA256
// from the tile-signing keys, each ciphertext naming the key it was sealed with, so that
// rotating the signing keys does not lose what was sealed under the previous one. A database
// dump holds no secret in plain text; whoever holds the signing keys (TILEGATE_SIGNING_KEYS,
// which production keeps out of the database) can open them.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Key is a root secret with its id (a tile-signing key).
type Key struct {
	ID     string
	Secret []byte
}

// ErrNoKey: the ciphertext was sealed with a key that is no longer configured.
var ErrNoKey = errors.New("sealed: the key this was sealed with is not configured")

// ErrCorrupt: the ciphertext is malformed or was altered.
var ErrCorrupt = errors.New("sealed: ciphertext malformed or altered")

const (
	prefix = "v1:"
	info   = "tilegate sealed secrets v1"
)

// Box seals with its first key and opens with any of them.
type Box struct {
	ids   []string
	aeads []cipher.AEAD
}

// New derives a box from root keys; the first seals.
func New(keys []Key) (*Box, error) {
	if len(keys) == 0 {
		return nil, errors.New("sealed: no keys")
	}
	b := &Box{}
	for _, k := range keys {
		if k.ID == "" || strings.ContainsAny(k.ID, ":") {
			return nil, fmt.Errorf("sealed: key id %q: empty or contains ':'", k.ID)
		}
		dk, err := hkdf.Key(sha256.New, k.Secret, nil, info, 32)
		if err != nil {
			return nil, fmt.Errorf("sealed: derive key %s: %w", k.ID, err)
		}
		block, err := aes.NewCipher(dk)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		b.ids = append(b.ids, k.ID)
		b.aeads = append(b.aeads, aead)
	}
	return b, nil
}

// Seal encrypts plaintext; context binds the ciphertext to what it belongs to (a dataset id), so
// it cannot be moved to another row.
func (b *Box) Seal(plaintext []byte, context string) (string, error) {
	aead := b.aeads[0]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := aead.Seal(nonce, nonce, plaintext, []byte(b.ids[0]+"\x00"+context))
	return prefix + b.ids[0] + ":" + base64.RawStdEncoding.EncodeToString(ct), nil
}

// Open decrypts what Seal produced for the same context.
func (b *Box) Open(sealed, context string) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, ErrCorrupt
	}
	id, enc, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, ErrCorrupt
	}
	ct, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil {
		return nil, ErrCorrupt
	}
	for i, kid := range b.ids {
		if kid != id {
			continue
		}
		aead := b.aeads[i]
		if len(ct) < aead.NonceSize()+aead.Overhead() {
			return nil, ErrCorrupt
		}
		pt, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], []byte(id+"\x00"+context))
		if err != nil {
			return nil, ErrCorrupt
		}
		return pt, nil
	}
	return nil, fmt.Errorf("%w (key %q)", ErrNoKey, id)
}
