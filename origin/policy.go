package origin

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Reason is why a request was refused; "" means allowed.
type Reason string

const (
	Allowed             Reason = ""
	ReasonOrigin        Reason = "origin"         // origin known but not listed
	ReasonUnknownOrigin Reason = "unknown_origin" // no usable Origin/Referer and "?" not listed
	ReasonUserAgent     Reason = "user_agent"
)

// Policy is a compiled, immutable, concurrency-safe rule set of one API key.
// Compile once, Check many times.
//
// The zero Policy has no restrictions.
type Policy struct {
	// restricted is false when the origin list is empty: any origin,
	// known or not, is allowed. Inverted so the zero value is permissive
	// like an empty list, rather than refusing everything.
	restricted   bool
	allowUnknown bool
	// exact and wildcard map a canonical host (the base, for "*." entries)
	// to the scheme/port constraints listed for it, so Check costs one map
	// lookup per label of the request host whatever the number of rules.
	exact     map[string][]constraint
	wildcard  map[string][]constraint
	userAgent string // "" means no user_agent rule
}

// constraint restricts the scheme and effective port of a request whose host
// matched. Empty scheme and zero port mean any.
type constraint struct {
	scheme string
	port   int
}

func (c constraint) allows(scheme string, port int) bool {
	return (c.scheme == "" || c.scheme == scheme) && (c.port == 0 || c.port == port)
}

// Compile takes already-normalised rules (as stored); it must still not
// panic on garbage (returns error).
//
// Entries are parsed with the same rules as NormalizeRule, so entries stored
// in a non-canonical form still mean what they meant when written; an invalid
// entry yields a *RuleError. An empty userAgent means no user_agent rule. The
// entry-count limit is not applied here so that lowering it later cannot
// break keys already stored.
func Compile(origins []string, userAgent string) (*Policy, error) {
	p := &Policy{restricted: len(origins) > 0}
	for i, e := range origins {
		r, reason := parseRule(e)
		if reason != "" {
			return nil, &RuleError{Index: i, Value: e, Reason: reason}
		}
		if r.unknown {
			p.allowUnknown = true
			continue
		}
		m := &p.exact
		if r.wildcard {
			m = &p.wildcard
		}
		if *m == nil {
			*m = make(map[string][]constraint)
		}
		(*m)[r.host] = append((*m)[r.host], r.constraint())
	}
	if userAgent != "" {
		ua, err := NormalizeUserAgent(userAgent)
		if err != nil {
			return nil, fmt.Errorf("compile policy: %w", err)
		}
		p.userAgent = ua
	}
	return p, nil
}

// Check evaluates a request's headers.
//
// The origin rules are checked before the user_agent rule, so a request that
// fails both is reported as an origin failure: for the browser clients these
// rules target, a wrong origin is the likelier mistake and the more useful
// thing to tell the developer.
func (p *Policy) Check(originHeader, refererHeader, userAgentHeader string) Reason {
	if p.restricted {
		scheme, host, port, ok := requestOrigin(originHeader, refererHeader)
		if !ok {
			if !p.allowUnknown {
				return ReasonUnknownOrigin
			}
		} else if !p.allows(scheme, host, port) {
			return ReasonOrigin
		}
	}
	if p.userAgent != "" && !strings.Contains(userAgentHeader, p.userAgent) {
		return ReasonUserAgent
	}
	return Allowed
}

// allows reports whether a known request origin matches a listed entry.
func (p *Policy) allows(scheme, host string, port int) bool {
	for _, c := range p.exact[host] {
		if c.allows(scheme, port) {
			return true
		}
	}
	if len(p.wildcard) == 0 {
		return false
	}
	// Try every proper suffix that starts after a dot: for a.b.example.com
	// that is b.example.com, example.com and com. Starting after a dot is
	// what keeps "*.example.com" from matching evil-example.com, and
	// requiring a dot means the apex itself never matches. Request hosts
	// have no empty labels, so the part before the suffix is never empty.
	for i := 0; i < len(host); i++ {
		if host[i] != '.' {
			continue
		}
		for _, c := range p.wildcard[host[i+1:]] {
			if c.allows(scheme, port) {
				return true
			}
		}
	}
	return false
}

// RequestOrigin extracts the origin a request comes from, the way Check sees
// it.
//
// A non-empty Origin header is authoritative: if it is "null" (an opaque
// origin, e.g. a sandboxed iframe or a file:// page) or unparsable, the
// origin is unknown and Referer is not consulted, because the browser has
// deliberately withheld the origin and a Referer must not override that.
// Without Origin, the scheme://host[:port] prefix of Referer is used.
//
// The scheme is lower-cased, the host lower-cased, converted to punycode and
// stripped of a trailing dot (IPv6 literals keep their brackets), user info
// is dropped, and port is "" when absent or the scheme's default. Schemes
// other than http and https (e.g. capacitor://localhost from a mobile app)
// are returned as they are: host-only rules match them.
func RequestOrigin(originHeader, refererHeader string) (scheme, host, port string, ok bool) {
	scheme, host, n, ok := requestOrigin(originHeader, refererHeader)
	if !ok {
		return "", "", "", false
	}
	if n != 0 && n != defaultPort(scheme) {
		port = strconv.Itoa(n)
	}
	return scheme, host, port, true
}

// requestOrigin is RequestOrigin for the hot path: port is the effective
// port (explicit, else the scheme's default, else 0), and for the usual
// browser header the results are substrings of it, so nothing is allocated.
func requestOrigin(originHeader, refererHeader string) (scheme, host string, port int, ok bool) {
	if o := trimOWS(originHeader); o != "" {
		if o == "null" {
			return "", "", 0, false
		}
		return parseURLOrigin(o, true)
	}
	if r := trimOWS(refererHeader); r != "" {
		return parseURLOrigin(r, false)
	}
	return "", "", 0, false
}

// parseURLOrigin parses the origin of an absolute URL. With exact set (for
// the Origin header) nothing may follow the authority; otherwise (Referer)
// path, query and fragment are ignored.
func parseURLOrigin(s string, exact bool) (scheme, host string, port int, ok bool) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", "", 0, false
	}
	scheme, ok = lowerScheme(s[:i])
	if !ok {
		return "", "", 0, false
	}
	authority := s[i+3:]
	// A backslash ends the authority too: browsers treat it as "/" in
	// http(s) URLs, so "https://evil.com\@example.com" is evil.com.
	if end := strings.IndexAny(authority, "/?#\\"); end >= 0 {
		if exact {
			return "", "", 0, false
		}
		authority = authority[:end]
	}
	// User info is not part of the origin: https://example.com@evil.com/
	// is evil.com.
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
	}
	if authority == "" {
		return "", "", 0, false
	}
	h, p, hasPort, reason := splitHostPort(authority)
	if reason != "" {
		return "", "", 0, false
	}
	// An empty port ("https://example.com:/") is valid in URLs and means
	// the default one.
	if hasPort && p != "" {
		if port, ok = parsePort(p); !ok || port == 0 {
			return "", "", 0, false
		}
	} else {
		port = defaultPort(scheme)
	}
	if host, ok = canonicalRequestHost(h); !ok {
		return "", "", 0, false
	}
	return scheme, host, port, true
}

// canonicalRequestHost brings a request host to the form rule hosts are
// stored in. It is more lenient than rule validation (underscores and
// edge hyphens pass, since browsers send them) but refuses anything that
// could confuse matching, such as "*", empty labels or "/".
func canonicalRequestHost(h string) (string, bool) {
	if h == "" {
		return "", false
	}
	if h[0] == '[' {
		if h[len(h)-1] != ']' {
			return "", false
		}
		inner := h[1 : len(h)-1]
		addr, err := netip.ParseAddr(inner)
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", false
		}
		var buf [64]byte
		if b := addr.AppendTo(buf[:0]); string(b) != inner {
			return "[" + string(b) + "]", true
		}
		return h, true
	}

	upper := false
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= 0x80 {
			// Internationalised name sent unencoded (browsers send
			// punycode, other clients may not).
			a, err := hostProfile.ToASCII(h)
			if err != nil {
				return "", false
			}
			h = a
			upper = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if upper {
		h = asciiLower(h)
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || h[0] == '.' {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			if i+1 == len(h) || h[i+1] == '.' {
				return "", false
			}
		default:
			return "", false
		}
	}
	return h, true
}

// trimOWS trims the optional whitespace HTTP allows around field values.
func trimOWS(s string) string {
	return strings.Trim(s, " \t")
}
