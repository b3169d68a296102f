package tileaccess

import (
	"net/url"
	"testing"
)

// ParseCredentials reads each parameter as url.Values.Get would: the first occurrence, decoded,
// a pair that does not decode skipped.
func TestParseCredentials(t *testing.T) {
	for _, raw := range []string{
		"",
		"key=abc",
		"sig=s1&exp=1767225600&scope=acct%3Ads%3A3",
		"scope=a+b&scope=second&key=k",
		"key=%zz&key=good",
		"k%65y=escaped-name&sig=",
		"foo=bar&exp=1&&key=x%20y",
		"key",
		"scope=%3A%3a&sig=%2B",
	} {
		got := ParseCredentials(raw)
		q, _ := url.ParseQuery(raw)
		want := Credentials{}
		for name, dst := range map[string]*string{"key": &want.Key, "sig": &want.Sig, "exp": &want.Exp, "scope": &want.Scope} {
			*dst = q.Get(name)
		}
		_, want.HasKey = q["key"]
		_, want.HasSig = q["sig"]
		_, want.HasExp = q["exp"]
		_, want.HasScope = q["scope"]
		if got != want {
			t.Errorf("%q: %+v, want %+v", raw, got, want)
		}
	}
}

func BenchmarkParseCredentials(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ParseCredentials("sig=q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x&exp=1767225600&scope=0b5e3c1e-8f1a-4d7e-9c2b-3f4a5b6c7d8e%3A0b5e3c1e-8f1a-4d7e-9c2b-3f4a5b6c7d8e%3A3")
	}
}
