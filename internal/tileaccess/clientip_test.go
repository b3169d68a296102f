package tileaccess

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	a := &Access{trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string // "" : no address
	}{
		{"192.0.2.1:5000", nil, "192.0.2.1"},
		{"192.0.2.1:5000", []string{"198.51.100.7"}, "192.0.2.1"}, // an untrusted peer's header is ignored
		{"[::ffff:192.0.2.1]:5000", nil, "192.0.2.1"},
		{"[2001:db8::1]:443", nil, "2001:db8::1"},
		{"10.1.1.1:80", nil, "10.1.1.1"}, // a trusted proxy without the header
		{"10.1.1.1:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"10.1.1.1:80", []string{"203.0.113.5, 198.51.100.7, 10.2.2.2"}, "198.51.100.7"},
		{"10.1.1.1:80", []string{"203.0.113.5", "198.51.100.7,10.2.2.2"}, "198.51.100.7"}, // several header lines
		{"[fd00::1]:80", []string{"2001:db8::9"}, "2001:db8::9"},
		{"10.1.1.1:80", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"}, // only proxies: the left-most
		{"10.1.1.1:80", []string{"198.51.100.7, junk"}, ""},         // garbage trusts nothing
		{"not an address", nil, ""},
	} {
		h := http.Header{}
		for _, v := range tc.xff {
			h.Add("X-Forwarded-For", v)
		}
		got := a.clientIP(Client{Header: h, RemoteAddr: tc.remote})
		if (tc.want == "" && got.IsValid()) || (tc.want != "" && got != netip.MustParseAddr(tc.want)) {
			t.Errorf("%s %v: %v, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
}
