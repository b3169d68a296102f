package tileaccess

import (
	"net/netip"
	"strings"
)

// ClientIP is the client's address under the trusted-proxy rule below (rate limits per address
// use it as keys' ip_ranges do).
func (a *Access) ClientIP(cl Client) netip.Addr { return a.clientIP(cl) }

// TrustedPeer reports whether a request's peer (its RemoteAddr) is a trusted proxy, whose
// forwarded headers may be believed.
func (a *Access) TrustedPeer(remoteAddr string) bool { return a.trusted(peerAddr(remoteAddr)) }

// clientIP is the address a key's ip_ranges are checked against: the connection's peer, unless
// the peer is a trusted proxy (TILEGATE_TRUSTED_PROXIES); then the right-most X-Forwarded-For
// hop that is not a trusted proxy (hops left of it were written by whoever the untrusted hop
// is, so they prove nothing). The zero Addr when it cannot be told: no range contains it.
func (a *Access) clientIP(cl Client) netip.Addr {
	ip := peerAddr(cl.RemoteAddr)
	if !a.trusted(ip) {
		return ip
	}
	values := cl.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		hops := strings.Split(values[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				return netip.Addr{} // a garbled chain: nothing in it can be trusted
			}
			hop = hop.Unmap()
			if !a.trusted(hop) {
				return hop
			}
			ip = hop
		}
	}
	// Every hop is a trusted proxy: the left-most is as close to the client as it gets.
	return ip
}

func (a *Access) trusted(ip netip.Addr) bool {
	for _, p := range a.trustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// peerAddr parses http.Request.RemoteAddr ("ip:port", "[v6]:port", or a bare address).
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	if ip, err := netip.ParseAddr(remote); err == nil {
		return ip.Unmap()
	}
	return netip.Addr{}
}
