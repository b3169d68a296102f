package servicetoken

import (
	"strings"
	"testing"
)

func TestNewParseRoundTrip(t *testing.T) {
	token, id, hash, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if len(token) != Len || !strings.HasPrefix(token, Prefix) {
		t.Fatalf("token %q has the wrong form", token)
	}
	gotID, gotHash, err := Parse(token)
	if err != nil {
		t.Fatalf("Parse(New()) = %v", err)
	}
	if gotID != id || !Equal(gotHash, hash) {
		t.Fatalf("Parse gave id %q hash %x, New gave %q %x", gotID, gotHash, id, hash)
	}
	other, _, _, _ := New()
	if other == token {
		t.Fatal("two tokens are equal")
	}
}

func TestParseRefusesMalformed(t *testing.T) {
	token, _, _, err := New()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := []byte(token)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]string{
		"empty":            "",
		"truncated":        token[:Len-1],
		"extended":         token + "a",
		"wrong prefix":     "tgx_" + token[4:],
		"upper case":       strings.ToUpper(token),
		"typo in id":       flip(len(Prefix) + 2),
		"typo in secret":   flip(len(Prefix) + idLen + 5),
		"typo in checksum": flip(Len - 1),
		"bad alphabet":     token[:10] + "1" + token[11:],
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Parse(in); err != ErrMalformed {
				t.Fatalf("Parse(%q) = %v, want ErrMalformed", in, err)
			}
		})
	}
}
