package keytoken

import (
	"strings"
	"testing"
)

func TestNewIsCurrent(t *testing.T) {
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two tokens are equal")
	}
	if len(a) != Len || !strings.HasPrefix(a, Prefix) || Check(a) != Current {
		t.Fatalf("New() = %q: length %d, form %v; want %d characters, %q prefix, Current", a, len(a), Check(a), Len, Prefix)
	}
}

func TestCheck(t *testing.T) {
	tok, err := New()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := []byte(tok)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]struct {
		in   string
		want Form
	}{
		"current":             {tok, Current},
		"legacy":              {"AAAAAAAAAAAAAAAAAAAAAAAA", Legacy},
		"legacy with - and _": {"ab-_cdEFGH0123456789xyzQ", Legacy},
		"empty":               {"", Invalid},
		"typo in random part": {flip(len(Prefix) + 3), Invalid},
		"typo in checksum":    {flip(Len - 1), Invalid},
		"truncated":           {tok[:Len-1], Invalid},
		"extended":            {tok + "a", Invalid},
		"wrong prefix":        {"tgs_" + tok[len(Prefix):], Invalid},
		"upper case":          {strings.ToUpper(tok), Invalid},
		"legacy length, bad":  {"AAAAAAAAAAAA.AAAAAAAAAAA", Invalid},
		"legacy, one short":   {"AAAAAAAAAAAAAAAAAAAAAAA", Invalid},
	}
	for name, c := range cases {
		if got := Check(c.in); got != c.want {
			t.Errorf("%s: Check(%q) = %v, want %v", name, c.in, got, c.want)
		}
	}
}
