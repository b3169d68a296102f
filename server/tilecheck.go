package server

import (
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/google/uuid"

	"github.com/tilegate/tilegate/tileurl"
)

// tileCheck accepts a tile request whose parameters are valid without running kin-openapi. It
// is compiled once from getTile's parameters in the spec, and only when they are of the few
// shapes it knows (a uuid dataset_id, integer z/x/y, a plain string format, optional query
// strings with a maxLength and an optional non-negative integer, optional plain string
// headers; no body, no security); otherwise it is nil and every tile request takes the full
// validation.
//
// It answers only "valid": it accepts a subset of what the full validation (kin-openapi and
// the input checks of internal/fastapi) accepts, using the same primitive parsers
// (uuid.Parse, the uuid format's validator; strconv.ParseInt, kin-openapi's integer parser).
// Anything else — an escape, an empty or repeated parameter, a long value, a malformed number —
// falls through to the full validation, which decides and words the 422 as for any operation.
// TestTileCheckAgreesWithTheSpec proves the subset over a table of inputs.
//
// Why: kin-openapi's parameter decoding and schema visits (with findRoute's parameter map and
// the validation input) were 32 of a tile request's 55 allocations. go test ./server -run XXX
// -bench BenchmarkTileRequest -benchmem, public tile, hot-tile cache on: 55 allocs, 7.7–8.1
// µs before; 23 allocs, 6.3–6.9 µs with this check (2 shared, busy cores; 2026-11-24). perf
// had put kin-openapi at 1.6–2 µs of a tile's 27 µs of server CPU (issue #9).
type tileCheck struct {
	query   []tileQueryParam
	headers []string // canonical names of the header parameters
}

type tileQueryParam struct {
	name    string
	maxLen  int  // 0: none
	integer bool // a non-negative integer (int64)
}

// maxTileQueryParams bounds the query parameters tileCheck tracks (a bit each).
const maxTileQueryParams = 64

// compileTileCheck returns the check for route's operation, or nil when its parameters are
// not all of the shapes tileCheck knows.
func compileTileCheck(route *routers.Route) *tileCheck {
	op := route.Operation
	if op.RequestBody != nil || (route.PathItem != nil && len(route.PathItem.Parameters) > 0) {
		return nil
	}
	if required, optional := serviceTokenRule(route); required || optional {
		return nil
	}
	tc := &tileCheck{}
	path := map[string]bool{}
	for _, ref := range op.Parameters {
		p := ref.Value
		if p == nil || p.Content != nil || p.Schema == nil || p.Schema.Value == nil || p.AllowEmptyValue {
			return nil
		}
		sc := p.Schema.Value
		switch p.In {
		case openapi3.ParameterInPath:
			if !tilePathParam(p.Name, sc) || (p.Style != "" && p.Style != openapi3.SerializationSimple) {
				return nil
			}
			path[p.Name] = true
		case openapi3.ParameterInQuery:
			if p.Required || (p.Style != "" && p.Style != openapi3.SerializationForm) || len(tc.query) == maxTileQueryParams {
				return nil
			}
			q, ok := tileQueryRule(p.Name, sc)
			if !ok {
				return nil
			}
			tc.query = append(tc.query, q)
		case openapi3.ParameterInHeader:
			if p.Required || !plainString(sc) || (p.Style != "" && p.Style != openapi3.SerializationSimple) {
				return nil
			}
			tc.headers = append(tc.headers, http.CanonicalHeaderKey(p.Name))
		default:
			return nil
		}
	}
	if len(path) != 5 {
		return nil
	}
	return tc
}

// tilePathParam reports whether a path parameter is one tileCheck checks as kin-openapi would.
func tilePathParam(name string, sc *openapi3.Schema) bool {
	switch name {
	case "dataset_id":
		return sc.Type.Is(openapi3.TypeString) && sc.Format == "uuid" && unconstrained(sc)
	case "z", "x", "y":
		return sc.Type.Is(openapi3.TypeInteger) && (sc.Format == "" || sc.Format == "int64") && unconstrained(sc)
	case "format":
		return plainString(sc)
	}
	return false
}

// tileQueryRule is the rule of a query parameter tileCheck knows: a string whose one
// constraint is a maxLength, or an integer whose one constraint is a minimum of 0.
func tileQueryRule(name string, sc *openapi3.Schema) (tileQueryParam, bool) {
	rest := *sc // the schema without the one constraint allowed
	switch {
	case sc.Type.Is(openapi3.TypeInteger) && (sc.Format == "" || sc.Format == "int64") && sc.Min != nil && *sc.Min == 0:
		rest.Min = nil
		return tileQueryParam{name: name, integer: true}, unconstrained(&rest)
	case sc.Type.Is(openapi3.TypeString) && sc.Format == "" && sc.MaxLength != nil && *sc.MaxLength <= 1<<20:
		rest.MaxLength = nil
		return tileQueryParam{name: name, maxLen: int(*sc.MaxLength)}, unconstrained(&rest)
	}
	return tileQueryParam{}, false
}

// plainString: a string schema with no constraint at all.
func plainString(sc *openapi3.Schema) bool {
	return sc.Type.Is(openapi3.TypeString) && sc.Format == "" && unconstrained(sc)
}

// unconstrained reports whether sc has no constraint beyond its type and format.
func unconstrained(sc *openapi3.Schema) bool {
	return sc.Pattern == "" && len(sc.Enum) == 0 && sc.MinLength == 0 && sc.MaxLength == nil &&
		sc.Min == nil && sc.Max == nil && !sc.ExclusiveMin.IsSet() && !sc.ExclusiveMax.IsSet() &&
		sc.MultipleOf == nil && !sc.Nullable && sc.Not == nil &&
		len(sc.AllOf)+len(sc.AnyOf)+len(sc.OneOf) == 0 && sc.Const == nil
}

// accepts reports whether the tile request is valid for sure; false means "let the full
// validation decide" (it may still be valid). tile is the route's {y}.{format} segment.
func (tc *tileCheck) accepts(datasetID, z, x, tile, rawQuery string, h http.Header) bool {
	y, format, ok := tileurl.SplitName(tile)
	if !ok || !plainSegment(format) {
		return false
	}
	if _, err := uuid.Parse(datasetID); err != nil {
		return false
	}
	for _, n := range [...]string{z, x, y} {
		if !decimal(n) {
			return false
		}
	}
	for _, name := range tc.headers {
		if v, ok := h[name]; ok && (len(v) == 0 || v[0] == "") {
			return false // present but empty: kin-openapi's "empty value" rule decides
		}
	}
	return tc.queryAccepts(rawQuery)
}

// queryAccepts: every pair is name=value with a plain name, a value that decodes (no NUL, no
// ';'), and the operation's parameters given at most once, non-empty and within their rule.
// Unknown parameters are ignored, as kin-openapi and the input checks do.
func (tc *tileCheck) queryAccepts(raw string) bool {
	var seen uint64
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		name, value, ok := strings.Cut(pair, "=")
		if !ok || value == "" || !plainSegment(name) || !decodes(value) {
			return false
		}
		i := tc.queryIndex(name)
		if i < 0 {
			continue
		}
		if seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		switch q := tc.query[i]; {
		case q.integer:
			if !decimal(value) {
				return false
			}
		case q.maxLen > 0 && len(value) > q.maxLen:
			// A value decodes to at most as many characters as it has bytes; a longer raw
			// value is left to the full check, which decodes it.
			return false
		}
	}
	return true
}

func (tc *tileCheck) queryIndex(name string) int {
	for i := range tc.query {
		if tc.query[i].name == name {
			return i
		}
	}
	return -1
}

// decimal: 1 to 18 ASCII digits, which strconv.ParseInt(s, 10, 64) always accepts (a sign, or
// a longer number, is left to the full check).
func decimal(s string) bool {
	if len(s) == 0 || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// plainSegment: letters, digits, '-', '_' and '.', which need no decoding anywhere.
func plainSegment(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// decodes: url.QueryUnescape accepts s and it decodes to text without NUL, and s holds no ';'
// (which url.ParseQuery refuses).
func decodes(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ';' || c == 0:
			return false
		case c == '%':
			if i+2 >= len(s) || !isHexDigit(s[i+1]) || !isHexDigit(s[i+2]) || s[i+1] == '0' && s[i+2] == '0' {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
