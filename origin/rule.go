// Package origin validates the origin and user-agent restrictions of API keys
// and decides whether a tile request satisfies them.
//
// Rules are normalised once, when a key is written (NormalizeRules,
// NormalizeUserAgent), so that what is stored and shown back to the user is
// canonical and duplicates are gone. At serving time the stored rules are
// compiled into a Policy, whose Check method is the hot path.
//
// Origin rule grammar (surrounding whitespace is trimmed):
//
//	?                       requests with no usable Origin/Referer
//	example.com             that host, any scheme, any port
//	*.example.com           any subdomain at any depth (not example.com itself)
//	example.com:8080        that host and port, any scheme
//	https://example.com     that host, scheme https, port 443
//	http://localhost:3000   that host, scheme http, port 3000
//	127.0.0.1, [::1]        IP literals, combinable with scheme and port
//
// A wildcard may be combined with a scheme and/or port
// (https://*.example.com). A single trailing "/" is accepted and dropped
// because it is what browsers show when an origin is copied from the
// address bar; any other path is refused.
//
// Origin restrictions only bind well-behaved browsers: any other client can
// send whatever headers it likes. They keep a key copied from a web page from
// being reused on another web site; they are not authentication.
package origin

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

const (
	// unknownRule is the entry that admits requests without a usable origin.
	unknownRule = "?"
	// maxRuleLen bounds an entry before and after normalisation. It is the
	// DNS limit for a host name, so a legitimate entry never comes close.
	maxRuleLen = 253
	// maxRules bounds the work Check may face and the size of the stored list.
	maxRules = 100
	// maxUserAgentLen bounds a user_agent rule; real User-Agent values are
	// rarely longer and a longer substring is almost certainly a mistake.
	maxUserAgentLen = 256
)

// hostProfile converts host names to their ASCII (punycode) form the way
// browsers do (UTS #46, non-transitional, so "ß" stays distinct from "ss").
// Hyphen placement is not checked here because browsers accept names such as
// "r3---sn-abc.googlevideo.com"; rule hosts get a stricter LDH check of
// their own afterwards.
var hostProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.CheckHyphens(false),
)

// RuleError says which entry of a list is invalid and why (Index is the
// position in the input list).
//
// NormalizeRule, which has no list, reports Index -1.
type RuleError struct {
	Index  int
	Value  string
	Reason string
}

func (e *RuleError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("invalid origin rule %q: %s", e.Value, e.Reason)
	}
	return fmt.Sprintf("invalid origin rule %q at index %d: %s", e.Value, e.Index, e.Reason)
}

// rule is a parsed origin entry.
type rule struct {
	unknown  bool   // the "?" entry
	scheme   string // "http", "https" or "" for any
	wildcard bool   // host is the base of a "*." entry
	host     string // canonical host; IPv6 literals keep their brackets
	port     int    // explicit non-default port, 0 if none
}

// String returns the canonical entry.
func (r rule) String() string {
	if r.unknown {
		return unknownRule
	}
	var b strings.Builder
	if r.scheme != "" {
		b.WriteString(r.scheme)
		b.WriteString("://")
	}
	if r.wildcard {
		b.WriteString("*.")
	}
	b.WriteString(r.host)
	if r.port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(r.port))
	}
	return b.String()
}

// constraint is what a request's scheme and effective port must satisfy once
// its host has matched. An entry with a scheme but no port pins the scheme's
// default port: "https://example.com" must not admit https://example.com:8443.
func (r rule) constraint() constraint {
	c := constraint{scheme: r.scheme, port: r.port}
	if c.port == 0 && c.scheme != "" {
		c.port = defaultPort(c.scheme)
	}
	return c
}

// NormalizeRule validates one entry and returns its canonical form.
//
// The error, if any, is a *RuleError with Index -1.
func NormalizeRule(entry string) (string, error) {
	r, reason := parseRule(entry)
	if reason != "" {
		return "", &RuleError{Index: -1, Value: entry, Reason: reason}
	}
	return r.String(), nil
}

// NormalizeRules validates a whole list (returns *RuleError for the first
// bad entry), de-duplicates, returns canonical list (never nil: empty slice
// for empty input).
//
// Duplicates are detected on the canonical form and the first occurrence
// keeps its place, so the user sees their own order back. The entry limit is
// applied to the input, before de-duplication, so the work done here is
// bounded too.
func NormalizeRules(entries []string) ([]string, error) {
	if len(entries) > maxRules {
		return nil, fmt.Errorf("too many origin rules: %d (at most %d)", len(entries), maxRules)
	}
	out := make([]string, 0, len(entries))
	seen := make(map[string]struct{}, len(entries))
	for i, e := range entries {
		r, reason := parseRule(e)
		if reason != "" {
			return nil, &RuleError{Index: i, Value: e, Reason: reason}
		}
		s := r.String()
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	return out, nil
}

// NormalizeUserAgent validates a user_agent rule; returns trimmed value.
//
// The value is otherwise kept as given because Check matches it as an exact,
// case-sensitive substring of the User-Agent header.
func NormalizeUserAgent(ua string) (string, error) {
	s := strings.TrimSpace(ua)
	switch {
	case s == "":
		return "", fmt.Errorf("invalid user_agent rule: empty")
	case len(s) > maxUserAgentLen:
		return "", fmt.Errorf("invalid user_agent rule: %d bytes long (at most %d)", len(s), maxUserAgentLen)
	case !utf8.ValidString(s):
		return "", fmt.Errorf("invalid user_agent rule %q: not valid UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("invalid user_agent rule %q: contains control character %U", s, r)
		}
	}
	return s, nil
}

// parseRule parses an entry and makes sure its canonical form parses back to
// itself. The second pass makes normalisation idempotent by construction:
// host name mapping (UTS #46) has corner cases where mapping the output again
// would differ, and an entry whose stored form would later change meaning or
// be refused is better refused now.
func parseRule(entry string) (rule, string) {
	r, reason := parseRuleOnce(entry)
	if reason != "" {
		return rule{}, reason
	}
	s := r.String()
	if len(s) > maxRuleLen {
		return rule{}, fmt.Sprintf("longer than %d bytes once normalised", maxRuleLen)
	}
	if r2, reason := parseRuleOnce(s); reason != "" || r2 != r {
		return rule{}, "host name has no stable canonical form"
	}
	return r, ""
}

func parseRuleOnce(entry string) (rule, string) {
	s := strings.TrimSpace(entry)
	if s == "" {
		return rule{}, "empty"
	}
	if len(s) > maxRuleLen {
		return rule{}, fmt.Sprintf("longer than %d bytes", maxRuleLen)
	}
	if s == unknownRule {
		return rule{unknown: true}, ""
	}
	if !utf8.ValidString(s) {
		return rule{}, "not valid UTF-8"
	}
	for _, c := range s {
		if unicode.IsSpace(c) {
			return rule{}, "contains whitespace"
		}
		if unicode.IsControl(c) {
			return rule{}, "contains a control character"
		}
	}

	var r rule
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, ok := lowerScheme(s[:i])
		switch {
		case i == 0:
			return rule{}, "missing scheme before \"://\""
		case !ok || (scheme != "http" && scheme != "https"):
			return rule{}, fmt.Sprintf("unsupported scheme %q (only http and https)", s[:i])
		}
		r.scheme = scheme
		s = s[i+3:]
	}
	s = strings.TrimSuffix(s, "/")
	switch {
	case strings.ContainsAny(s, "/\\"):
		return rule{}, "must not contain a path"
	case strings.Contains(s, "?"):
		return rule{}, "must not contain a query"
	case strings.Contains(s, "#"):
		return rule{}, "must not contain a fragment"
	case strings.Contains(s, "@"):
		return rule{}, "must not contain user info"
	case s == "":
		return rule{}, "missing host"
	}

	host, port, hasPort, reason := splitHostPort(s)
	if reason != "" {
		return rule{}, reason
	}
	if hasPort {
		if port == "" {
			return rule{}, "empty port"
		}
		n, ok := parsePort(port)
		if !ok || n == 0 {
			return rule{}, fmt.Sprintf("invalid port %q (must be 1 to 65535)", port)
		}
		if r.scheme == "" || n != defaultPort(r.scheme) {
			r.port = n
		}
	}

	r.host, r.wildcard, reason = canonicalRuleHost(host)
	if reason != "" {
		return rule{}, reason
	}
	return r, ""
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
// Unlike net.SplitHostPort the port is optional; hasPort with an empty port
// means a trailing ":", which callers judge differently.
func splitHostPort(s string) (host, port string, hasPort bool, reason string) {
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, "unclosed \"[\" in IPv6 address"
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, "", false, ""
		}
		if rest[0] != ':' {
			return "", "", false, "unexpected characters after IPv6 address"
		}
		return host, rest[1:], true, ""
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", false, ""
	}
	host, port = s[:i], s[i+1:]
	if strings.IndexByte(host, ':') >= 0 {
		return "", "", false, "IPv6 address must be in brackets"
	}
	return host, port, true, ""
}

// canonicalRuleHost validates the host part of an entry and returns its
// canonical form and whether it was a "*." wildcard.
func canonicalRuleHost(host string) (string, bool, string) {
	if host == "" {
		return "", false, "missing host"
	}
	if host[0] == '[' {
		if host[len(host)-1] != ']' {
			return "", false, "invalid IPv6 address"
		}
		addr, err := netip.ParseAddr(host[1 : len(host)-1])
		switch {
		case err != nil || !addr.Is6():
			return "", false, "invalid IPv6 address"
		case addr.Zone() != "":
			return "", false, "IPv6 zone not allowed"
		}
		return "[" + addr.String() + "]", false, ""
	}

	wildcard := false
	if host == "*" {
		return "", false, "\"*\" alone is not allowed; an empty list already allows any origin"
	}
	if strings.HasPrefix(host, "*.") {
		wildcard = true
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return "", false, "wildcard only allowed as a leading \"*.\" label"
	}

	ascii, err := hostProfile.ToASCII(host)
	if err != nil {
		return "", false, fmt.Sprintf("invalid host name: %v", err)
	}
	ascii = strings.TrimSuffix(ascii, ".")
	if reason := checkLDH(ascii); reason != "" {
		return "", false, reason
	}
	if endsInNumber(ascii) {
		addr, err := netip.ParseAddr(ascii)
		if err != nil || !addr.Is4() {
			return "", false, "numeric last label but not a valid IPv4 address"
		}
		if wildcard {
			return "", false, "wildcard not allowed with an IP address"
		}
		return addr.String(), false, ""
	}
	if wildcard && strings.IndexByte(ascii, '.') < 0 {
		return "", false, fmt.Sprintf("wildcard base %q is a single label and would match a whole top-level domain", ascii)
	}
	return ascii, wildcard, ""
}

// checkLDH enforces RFC 1123 host name syntax on an ASCII host: labels of 1
// to 63 letters, digits and inner hyphens, at most 253 bytes in all.
// Underscores are refused even though some browsers accept them in hosts.
func checkLDH(host string) string {
	if host == "" {
		return "missing host"
	}
	if len(host) > maxRuleLen {
		return fmt.Sprintf("host name longer than %d bytes", maxRuleLen)
	}
	for label := range strings.SplitSeq(host, ".") {
		switch {
		case label == "":
			return "empty label in host name"
		case len(label) > 63:
			return fmt.Sprintf("label %q longer than 63 bytes", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Sprintf("invalid character %q in host name", c)
			}
		}
	}
	return ""
}

// endsInNumber reports whether a browser would parse host as an IPv4 address
// (WHATWG URL "ends in a number"): the last label is decimal or 0x-hex. Such
// hosts must then be canonical dotted-decimal IPv4, which is also what
// browsers send in Origin.
func endsInNumber(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if strings.HasPrefix(last, "0x") {
		return strings.Trim(last[2:], "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// parsePort parses a decimal port of 0 to 65535 without allocating.
// Leading zeros are accepted, as in browsers.
func parsePort(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, false
		}
	}
	return n, true
}

// defaultPort is the port a browser omits for scheme, 0 if it has none we
// know of.
func defaultPort(scheme string) int {
	switch scheme {
	case "http":
		return 80
	case "https":
		return 443
	}
	return 0
}

// lowerScheme validates a URL scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+"
// / "-" / "." )) and returns it lower-cased, allocating only if it had upper
// case letters. ASCII-only on purpose: strings.ToLower or EqualFold would
// fold look-alikes such as U+212A KELVIN SIGN into "k".
func lowerScheme(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z':
		case 'A' <= c && c <= 'Z':
			upper = true
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return "", false
		}
	}
	if upper {
		s = asciiLower(s)
	}
	return s, true
}

func asciiLower(s string) string {
	b := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return string(b)
}
