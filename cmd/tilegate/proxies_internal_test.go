package main

import (
	"net/netip"
	"slices"
	"testing"
)

// TILEGATE_TRUSTED_PROXIES: CIDRs or addresses, normalised; anything else stops the server
// from starting rather than trusting nothing (or everything) silently.
func TestTrustedProxies(t *testing.T) {
	got, err := trustedProxies([]string{" 10.0.0.1/8", "::1", "192.0.2.7", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("192.0.2.7/32")}
	if !slices.Equal(got, want) {
		t.Errorf("trustedProxies = %v, want %v", got, want)
	}
	for _, bad := range []string{"proxy.internal", "10.0.0.0/33", "10.0.0.300"} {
		if _, err := trustedProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
