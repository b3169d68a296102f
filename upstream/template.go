// Package upstream fetches tiles from another tile server for datasets whose source is an XYZ
// URL template: one shared HTTP client with deadlines and connection reuse, a bound on requests
// in flight per upstream host, coalescing of concurrent requests for one tile, a byte-bounded
// cache that honours the upstream's Cache-Control and ETag, and a dial-time guard against
// server-side request forgery. It has no HTTP handlers and no SQL: the tile path calls it after
// the access decision.
package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Limits on what a dataset may store as its upstream.
const (
	MaxURLLength    = 2048
	MaxHeaders      = 16
	MaxHeaderName   = 128
	MaxHeaderValue  = 4096
	placeholderZ    = "{z}"
	placeholderX    = "{x}"
	placeholderY    = "{y}"
	maskedValueText = "***"
)

// InvalidError says which part of an upstream setting is refused and why; the API answers it as
// a 422 naming that field.
type InvalidError struct {
	Field  string // "url" or "headers" (with the header name in Reason)
	Reason string
}

func (e *InvalidError) Error() string { return "upstream " + e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Template is a validated XYZ URL template such as https://tiles.internal/roads/{z}/{x}/{y}.pbf.
type Template struct {
	raw string
}

// ParseTemplate checks an upstream URL template: http or https, a host, {z}, {x} and {y} each
// present, no user:password part (credentials belong in headers, which are kept secret), no
// fragment, no control characters.
func ParseTemplate(raw string) (Template, error) {
	if err := checkURLText("url", raw); err != nil {
		return Template{}, err
	}
	for _, p := range []string{placeholderZ, placeholderX, placeholderY} {
		if n := strings.Count(raw, p); n != 1 {
			return Template{}, invalid("url", "must contain %s exactly once", p)
		}
	}
	// Parse with sample coordinates so the placeholders' braces don't upset the URL parser.
	if err := checkURL("url", expand(raw, 0, 0, 0)); err != nil {
		return Template{}, err
	}
	return Template{raw: raw}, nil
}

// ParseTileJSONURL checks the URL of an upstream's own TileJSON with the template's rules
// (http or https, a host, no credentials, no fragment), without placeholders.
func ParseTileJSONURL(raw string) (string, error) {
	if err := checkURLText("tilejson", raw); err != nil {
		return "", err
	}
	if err := checkURL("tilejson", raw); err != nil {
		return "", err
	}
	return raw, nil
}

func checkURLText(field, raw string) error {
	if raw == "" {
		return invalid(field, "must not be empty")
	}
	if len(raw) > MaxURLLength {
		return invalid(field, "longer than %d characters", MaxURLLength)
	}
	for _, r := range raw {
		if r < 0x21 || r == 0x7f {
			return invalid(field, "contains a space or control character")
		}
	}
	return nil
}

func checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalid(field, "not a URL")
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return invalid(field, "scheme must be http or https")
	}
	if u.Host == "" || u.Hostname() == "" {
		return invalid(field, "must name a host")
	}
	if u.User != nil {
		return invalid(field, "must not carry credentials; send them as a header")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return invalid(field, "must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return invalid(field, "port out of range")
		}
	}
	return nil
}

// String is the template as stored.
func (t Template) String() string { return t.raw }

// URL is the template filled with one tile's coordinates.
func (t Template) URL(z, x, y int) string { return expand(t.raw, z, x, y) }

func expand(raw string, z, x, y int) string {
	r := strings.NewReplacer(placeholderZ, strconv.Itoa(z), placeholderX, strconv.Itoa(x), placeholderY, strconv.Itoa(y))
	return r.Replace(raw)
}

// Source is a dataset's upstream as the tile path uses it.
type Source struct {
	Template Template
	Headers  map[string]string // opened (plain) values: never log them
	// NotFound: an upstream 404 or 204 is answered 404 (else 204, an empty tile).
	NotFound bool
	// Key identifies this setting of this dataset, for the cache (Request.Source).
	Key string
}

// hopHeaders may not be set by a dataset: they belong to the connection or to tilegate.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authorization": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Host": true,
	"Content-Length": true, "If-None-Match": true, "If-Modified-Since": true, "Accept-Encoding": true,
}

// ValidateHeaders checks the headers a dataset sends upstream: valid HTTP field names, values
// without CR, LF or NUL, no hop-by-hop or framing headers, and bounded sizes.
func ValidateHeaders(h map[string]string) error {
	if len(h) > MaxHeaders {
		return invalid("headers", "at most %d headers", MaxHeaders)
	}
	for name, value := range h {
		if name == "" || len(name) > MaxHeaderName || !validFieldName(name) {
			return invalid("headers", "%q is not a valid header name", truncate(name, 40))
		}
		if hopHeaders[http.CanonicalHeaderKey(name)] {
			return invalid("headers", "%s may not be set", http.CanonicalHeaderKey(name))
		}
		if len(value) > MaxHeaderValue {
			return invalid("headers", "the value of %s is longer than %d bytes", http.CanonicalHeaderKey(name), MaxHeaderValue)
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c == '\r' || c == '\n' || c == 0 {
				return invalid("headers", "the value of %s contains a line break or NUL", http.CanonicalHeaderKey(name))
			}
		}
	}
	return nil
}

// Masked is what answers show of a dataset's upstream headers: the names, never the values.
func Masked(h map[string]string) map[string]string {
	if h == nil {
		return nil
	}
	out := make(map[string]string, len(h))
	for name := range h {
		out[name] = maskedValueText
	}
	return out
}

// validFieldName reports whether s is an RFC 9110 token.
func validFieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// IsInvalid reports whether err is an upstream setting refused at write time.
func IsInvalid(err error) (*InvalidError, bool) {
	var ie *InvalidError
	ok := errors.As(err, &ie)
	return ie, ok
}
