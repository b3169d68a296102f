package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrAddressDenied is returned when an upstream resolves to an address tilegate may not call.
var ErrAddressDenied = errors.New("upstream address not allowed")

// Guard decides which addresses upstream requests may connect to. It runs at dial time, on the
// address actually dialled after name resolution, so a name that resolves to a public address
// when the dataset is saved and to 127.0.0.1 later (DNS rebinding) is still refused.
//
// Denied unless an allowed range covers them: loopback, link-local (which holds the cloud
// metadata services at 169.254.169.254 and fd00:ec2::254), unspecified, multicast and broadcast
// addresses, and the addresses of tilegate's own listeners (the admin listener above all).
// Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed by default: an upstream tile
// server on the platform's internal network is the normal case this feature exists for, and the
// operator who runs tilegate there has already chosen to reach that network. Allowed ranges
// (TILEGATE_UPSTREAM_ALLOW) override the denials, for example 127.0.0.1/32 for a tile server on the
// same host.
type Guard struct {
	allow []netip.Prefix
	own   []netip.AddrPort // tilegate's own listeners; refused even when allowed by range
}

// NewGuard returns a guard allowing the given ranges on top of the defaults and refusing
// tilegate's own listener addresses (see ListenerAddrs for a listener on every interface).
func NewGuard(allow []netip.Prefix, own []netip.AddrPort) *Guard {
	return &Guard{allow: allow, own: own}
}

// ParsePrefixes parses a comma-separated list of CIDRs or single addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR range", part)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Check reports whether a connection to addr:port may be made.
func (g *Guard) Check(ap netip.AddrPort) error {
	addr := ap.Addr().Unmap()
	for _, own := range g.own {
		if own.Port() == ap.Port() && own.Addr().Unmap() == addr {
			return fmt.Errorf("%w: %s is one of tilegate's own listeners", ErrAddressDenied, ap)
		}
	}
	for _, p := range g.allow {
		if p.Contains(addr) {
			return nil
		}
	}
	switch {
	case addr.IsLoopback():
		return fmt.Errorf("%w: %s is a loopback address", ErrAddressDenied, addr)
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is a link-local address", ErrAddressDenied, addr)
	case addr.IsUnspecified():
		return fmt.Errorf("%w: %s is unspecified", ErrAddressDenied, addr)
	case addr.IsMulticast(), addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %s is a multicast or broadcast address", ErrAddressDenied, addr)
	case addr.Is6() && ec2Metadata6.Contains(addr):
		return fmt.Errorf("%w: %s is a metadata service address", ErrAddressDenied, addr)
	}
	return nil
}

var ec2Metadata6 = netip.MustParsePrefix("fd00:ec2::/32")

// control is a net.Dialer Control function applying the guard to every connection attempt.
func (g *Guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse %q", ErrAddressDenied, address)
	}
	return g.Check(ap)
}

// dialer is the dialer every upstream connection goes through.
func (g *Guard) dialer(d *net.Dialer) *net.Dialer {
	d.Control = g.control
	return d
}

// ListenerAddrs are the addresses a listener on addr (host:port) can be reached at: the host's,
// or, for an unspecified or empty host (":8080", "0.0.0.0:8080"), every address of every
// interface of this machine.
func ListenerAddrs(addr string) []netip.AddrPort {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	port, err := netip.ParseAddrPort(netip.IPv4Unspecified().String() + ":" + portText)
	if err != nil {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), port.Port())}
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, ia := range ifaddrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil {
			out = append(out, netip.AddrPortFrom(p.Addr().Unmap(), port.Port()))
		}
	}
	return out
}
