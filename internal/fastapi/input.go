package fastapi

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// NUL is refused in every string a client sends: PostgreSQL text cannot hold it (the insert
// fails, which was a 500) and no name, origin or id needs it.
const nulMsg = "the text must not contain NUL (\\u0000)"

func nulError(loc []any, input any) Error { return ValueError(loc, input, nulMsg) }

// Query checks a raw query string, before kin-openapi reads it through url.Values, which drops a
// pair it cannot decode (so ?limit=5% silently became the default) and keeps every value of a
// repeated name (which the generated binder then refuses as a 400). Every pair must %-decode
// (loc ["query", NAME]), no name or value may hold NUL, and a parameter of params that takes one
// value (a query parameter whose schema is not an array) may appear once. Names params does not
// declare are otherwise ignored, as FastAPI ignores them. The common case allocates nothing.
func Query(raw string, params openapi3.Parameters) []Error {
	var out []Error
	var seen [32]bool // by index in params; longer parameter lists skip the repeat check beyond
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, nameErr := unescape(rawName)
		if nameErr != nil {
			name = rawName
		}
		loc := func() []any { return []any{"query", name} }
		// The value is decoded only to be reported: a tile token's scope (%3A) costs nothing.
		value := func() string { v, _ := unescape(rawValue); return v }
		decodes, nul := scanEscapes(rawValue)
		switch {
		case nameErr != nil || !decodes:
			out = append(out, ValueError(loc(), rawValue, "the query string could not be decoded: "+decodeReason(pair)))
			continue
		case nul || strings.IndexByte(name, 0) >= 0:
			out = append(out, nulError(loc(), value()))
			continue
		}
		for i, ref := range params {
			p := ref.Value
			if p == nil || p.In != openapi3.ParameterInQuery || p.Name != name || i >= len(seen) || multiValued(p) {
				continue
			}
			if seen[i] && !hasLoc(out, loc()) {
				out = append(out, ValueError(loc(), value(), "the parameter takes one value and was given more than once"))
			}
			seen[i] = true
		}
	}
	return out
}

// unescape is url.QueryUnescape, skipped when there is nothing to decode (the tile path's
// queries), and refusing ';': url.ParseQuery rejects it as a separator, so url.Values would drop
// the pair.
func unescape(s string) (string, error) {
	if strings.IndexByte(s, ';') >= 0 {
		return "", errSemicolon
	}
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// scanEscapes reports, without decoding, whether url.QueryUnescape accepts s (and it holds no
// ';'), and whether it decodes to a text holding NUL.
func scanEscapes(s string) (ok, nul bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ';':
			return false, false
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false, false
			}
			nul = nul || s[i+1] == '0' && s[i+2] == '0'
			i += 2
		}
	}
	return true, nul
}

type decodeError string

func (e decodeError) Error() string { return string(e) }

const errSemicolon = decodeError("invalid semicolon separator in query")

// decodeReason says what is wrong with a pair: which %-escape is invalid, or the semicolon.
func decodeReason(pair string) string {
	if strings.IndexByte(pair, ';') >= 0 {
		return "';' is not a separator (use '&')"
	}
	for i := 0; i < len(pair); i++ {
		if pair[i] != '%' {
			continue
		}
		if i+2 >= len(pair) || !isHex(pair[i+1]) || !isHex(pair[i+2]) {
			esc := pair[i:min(i+3, len(pair))]
			return "invalid %-escape " + strconv.Quote(esc)
		}
		i += 2
	}
	return "invalid %-escape"
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func multiValued(p *openapi3.Parameter) bool {
	return p.Schema != nil && p.Schema.Value != nil && p.Schema.Value.Type.Is(openapi3.TypeArray)
}

func hasLoc(errs []Error, loc []any) bool {
	return slices.ContainsFunc(errs, func(e Error) bool { return slices.Equal(e.Loc, loc) })
}

// Path checks the route's (decoded) path parameters for NUL, in name order.
func Path(params map[string]string) []Error {
	var out []Error
	for name, v := range params {
		if strings.IndexByte(v, 0) >= 0 {
			out = append(out, nulError([]any{"path", name}, v))
		}
	}
	slices.SortFunc(out, func(a, b Error) int { return strings.Compare(a.Loc[1].(string), b.Loc[1].(string)) })
	return out
}

// NUL walks a decoded JSON value (as encoding/json decodes into any) and reports every string,
// and every object member name, that holds NUL, at its loc under base: any field, present or
// future, nested or not, is covered without naming it.
func NUL(base []any, v any) []Error {
	var out []Error
	var walk func(loc []any, v any)
	walk = func(loc []any, v any) {
		switch v := v.(type) {
		case string:
			if strings.IndexByte(v, 0) >= 0 {
				out = append(out, nulError(slices.Clone(loc), v))
			}
		case []any:
			for i, item := range v {
				walk(append(loc, i), item)
			}
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if strings.IndexByte(k, 0) >= 0 {
					out = append(out, nulError(append(slices.Clone(loc), k), k))
					continue
				}
				walk(append(loc, k), v[k])
			}
		}
	}
	walk(slices.Clone(base), v)
	return out
}

// Merge returns first followed by the entries of then at a loc first does not report (a string
// with NUL that also breaks a schema rule is reported once, for the NUL).
func Merge(first, then []Error) []Error {
	out := slices.Clone(first)
	for _, e := range then {
		if !hasLoc(first, e.Loc) {
			out = append(out, e)
		}
	}
	return out
}
