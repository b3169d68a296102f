package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/fastapi"
	"github.com/tilegate/tilegate/tilehttp"
)

// roleExtension names the least role an operation needs, declared next to it in openapi.yaml.
const roleExtension = "x-tilegate-role"

var roleRank = map[string]int{"viewer": 1, "editor": 2, "admin": 3}

// contract runs before every API handler: it finds the operation in the spec (404/405 when there
// is none), authenticates the caller and checks the operation's role (401/403), then validates
// parameters and body against the spec (422), in that order, so an anonymous caller learns nothing
// about the schema and a handler only ever sees valid input.
func (s *Server) contract(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		// Tiles, the hot path: a request the compiled check accepts is valid as the spec says
		// (tilecheck.go), and getTile needs no authentication; any other goes the full way.
		if s.tileCheck != nil && c.Path() == tileRoute && !strings.HasSuffix(r.URL.Path, "/") &&
			s.tileCheck.accepts(c.Param("dataset_id"), c.Param("z"), c.Param("x"), c.Param("tile"), r.URL.RawQuery, r.Header) {
			return next(c)
		}
		route, pathParams, err := s.findRoute(c)
		if err != nil {
			if errors.Is(err, routers.ErrMethodNotAllowed) {
				return s.methodNotAllowed(c)
			}
			if isDocsPath(r.URL.Path) { // Swagger UI is echo's GET route, outside the contract
				return s.methodNotAllowed(c)
			}
			if to, ok := s.otherSpelling(r); ok {
				return redirectSpelling(c, to)
			}
			if c.Path() == tileRoute {
				return tilehttp.WriteError(c, http.StatusNotFound, "Not Found") // as every tile error: never cached
			}
			return detail(c, http.StatusNotFound, "Not Found")
		}
		ctx := r.Context()
		required, optional := serviceTokenRule(route)
		if required || optional && r.Header.Get("Authorization") != "" {
			p, err := s.creds.authenticate(ctx, r.Header.Get("Authorization"))
			if err != nil {
				return s.authFailure(c, err)
			}
			if need, ok := route.Operation.Extensions[roleExtension].(string); ok && roleRank[p.Role] < roleRank[need] {
				return detail(c, http.StatusForbidden, "This operation needs the "+need+" role or higher")
			}
			ctx = withPrincipal(ctx, p)
		}
		// validate answers through errors only, so nothing past a failure can write or run.
		if err := s.validate(ctx, c, route, pathParams); err != nil {
			return err
		}
		c.SetRequest(r.WithContext(ctx))
		return next(c)
	}
}

// serviceTokenRule reads the operation's security: a service token is required, optional (an
// alternative to anonymous access, as on TileJSON), or not used.
func serviceTokenRule(route *routers.Route) (required, optional bool) {
	reqs := route.Spec.Security
	if route.Operation.Security != nil {
		reqs = *route.Operation.Security
	}
	anonymous, token := false, false
	for _, req := range reqs {
		if len(req) == 0 {
			anonymous = true
		}
		if _, ok := req["ServiceToken"]; ok {
			token = true
		}
	}
	return token && !anonymous, token && anonymous
}

// streamed reports whether the operation takes a raw byte stream (an MBTiles upload), which
// the validator must not read: the handler streams it to disk.
func streamed(route *routers.Route) bool {
	rb := route.Operation.RequestBody
	return rb != nil && rb.Value != nil && rb.Value.Content.Get("application/octet-stream") != nil
}

func (s *Server) validate(ctx context.Context, c echo.Context, route *routers.Route, pathParams map[string]string) error {
	r := c.Request()
	var body []byte
	stream := streamed(route)
	if route.Operation.RequestBody != nil && !stream {
		if r.ContentLength > s.cfg.BodyLimit {
			return echo.ErrStatusRequestEntityTooLarge
		}
		var err error
		if body, err = readBody(r, s.cfg.BodyLimit); err != nil {
			return invalid([]any{"body"}, nil, "the request body could not be read")
		}
		if int64(len(body)) > s.cfg.BodyLimit {
			return echo.ErrStatusRequestEntityTooLarge
		}
	}
	// kin-openapi's security check reads the whole request body into memory, unbounded, before
	// it looks at anything else (even with a no-op AuthenticationFunc). Let it see a body only
	// where the operation takes one that was read above within BodyLimit: never an upload
	// stream, nor a body sent to an operation without one (a GET with gigabytes attached).
	vreq := r
	if (route.Operation.RequestBody == nil || stream) && r.Body != nil && r.Body != http.NoBody {
		cp := *r
		cp.Body = http.NoBody
		vreq = &cp
	}
	// Tiles are the hot path: their query parameters (plain strings with a maxLength) are checked
	// by rules compiled from the spec (tileQuery), the rest by kin-openapi as everywhere.
	fastQuery := route == s.tileOp && s.tileQuery != nil
	input := &openapi3filter.RequestValidationInput{
		Request:    vreq,
		PathParams: pathParams,
		Route:      route,
		Options: &openapi3filter.Options{
			MultiError:                true,
			KeepValidatedValue:        true,
			ExcludeRequestBody:        stream,
			ExcludeRequestQueryParams: fastQuery,
			// Authentication is the contract middleware's own step, done before validation.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
	}
	// What the schema cannot say, for every operation alike: the query string decodes and gives
	// a single-valued parameter once, and no string anywhere holds NUL.
	inputFields := inputErrors(route, r.URL.RawQuery, pathParams, body)
	if fastQuery {
		inputFields = fastapi.Merge(inputFields, s.tileQuery.check(r.URL.RawQuery))
	}
	err := openapi3filter.ValidateRequest(ctx, input)
	if err == nil && inputFields == nil {
		return nil
	}
	var fields []fieldError
	if err != nil {
		if fields = translate(err, r, pathParams, body); len(fields) == 0 {
			fields = []fieldError{{Loc: []any{}, Msg: err.Error(), Type: "value_error"}}
		}
	}
	return &validationFailure{fields: fastapi.Merge(inputFields, fields)}
}

// nulEscape is how NUL appears in a JSON text (a raw NUL byte is not valid JSON): bodies without
// it, nearly all, are not decoded a second time.
var nulEscape = []byte(`\u0000`)

// inputErrors runs fastapi's generic input checks on a request: the raw query against the
// operation's parameters, the path parameters, and a JSON body that may hold NUL.
func inputErrors(route *routers.Route, rawQuery string, pathParams map[string]string, body []byte) []fieldError {
	params := route.Operation.Parameters
	if route.PathItem != nil && len(route.PathItem.Parameters) > 0 {
		params = append(slices.Clone(params), route.PathItem.Parameters...)
	}
	var out []fieldError
	if rawQuery != "" {
		out = fastapi.Query(rawQuery, params)
	}
	out = append(out, fastapi.Path(pathParams)...)
	if bytes.Contains(body, nulEscape) {
		var v any
		if json.Unmarshal(body, &v) == nil {
			out = append(out, fastapi.NUL([]any{"body"}, v)...)
		}
	}
	return out
}

// invalid answers 422 for a rule the spec cannot express (a bad cursor, an origin entry).
func invalid(loc []any, input any, msg string) error {
	return &validationFailure{fields: []fieldError{fastapi.ValueError(loc, input, msg)}}
}

type validationFailure struct{ fields []fieldError }

func (v *validationFailure) Error() string { return "validation failed: " + v.fields[0].Msg }
