package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/tileurl"
)

// tileRoute is GET /api/tiles/{dataset_id}/{z}/{x}/{y}.{format} for echo, which cannot split one
// segment into two parameters: the handler splits {y}.{format} at its last dot, as the spec's
// router (gorilla/mux) does.
const tileRoute = "/api/tiles/:dataset_id/:z/:x/:tile"

// findRoute finds the request's operation in the spec. Tiles, the hot path, take the operation
// found for the route echo matched instead of the spec router's linear scan of regular
// expressions: the template is the same, {y}.{format} split at the last dot as gorilla/mux
// does; HEAD (headTile in the spec, the same parameters and rules) takes getTile's operation.
func (s *Server) findRoute(c echo.Context) (*routers.Route, map[string]string, error) {
	if c.Path() != tileRoute {
		return s.router.FindRoute(c.Request())
	}
	// Another spelling of a tile is no route (404) before validation could word it as a bad
	// parameter (%30 is no integer to kin-openapi).
	if _, err := tileurl.Parse(c.Request().URL.EscapedPath()); errors.Is(err, tileurl.ErrSpelling) {
		return nil, nil, routers.ErrPathNotFound
	}
	y, format, ok := tileurl.SplitName(c.Param("tile"))
	if !ok || strings.HasSuffix(c.Request().URL.Path, "/") {
		return nil, nil, routers.ErrPathNotFound
	}
	return s.tileOp, map[string]string{
		"dataset_id": c.Param("dataset_id"), "z": c.Param("z"), "x": c.Param("x"),
		"y": y, "format": format,
	}, nil
}

// tileOperation is getTile's route in the spec, found once.
func tileOperation(router routers.Router) (*routers.Route, error) {
	r, err := http.NewRequest(http.MethodGet, "/api/tiles/00000000-0000-0000-0000-000000000000/0/0/0.pbf", nil)
	if err != nil {
		return nil, err
	}
	route, _, err := router.FindRoute(r)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml has no getTile operation: %w", err)
	}
	return route, nil
}

// queryRules check an operation's query parameters as kin-openapi would, without its
// per-parameter decoding machinery: compiled from the spec at start, and only when every query
// parameter is an optional plain string whose one constraint is a maxLength, or an optional
// integer whose one constraint is a minimum of 0 (the token's exp).
type queryRules []queryRule

type queryRule struct {
	name    string
	maxLen  uint64 // 0: none
	integer bool   // a non-negative integer
}

// compileQueryRules returns nil when a query parameter of op needs the generic validation.
func compileQueryRules(op *openapi3.Operation) queryRules {
	var rules queryRules
	for _, ref := range op.Parameters {
		p := ref.Value
		if p == nil || p.In != openapi3.ParameterInQuery {
			continue
		}
		if p.Required || p.Content != nil || p.Schema == nil || p.Schema.Value == nil ||
			(p.Style != "" && p.Style != openapi3.SerializationForm) || p.AllowEmptyValue {
			return nil
		}
		sc := p.Schema.Value
		if sc.Type.Is(openapi3.TypeInteger) && (sc.Format == "" || sc.Format == "int64") && sc.Min != nil && *sc.Min == 0 &&
			sc.Max == nil && !sc.ExclusiveMin.IsSet() && len(sc.Enum) == 0 && !sc.Nullable &&
			len(sc.AllOf)+len(sc.AnyOf)+len(sc.OneOf) == 0 && sc.Not == nil && sc.MultipleOf == nil {
			rules = append(rules, queryRule{name: p.Name, integer: true})
			continue
		}
		if !sc.Type.Is(openapi3.TypeString) || sc.Format != "" || sc.Pattern != "" || len(sc.Enum) > 0 ||
			sc.MinLength > 0 || sc.Nullable || len(sc.AllOf)+len(sc.AnyOf)+len(sc.OneOf) > 0 || sc.Not != nil {
			return nil
		}
		r := queryRule{name: p.Name}
		if sc.MaxLength != nil {
			r.maxLen = *sc.MaxLength
		}
		rules = append(rules, r)
	}
	return rules
}

// check returns the violations in the spec's parameter order, in the shape translate gives
// kin-openapi's. As url.Values.Get does, the first occurrence of a name counts, and a pair
// that does not unescape is ignored.
func (q queryRules) check(raw string) []fieldError {
	var out []fieldError
	for _, r := range q {
		if r.integer {
			out = append(out, r.checkInteger(raw)...)
			continue
		}
		if r.maxLen == 0 {
			continue
		}
		v, ok := tileaccess.QueryValue(raw, r.name)
		if ok && uint64(utf8.RuneCountInString(v)) > r.maxLen {
			out = append(out, fieldError{
				Loc: []any{"query", r.name}, Input: v, Type: "string_too_long",
				Msg: fmt.Sprintf("String should have at most %d %s", r.maxLen, plural(r.maxLen, "character")),
				Ctx: map[string]any{"max_length": r.maxLen},
			})
		}
	}
	return out
}

// checkInteger answers as kin-openapi does for an integer parameter with minimum 0.
func (r queryRule) checkInteger(raw string) []fieldError {
	v, ok := tileaccess.QueryValue(raw, r.name)
	if !ok {
		return nil
	}
	loc := []any{"query", r.name}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return []fieldError{{Loc: loc, Input: v, Type: "int_parsing",
			Msg: "Input should be a valid integer, unable to parse string as an integer"}}
	}
	if n < 0 {
		return []fieldError{{Loc: loc, Input: v, Type: "greater_than_equal",
			Msg: "Input should be greater than or equal to 0", Ctx: map[string]any{"ge": 0}}}
	}
	return nil
}
