package origin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeRuleValid(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"example.com", "example.com"},
		{"  example.com\t", "example.com"},
		{"Example.COM.", "example.com"},
		{"HTTP://LocalHost:3000", "http://localhost:3000"},
		{"https://example.com:443", "https://example.com"},
		{"http://example.com:80", "http://example.com"},
		{"http://example.com:443", "http://example.com:443"},
		{"https://example.com:80", "https://example.com:80"},
		{"https://example.com/", "https://example.com"},
		{"https://example.com:443/", "https://example.com"},
		{"example.com/", "example.com"},
		{"example.com:8080", "example.com:8080"},
		{"example.com:443", "example.com:443"}, // no scheme: the port is a constraint, not a default
		{"example.com:0080", "example.com:80"},
		{"bücher.de", "xn--bcher-kva.de"},
		{"BÜCHER.de", "xn--bcher-kva.de"},
		{"https://bücher.de:8443", "https://xn--bcher-kva.de:8443"},
		{"xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"faß.de", "xn--fa-hia.de"}, // non-transitional, as browsers
		{"example\u3002com", "example.com"},
		{"*.Example.com", "*.example.com"},
		{"*.bücher.de", "*.xn--bcher-kva.de"},
		{"https://*.example.com:8443", "https://*.example.com:8443"},
		{"*.co.uk", "*.co.uk"},
		{"?", "?"},
		{" ? ", "?"},
		{"localhost", "localhost"},
		{"a-b.example.com", "a-b.example.com"},
		{"r3---sn-abc.example.com", "r3---sn-abc.example.com"},
		{"127.0.0.1", "127.0.0.1"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"127.0.0.1.", "127.0.0.1"},
		{"[::1]", "[::1]"},
		{"[0:0:0:0:0:0:0:1]", "[::1]"},
		{"http://[::1]:3000", "http://[::1]:3000"},
		{"[2001:DB8::1]:8080", "[2001:db8::1]:8080"},
		{"https://[2001:db8::1]:443", "https://[2001:db8::1]"},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},
	}
	for _, tt := range tests {
		got, err := NormalizeRule(tt.in)
		if err != nil {
			t.Errorf("NormalizeRule(%q): unexpected error %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("NormalizeRule(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if again, err := NormalizeRule(got); err != nil || again != got {
			t.Errorf("NormalizeRule(%q) = %q, %v; not idempotent", got, again, err)
		}
	}
}

func TestNormalizeRuleInvalid(t *testing.T) {
	long := strings.Repeat("a.", 126) + "com" // 255 bytes
	tests := []struct {
		in     string
		reason string // substring of RuleError.Reason
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"example.com/x", "path"},
		{"https://example.com/x", "path"},
		{"example.com//", "path"},
		{"example.com\\x", "path"},
		{"example.com?x=1", "query"},
		{"example.com?", "query"},
		{"example.com/?", "path"},
		{"example.com#top", "fragment"},
		{"example.*", "wildcard"},
		{"*", "alone"},
		{"*.", "missing host"},
		{"*.com", "single label"},
		{"*.localhost", "single label"},
		{"**.example.com", "wildcard"},
		{"*.*.example.com", "wildcard"},
		{"foo.*.example.com", "wildcard"},
		{"*example.com", "wildcard"},
		{"ex*ample.com", "wildcard"},
		{"https://*", "alone"},
		{"exa mple.com", "whitespace"},
		{"example.com\u00a0x", "whitespace"},
		{"exa\x00mple.com", "control"},
		{"exa\x7fmple.com", "control"},
		{"\xff.com", "UTF-8"},
		{long, "longer than 253"},
		{"ftp://example.com", "unsupported scheme"},
		{"ws://example.com", "unsupported scheme"},
		{"javascript://example.com", "unsupported scheme"},
		{"htt\u212Ap://example.com", "unsupported scheme"},
		{"://example.com", "missing scheme"},
		{"https://", "missing host"},
		{"user@example.com", "user info"},
		{"https://user:pw@example.com", "user info"},
		{"example.com:0", "invalid port"},
		{"example.com:65536", "invalid port"},
		{"example.com:99999999999999999999", "invalid port"},
		{"example.com:", "empty port"},
		{"example.com:abc", "invalid port"},
		{"example.com:-1", "invalid port"},
		{"example.com:+80", "invalid port"},
		{":8080", "missing host"},
		{"example.com:80:80", "brackets"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{"exa_mple.com", "invalid"},
		{"-foo.example.com", "hyphen"},
		{"foo-.example.com", "hyphen"},
		{"example..com", "label"},
		{".example.com", "label"},
		{"example.com..", "label"},
		{"1.2.3", "IPv4"},
		{"999.1.1.1", "IPv4"},
		{"0x7f.0.0.1", "IPv4"},
		{"01.2.3.4", "IPv4"},
		{"example.123", "IPv4"},
		{"*.1.2.3.4", "IP address"},
		{"[::1", "unclosed"},
		{"[::1]x", "after IPv6"},
		{"::1", "brackets"},
		{"[1.2.3.4]", "IPv6"},
		{"[fe80::1%25eth0]", "zone"},
		{"[]", "IPv6"},
		{"[::1]:", "empty port"},
	}
	for _, tt := range tests {
		got, err := NormalizeRule(tt.in)
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("NormalizeRule(%q) = %q, %v; want *RuleError", tt.in, got, err)
			continue
		}
		if re.Index != -1 || re.Value != tt.in {
			t.Errorf("NormalizeRule(%q): RuleError{Index: %d, Value: %q}, want Index -1 and the input", tt.in, re.Index, re.Value)
		}
		if !strings.Contains(re.Reason, tt.reason) {
			t.Errorf("NormalizeRule(%q): reason %q, want it to mention %q", tt.in, re.Reason, tt.reason)
		}
	}
}

func TestNormalizeRules(t *testing.T) {
	got, err := NormalizeRules([]string{
		"Example.com", "https://a.com", "example.com.", "https://a.com:443", "?", "*.example.com", "?", "EXAMPLE.COM",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"example.com", "https://a.com", "?", "*.example.com"}
	if !slices.Equal(got, want) {
		t.Errorf("NormalizeRules = %q, want %q", got, want)
	}

	for _, in := range [][]string{nil, {}} {
		got, err := NormalizeRules(in)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("NormalizeRules(%#v) = %#v, %v; want empty non-nil slice", in, got, err)
		}
	}
}

func TestNormalizeRulesError(t *testing.T) {
	tests := []struct {
		in    []string
		index int
	}{
		{[]string{"bad/x"}, 0},
		{[]string{"a.com", "b.com", "c.com/x", "*.com"}, 2},
		{[]string{"a.com", "a.com", ""}, 2}, // index in the input, not after de-duplication
	}
	for _, tt := range tests {
		got, err := NormalizeRules(tt.in)
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("NormalizeRules(%q) = %q, %v; want *RuleError", tt.in, got, err)
			continue
		}
		if re.Index != tt.index || re.Value != tt.in[tt.index] {
			t.Errorf("NormalizeRules(%q): RuleError{Index: %d, Value: %q}, want Index %d", tt.in, re.Index, re.Value, tt.index)
		}
		if !strings.Contains(err.Error(), fmt.Sprint("index ", tt.index)) {
			t.Errorf("NormalizeRules(%q): error %q does not name the index", tt.in, err)
		}
	}
}

func TestNormalizeRulesLimit(t *testing.T) {
	in := make([]string, maxRules)
	for i := range in {
		in[i] = fmt.Sprintf("host%d.example.com", i)
	}
	if _, err := NormalizeRules(in); err != nil {
		t.Fatalf("%d entries: %v", maxRules, err)
	}
	_, err := NormalizeRules(append(in, "one-more.example.com"))
	if err == nil {
		t.Fatalf("%d entries: no error", maxRules+1)
	}
	var re *RuleError
	if errors.As(err, &re) {
		t.Errorf("too many entries reported as *RuleError %v; want an index-less error", err)
	}
}

func TestNormalizeUserAgent(t *testing.T) {
	valid := []struct{ in, want string }{
		{"MyApp/1.0", "MyApp/1.0"},
		{"  MyApp/1.0 (iOS)\n", "MyApp/1.0 (iOS)"},
		{strings.Repeat("x", 256), strings.Repeat("x", 256)},
		{"Käse", "Käse"},
	}
	for _, tt := range valid {
		got, err := NormalizeUserAgent(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeUserAgent(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "  \t", strings.Repeat("x", 257), "My\x00App", "My\tApp", "My\u0085App", "\xffApp"} {
		if got, err := NormalizeUserAgent(in); err == nil {
			t.Errorf("NormalizeUserAgent(%q) = %q, want error", in, got)
		}
	}
}

func TestRequestOrigin(t *testing.T) {
	tests := []struct {
		origin, referer    string
		scheme, host, port string
		ok                 bool
	}{
		{"https://example.com", "", "https", "example.com", "", true},
		{"https://example.com:443", "", "https", "example.com", "", true},
		{"http://example.com:443", "", "http", "example.com", "443", true},
		{"HTTPS://EXAMPLE.COM.", "", "https", "example.com", "", true},
		{" https://example.com\t", "", "https", "example.com", "", true},
		{"http://localhost:3000", "https://other.com/", "http", "localhost", "3000", true},
		{"", "https://example.com/map?x=1#y", "https", "example.com", "", true},
		{"", "https://example.com:8443/", "https", "example.com", "8443", true},
		{"", "https://example.com:/", "https", "example.com", "", true},
		{"", "https://example.com@evil.com/", "https", "evil.com", "", true},
		{"", "https://u:p@evil.com:8080/", "https", "evil.com", "8080", true},
		{"", "https://evil.com#@example.com", "https", "evil.com", "", true},
		{"", "https://evil.com\\@example.com", "https", "evil.com", "", true},
		{"https://example.com@evil.com", "", "https", "evil.com", "", true},
		{"https://bücher.de", "", "https", "xn--bcher-kva.de", "", true},
		{"https://xn--bcher-kva.de", "", "https", "xn--bcher-kva.de", "", true},
		{"http://[::1]:3000", "", "http", "[::1]", "3000", true},
		{"http://[0:0::1]", "", "http", "[::1]", "", true},
		{"capacitor://localhost", "", "capacitor", "localhost", "", true},
		{"https://a_b.example.com", "", "https", "a_b.example.com", "", true},
		// Unknown.
		{"", "", "", "", "", false},
		{"null", "https://example.com/", "", "", "", false},
		{"https://example.com/", "", "", "", "", false},
		{"not a url", "https://example.com/", "", "", "", false},
		{"", "about:blank", "", "", "", false},
		{"", "https:///path", "", "", "", false},
		{"", "https://example.com:0/", "", "", "", false},
		{"", "https://example.com:65536/", "", "", "", false},
		{"", "https://example.com:x/", "", "", "", false},
		{"https://*.example.com", "", "", "", "", false},
		{"https://example..com", "", "", "", "", false},
		{"https://.", "", "", "", "", false},
		{"https://[::1", "", "", "", "", false},
		{"https://[fe80::1%25eth0]", "", "", "", "", false},
		{"https://a.com https://b.com", "", "", "", "", false},
		{"1https://example.com", "", "", "", "", false},
	}
	for _, tt := range tests {
		scheme, host, port, ok := RequestOrigin(tt.origin, tt.referer)
		if scheme != tt.scheme || host != tt.host || port != tt.port || ok != tt.ok {
			t.Errorf("RequestOrigin(%q, %q) = %q, %q, %q, %v; want %q, %q, %q, %v",
				tt.origin, tt.referer, scheme, host, port, ok, tt.scheme, tt.host, tt.port, tt.ok)
		}
	}
}

func TestCheck(t *testing.T) {
	const ua = "Mozilla/5.0 (X11; Linux x86_64) MyApp/2.1"
	tests := []struct {
		name      string
		rules     []string
		userAgent string
		origin    string
		referer   string
		ua        string
		want      Reason
	}{
		// Empty rules allow everything.
		{"empty allows known", nil, "", "https://anything.example", "", ua, Allowed},
		{"empty allows unknown", nil, "", "", "", "", Allowed},
		{"empty allows null", []string{}, "", "null", "", "", Allowed},

		// Exact host: any scheme, any port.
		{"exact", []string{"example.com"}, "", "https://example.com", "", ua, Allowed},
		{"exact http port", []string{"example.com"}, "", "http://example.com:8080", "", ua, Allowed},
		{"exact other scheme", []string{"localhost"}, "", "capacitor://localhost", "", ua, Allowed},
		{"exact other host", []string{"example.com"}, "", "https://example.org", "", ua, ReasonOrigin},
		{"exact not subdomain", []string{"example.com"}, "", "https://www.example.com", "", ua, ReasonOrigin},
		{"exact host case", []string{"example.com"}, "", "https://ExAmPlE.CoM", "", ua, Allowed},
		{"exact rule case", []string{"EXAMPLE.com"}, "", "https://example.com", "", ua, Allowed},
		{"trailing dot in request", []string{"example.com"}, "", "https://example.com.", "", ua, Allowed},
		{"trailing dot in referer", []string{"example.com"}, "", "", "https://example.com./x", ua, Allowed},
		{"suffix is not host", []string{"example.com"}, "", "https://evil-example.com", "", ua, ReasonOrigin},
		{"prefix is not host", []string{"example.com"}, "", "https://example.com.evil.com", "", ua, ReasonOrigin},

		// Wildcards.
		{"wildcard sub", []string{"*.example.com"}, "", "https://a.example.com", "", ua, Allowed},
		{"wildcard deep", []string{"*.example.com"}, "", "https://a.b.c.example.com", "", ua, Allowed},
		{"wildcard apex", []string{"*.example.com"}, "", "https://example.com", "", ua, ReasonOrigin},
		{"wildcard label boundary", []string{"*.example.com"}, "", "https://evil-example.com", "", ua, ReasonOrigin},
		{"wildcard glued label", []string{"*.example.com"}, "", "https://aexample.com", "", ua, ReasonOrigin},
		{"wildcard as prefix", []string{"*.example.com"}, "", "https://example.com.evil.com", "", ua, ReasonOrigin},
		{"wildcard other tld", []string{"*.example.com"}, "", "https://a.example.org", "", ua, ReasonOrigin},
		{"wildcard star in request", []string{"*.example.com"}, "", "https://*.example.com", "", ua, ReasonUnknownOrigin},
		{"wildcard and apex", []string{"*.example.com", "example.com"}, "", "https://example.com", "", ua, Allowed},
		{"wildcard with scheme", []string{"https://*.example.com"}, "", "http://a.example.com", "", ua, ReasonOrigin},
		{"wildcard with scheme ok", []string{"https://*.example.com"}, "", "https://a.example.com", "", ua, Allowed},
		{"wildcard with port", []string{"*.example.com:8080"}, "", "http://a.example.com:8080", "", ua, Allowed},
		{"wildcard with port wrong", []string{"*.example.com:8080"}, "", "http://a.example.com", "", ua, ReasonOrigin},
		{"wildcard case", []string{"*.example.com"}, "", "https://WWW.Example.COM", "", ua, Allowed},

		// Scheme and port.
		{"scheme+port", []string{"http://localhost:3000"}, "", "http://localhost:3000", "", ua, Allowed},
		{"scheme+port wrong port", []string{"http://localhost:3000"}, "", "http://localhost:3001", "", ua, ReasonOrigin},
		{"scheme+port no port", []string{"http://localhost:3000"}, "", "http://localhost", "", ua, ReasonOrigin},
		{"scheme+port wrong scheme", []string{"http://localhost:3000"}, "", "https://localhost:3000", "", ua, ReasonOrigin},
		{"scheme only default port", []string{"https://example.com"}, "", "https://example.com", "", ua, Allowed},
		{"scheme only explicit default", []string{"https://example.com"}, "", "https://example.com:443", "", ua, Allowed},
		{"scheme only other port", []string{"https://example.com"}, "", "https://example.com:8443", "", ua, ReasonOrigin},
		{"scheme only wrong scheme", []string{"https://example.com"}, "", "http://example.com", "", ua, ReasonOrigin},
		{"scheme only http on 443", []string{"https://example.com"}, "", "http://example.com:443", "", ua, ReasonOrigin},
		{"scheme only other scheme", []string{"https://example.com"}, "", "capacitor://example.com", "", ua, ReasonOrigin},
		{"stored with default port", []string{"https://example.com:443"}, "", "https://example.com", "", ua, Allowed},
		{"host:port any scheme", []string{"example.com:8080"}, "", "https://example.com:8080", "", ua, Allowed},
		{"host:port any scheme http", []string{"example.com:8080"}, "", "http://example.com:8080", "", ua, Allowed},
		{"host:port wrong port", []string{"example.com:8080"}, "", "http://example.com", "", ua, ReasonOrigin},
		{"host:443 implicit https", []string{"example.com:443"}, "", "https://example.com", "", ua, Allowed},
		{"host:443 explicit", []string{"example.com:443"}, "", "https://example.com:443", "", ua, Allowed},
		{"host:443 http", []string{"example.com:443"}, "", "http://example.com", "", ua, ReasonOrigin},
		{"host:port unknown scheme has no port", []string{"localhost:80"}, "", "capacitor://localhost", "", ua, ReasonOrigin},
		{"two constraints same host", []string{"http://localhost:3000", "http://localhost:5173"}, "", "http://localhost:5173", "", ua, Allowed},
		{"default port equivalence host rule", []string{"example.com"}, "", "https://example.com:443", "", ua, Allowed},

		// IP literals.
		{"ipv4", []string{"127.0.0.1"}, "", "http://127.0.0.1:8080", "", ua, Allowed},
		{"ipv4 other", []string{"127.0.0.1"}, "", "http://127.0.0.2", "", ua, ReasonOrigin},
		{"ipv6", []string{"http://[::1]:3000"}, "", "http://[::1]:3000", "", ua, Allowed},
		{"ipv6 non-canonical request", []string{"[::1]"}, "", "http://[0:0:0:0:0:0:0:1]", "", ua, Allowed},
		{"ipv6 other", []string{"[::1]"}, "", "http://[::2]", "", ua, ReasonOrigin},

		// IDN.
		{"idn punycode header", []string{"bücher.de"}, "", "https://xn--bcher-kva.de", "", ua, Allowed},
		{"idn unicode header", []string{"bücher.de"}, "", "https://bücher.de", "", ua, Allowed},
		{"idn unicode upper header", []string{"xn--bcher-kva.de"}, "", "https://BÜCHER.DE", "", ua, Allowed},
		{"idn wildcard", []string{"*.bücher.de"}, "", "https://www.bücher.de", "", ua, Allowed},
		{"idn lookalike", []string{"bücher.de"}, "", "https://bucher.de", "", ua, ReasonOrigin},

		// Origin vs Referer.
		{"origin wins over referer", []string{"example.com"}, "", "https://evil.com", "https://example.com/", ua, ReasonOrigin},
		{"origin wins over referer ok", []string{"example.com"}, "", "https://example.com", "https://evil.com/", ua, Allowed},
		{"referer fallback", []string{"example.com"}, "", "", "https://example.com/map.html?z=3", ua, Allowed},
		{"referer fallback refused", []string{"example.com"}, "", "", "https://evil.com/", ua, ReasonOrigin},
		{"referer userinfo", []string{"example.com"}, "", "", "https://example.com@evil.com/", ua, ReasonOrigin},
		{"referer userinfo real host", []string{"evil.com"}, "", "", "https://example.com@evil.com/", ua, Allowed},
		{"referer port", []string{"http://localhost:3000"}, "", "", "http://localhost:3000/index.html", ua, Allowed},
		{"origin null ignores referer", []string{"example.com"}, "", "null", "https://example.com/", ua, ReasonUnknownOrigin},
		{"origin garbage ignores referer", []string{"example.com"}, "", "garbage", "https://example.com/", ua, ReasonUnknownOrigin},

		// Unknown origin.
		{"no headers", []string{"example.com"}, "", "", "", ua, ReasonUnknownOrigin},
		{"no headers with ?", []string{"example.com", "?"}, "", "", "", ua, Allowed},
		{"null with ?", []string{"example.com", "?"}, "", "null", "", ua, Allowed},
		{"unparsable referer with ?", []string{"?"}, "", "", "about:blank", ua, Allowed},
		{"only ? refuses known", []string{"?"}, "", "https://example.com", "", ua, ReasonOrigin},
		{"? does not allow listed-miss", []string{"example.com", "?"}, "", "https://evil.com", "", ua, ReasonOrigin},

		// User agent.
		{"ua substring", nil, "MyApp/2", "", "", ua, Allowed},
		{"ua exact", nil, ua, "", "", ua, Allowed},
		{"ua case-sensitive", nil, "myapp/2", "", "", ua, ReasonUserAgent},
		{"ua missing", nil, "MyApp/2", "", "", "", ReasonUserAgent},
		{"ua rule trimmed", nil, "  MyApp/2 ", "", "", ua, Allowed},
		{"ua and origin ok", []string{"example.com"}, "MyApp", "https://example.com", "", ua, Allowed},
		{"origin checked first", []string{"example.com"}, "Other", "https://evil.com", "", ua, ReasonOrigin},
		{"unknown checked first", []string{"example.com"}, "Other", "", "", ua, ReasonUnknownOrigin},
		{"ua after origin ok", []string{"example.com"}, "Other", "https://example.com", "", ua, ReasonUserAgent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.rules, tt.userAgent)
			if err != nil {
				t.Fatalf("Compile(%q, %q): %v", tt.rules, tt.userAgent, err)
			}
			if got := p.Check(tt.origin, tt.referer, tt.ua); got != tt.want {
				t.Errorf("Check(%q, %q, %q) with rules %q, ua %q = %q, want %q",
					tt.origin, tt.referer, tt.ua, tt.rules, tt.userAgent, got, tt.want)
			}
		})
	}
}

func TestZeroPolicyAllows(t *testing.T) {
	var p Policy
	if got := p.Check("", "", ""); got != Allowed {
		t.Errorf("zero Policy: Check = %q, want allowed", got)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		rules []string
		ua    string
		index int // -1: not a *RuleError
	}{
		{[]string{"example.com", "example.com/x"}, "", 1},
		{[]string{"", "example.com"}, "", 0},
		{[]string{"*"}, "", 0},
		{[]string{"\x00"}, "", 0},
		{[]string{"example.com"}, "bad\x00ua", -1},
		{nil, strings.Repeat("x", 300), -1},
	}
	for _, tt := range tests {
		p, err := Compile(tt.rules, tt.ua)
		if err == nil || p != nil {
			t.Errorf("Compile(%q, %q) = %v, %v; want error", tt.rules, tt.ua, p, err)
			continue
		}
		var re *RuleError
		if got := errors.As(err, &re); got != (tt.index >= 0) || (got && re.Index != tt.index) {
			t.Errorf("Compile(%q, %q): error %v, want RuleError at %d", tt.rules, tt.ua, err, tt.index)
		}
	}
}

func TestCheckAllocs(t *testing.T) {
	p := benchPolicy(t)
	allocs := testing.AllocsPerRun(100, func() {
		if p.Check("https://tiles.app.example.com", "https://tiles.app.example.com/map", "Mozilla/5.0 MyApp/2.1") != Allowed {
			t.Fatal("refused")
		}
		if p.Check("", "http://localhost:3000/index.html", "Mozilla/5.0 MyApp/2.1") != Allowed {
			t.Fatal("refused")
		}
		if p.Check("https://evil.com", "", "Mozilla/5.0 MyApp/2.1") != ReasonOrigin {
			t.Fatal("allowed")
		}
	})
	if allocs != 0 {
		t.Errorf("Check allocates %v times per run, want 0", allocs)
	}
}

func benchPolicy(tb testing.TB) *Policy {
	tb.Helper()
	rules, err := NormalizeRules([]string{
		"example.com",
		"*.app.example.com",
		"http://localhost:3000",
		"https://maps.example.org",
		"?",
	})
	if err != nil {
		tb.Fatal(err)
	}
	p, err := Compile(rules, "MyApp/")
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func BenchmarkCheck(b *testing.B) {
	p := benchPolicy(b)
	cases := []struct{ name, origin, referer string }{
		{"exact", "https://maps.example.org", ""},
		{"wildcard", "https://a.b.app.example.com", ""},
		{"referer", "", "http://localhost:3000/index.html?x=1"},
		{"refused", "https://evil.com", ""},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Check(c.origin, c.referer, "Mozilla/5.0 (X11; Linux x86_64) MyApp/2.1")
			}
		})
	}
}

func FuzzNormalizeRule(f *testing.F) {
	for _, s := range []string{
		"example.com", "Example.COM.", "HTTP://LocalHost:3000", "https://example.com:443",
		"bücher.de", "*.Example.com", "?", "[::1]:8080", "127.0.0.1", "example.com/x",
		"*.com", "https://user@example.com", "xn--bcher-kva.de", "faß.de", "example\u3002com",
		"http://[::ffff:1.2.3.4]", "example.com:0080", "*.xn--a.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeRule(in)
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("NormalizeRule(%q): error %T, want *RuleError", in, err)
			}
			return
		}
		again, err := NormalizeRule(out)
		if err != nil {
			t.Fatalf("NormalizeRule(%q) = %q, which is refused: %v", in, out, err)
		}
		if again != out {
			t.Fatalf("NormalizeRule(%q) = %q, NormalizeRule(%q) = %q; not idempotent", in, out, out, again)
		}
		if len(out) > maxRuleLen {
			t.Fatalf("NormalizeRule(%q) = %q, longer than %d", in, out, maxRuleLen)
		}
		if _, err := Compile([]string{out}, ""); err != nil {
			t.Fatalf("Compile(%q): %v", out, err)
		}
	})
}

// FuzzCheck makes sure arbitrary headers never panic and that a request
// origin, once extracted, is stable under re-parsing.
func FuzzCheck(f *testing.F) {
	f.Add("https://a.example.com", "", "MyApp")
	f.Add("", "https://example.com@evil.com/x", "")
	f.Add("null", "http://[::1]:3000/", "x")
	f.Add("https://bücher.de.", "", "")
	p, err := Compile([]string{"example.com", "*.example.com", "http://localhost:3000", "[::1]", "?"}, "MyApp")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, origin, referer, ua string) {
		p.Check(origin, referer, ua)
		scheme, host, port, ok := RequestOrigin(origin, referer)
		if !ok {
			return
		}
		o := scheme + "://" + host
		if port != "" {
			o += ":" + port
		}
		s2, h2, p2, ok := RequestOrigin(o, "")
		if !ok || s2 != scheme || h2 != host || p2 != port {
			t.Fatalf("RequestOrigin(%q, %q) = %q; re-parsed as %q, %q, %q, %v", origin, referer, o, s2, h2, p2, ok)
		}
	})
}
