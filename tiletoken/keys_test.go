package tiletoken

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustGenerate(t *testing.T, id string) Key {
	t.Helper()
	k, err := GenerateKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A configured secret that is not random is refused, naming the key's id and why, never the
// secret (issue #15 item 6): all zeros, one byte value, a short pattern repeated, a counting
// sequence, text, too little entropy.
func TestParseKeysRefusesWeakSecrets(t *testing.T) {
	seeded := rand.New(rand.NewChaCha8([32]byte{1})) // deterministic "random" bytes
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(seeded.Uint32())
		}
		return b
	}
	half := random(16)
	bits := make([]byte, 64) // random, but only the values 0 and 1: 1 bit per byte
	for i := range bits {
		bits[i] = byte(seeded.IntN(2))
	}
	nibbles := make([]byte, 64) // 16 values, non-printable: 4 bits per byte at most
	for i := range nibbles {
		nibbles[i] = byte(seeded.IntN(16))
	}
	counting := make([]byte, 32)
	down := make([]byte, 40)
	for i := range counting {
		counting[i] = byte(i)
	}
	for i := range down {
		down[i] = byte(0xff - 3*i)
	}
	for name, tt := range map[string]struct {
		secret []byte
		why    string
	}{
		"all zero":                  {make([]byte, 32), "every byte is the same value"},
		"all 0xff, 64 bytes":        {bytes.Repeat([]byte{0xff}, 64), "every byte is the same value"},
		"two bytes repeated":        {bytes.Repeat([]byte{0xab, 0xcd}, 16), "a pattern of 2 bytes repeated"},
		"random half twice":         {append(append([]byte{}, half...), half...), "a pattern of 16 bytes repeated"},
		"pattern, cut short":        {append(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 5), 1, 2), "a pattern of 7 bytes repeated"},
		"counting":                  {counting, "a counting sequence"},
		"counting down by 3":        {down, "a counting sequence"},
		"passphrase":                {[]byte("correct horse battery staple 1234"), "printable text"},
		"hex encoded twice":         {[]byte(hex.EncodeToString(random(32))), "printable text"},
		"random bits, not bytes":    {bits, "estimated entropy 1.0 bits per byte"},
		"random nibbles, 16 values": {nibbles, "estimated entropy 3."},
	} {
		t.Run(name, func(t *testing.T) {
			secretHex := hex.EncodeToString(tt.secret)
			good := EncodeKeys([]Key{mustGenerate(t, "current")})
			// Refused first or after a good key: the error names the weak key's position and id.
			for i, in := range []string{"weak_1:" + secretHex, good + ",weak_1:" + secretHex} {
				keys, err := ParseKeys(in)
				if !errors.Is(err, ErrWeakKey) {
					t.Fatalf("ParseKeys = %d keys, %v; want ErrWeakKey", len(keys), err)
				}
				msg := err.Error()
				if !strings.Contains(msg, `signing key #`+string(rune('1'+i))+` ("weak_1")`) || !strings.Contains(msg, tt.why) {
					t.Errorf("error %q: want the key's position and id and %q", msg, tt.why)
				}
				if strings.Contains(msg, secretHex) || strings.Contains(msg, secretHex[:16]) || strings.Contains(msg, "\n") {
					t.Errorf("error %q shows the secret or is not one line", msg)
				}
			}
		})
	}
}

// Random secrets pass: generated ones, and 20,000 more of 32 to 64 bytes from a seeded
// generator (a fixed set, so the test cannot flake). New still takes any key of the right
// length: the rule is for configuration, and tests build fixed keys.
func TestParseKeysAcceptsRandomSecrets(t *testing.T) {
	seeded := rand.New(rand.NewChaCha8([32]byte{2}))
	var in []string
	for i := range 20_000 {
		b := make([]byte, 32+i%33)
		for j := range b {
			b[j] = byte(seeded.Uint32())
		}
		if why := weakness(b); why != "" {
			t.Fatalf("random secret %d (%d bytes) refused: %s", i, len(b), why)
		}
		if i < 5 {
			in = append(in, "k"+string(rune('a'+i))+":"+hex.EncodeToString(b))
		}
	}
	for range 100 {
		if _, err := ParseKeys(EncodeKeys([]Key{mustGenerate(t, "g")})); err != nil {
			t.Fatalf("a generated key was refused: %v", err)
		}
	}
	if keys, err := ParseKeys(strings.Join(in, ",")); err != nil || len(keys) != 5 {
		t.Fatalf("ParseKeys(5 random keys) = %d, %v", len(keys), err)
	}
	if _, err := New([]Key{{ID: "zero", Secret: make([]byte, 32)}}); err != nil {
		t.Errorf("New refused a fixed test key: %v", err)
	}
}
