package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"
)

// TestTileCheckAgreesWithTheSpec: whatever the compiled tile check accepts, kin-openapi (with
// the input checks every operation gets) accepts too, and so does the server's full
// validation; the usual requests take the compiled check. fast is what the compiled check
// answers, valid what kin-openapi does.
func TestTileCheckAgreesWithTheSpec(t *testing.T) {
	spec, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatal(err)
	}
	op, err := tileOperation(router)
	if err != nil {
		t.Fatal(err)
	}
	tc := compileTileCheck(op)
	if tc == nil {
		t.Fatal("getTile's parameters no longer compile: every tile request takes kin-openapi")
	}
	s := &Server{router: router, tileOp: op, tileQuery: compileQueryRules(op.Operation)}

	const id = "0b5e3c1e-8f1a-4d7e-9c2b-3f4a5b6c7d8e"
	long := func(n int) string { return strings.Repeat("k", n) }
	for _, tt := range []struct {
		name        string
		id, z, x, y string // y is the {y}.{format} segment
		query       string
		inm         []string // If-None-Match values; nil: none
		fast, valid bool
	}{
		{"public", id, "1", "0", "1.pbf", "", nil, true, true},
		{"key", id, "14", "8190", "5445.pbf", "key=AbCdEfGhIjKlMnOpQrStUvWx", nil, true, true},
		{"token", id, "3", "4", "2.png", "sig=q1w2e3r4t5y6u7i8o9p0&exp=1767225600&scope=ab%3Acd%3A3", nil, true, true},
		{"token+key", id, "0", "0", "0.pbf", "key=abc&sig=s&exp=1&scope=x", nil, true, true},
		{"unknown parameter", id, "0", "0", "0.pbf", "v=2&foo=bar", nil, true, true},
		{"exp 0", id, "0", "0", "0.pbf", "exp=0", nil, true, true},
		{"exp leading zeros", id, "0", "0", "0.pbf", "exp=007", nil, true, true},
		{"exp 18 digits", id, "0", "0", "0.pbf", "exp=999999999999999999", nil, true, true},
		{"key at maxLength", id, "0", "0", "0.pbf", "key=" + long(256), nil, true, true},
		{"plus in a value", id, "0", "0", "0.pbf", "scope=a+b", nil, true, true},
		{"high escape", id, "0", "0", "0.pbf", "key=%FF", nil, true, true},
		{"empty pair", id, "0", "0", "0.pbf", "key=a&&sig=b&", nil, true, true},
		{"uppercase uuid", strings.ToUpper(id), "0", "0", "0.pbf", "", nil, true, true},
		{"uuid without hyphens", strings.ReplaceAll(id, "-", ""), "0", "0", "0.pbf", "", nil, true, true},
		{"braced uuid", "{" + id + "}", "0", "0", "0.pbf", "", nil, true, true},
		{"urn uuid", "urn:uuid:" + id, "0", "0", "0.pbf", "", nil, true, true},
		{"z leading zeros", id, "007", "0", "0.pbf", "", nil, true, true},
		{"If-None-Match", id, "0", "0", "0.pbf", "", []string{`"abc-0-0-0"`}, true, true},
		{"unknown format", id, "0", "0", "0.tiff", "", nil, true, true},

		// Left to the full validation, which accepts them.
		{"negative z", id, "-1", "0", "0.pbf", "", nil, false, true},
		{"signed x", id, "0", "+1", "0.pbf", "", nil, false, true},
		{"19 digits", id, "0", "0", "1234567890123456789.pbf", "", nil, false, true},
		{"escaped format", id, "0", "0", "0.pb%66", "", nil, false, true},
		{"escaped name", id, "0", "0", "0.pbf", "k%65y=abc", nil, false, true},
		{"long escaped key", id, "0", "0", "0.pbf", "key=" + strings.Repeat("%41", 100), nil, false, true},
		{"pair without =", id, "0", "0", "0.pbf", "key", nil, false, true},
		{"unknown parameter without =", id, "0", "0", "0.pbf", "debug", nil, false, true},
		{"unknown parameter empty", id, "0", "0", "0.pbf", "foo=", nil, false, true},
		{"empty key", id, "0", "0", "0.pbf", "key=", nil, false, true},
		{"empty If-None-Match", id, "0", "0", "0.pbf", "", []string{""}, false, true},

		// Invalid: refused by both.
		{"bad uuid", "not-a-uuid", "0", "0", "0.pbf", "", nil, false, false},
		{"short uuid", id[:35], "0", "0", "0.pbf", "", nil, false, false},
		{"z not a number", id, "a", "0", "0.pbf", "", nil, false, false},
		{"z fractional", id, "1.5", "0", "0.pbf", "", nil, false, false},
		{"x too big", id, "0", "99999999999999999999", "0.pbf", "", nil, false, false},
		{"y not a number", id, "0", "0", "y.pbf", "", nil, false, false},
		{"dotted format", id, "0", "0", "0.tar.gz", "", nil, false, false},
		{"key over maxLength", id, "0", "0", "0.pbf", "key=" + long(257), nil, false, false},
		{"key twice", id, "0", "0", "0.pbf", "key=a&key=b", nil, false, false},
		{"exp twice", id, "0", "0", "0.pbf", "exp=1&exp=2", nil, false, false},
		{"exp negative", id, "0", "0", "0.pbf", "exp=-1", nil, false, false},
		{"exp not a number", id, "0", "0", "0.pbf", "exp=soon", nil, false, false},
		{"exp exponent", id, "0", "0", "0.pbf", "exp=1e3", nil, false, false},
		{"exp huge", id, "0", "0", "0.pbf", "exp=99999999999999999999", nil, false, false},
		{"exp plus", id, "0", "0", "0.pbf", "exp=+5", nil, false, false},
		{"key NUL", id, "0", "0", "0.pbf", "key=a%00b", nil, false, false},
		{"unknown NUL", id, "0", "0", "0.pbf", "foo=%00", nil, false, false},
		{"bad escape", id, "0", "0", "0.pbf", "key=%zz", nil, false, false},
		{"truncated escape", id, "0", "0", "0.pbf", "key=ab%4", nil, false, false},
		{"semicolon", id, "0", "0", "0.pbf", "key=a;b", nil, false, false},
		{"empty exp", id, "0", "0", "0.pbf", "exp=", nil, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/tiles/x/0/0/0.pbf", nil)
			r.URL.RawQuery = tt.query
			if tt.inm != nil {
				r.Header["If-None-Match"] = tt.inm
			}
			fast := tc.accepts(tt.id, tt.z, tt.x, tt.y, tt.query, r.Header)
			valid := kinValid(t, s, r, tt.id, tt.z, tt.x, tt.y)
			full := serverValid(s, r, tt.id, tt.z, tt.x, tt.y)
			if fast && (!valid || !full) {
				t.Fatalf("the compiled check accepts what kin-openapi (%v) or the full validation (%v) refuses", valid, full)
			}
			if fast != tt.fast || valid != tt.valid || full != valid {
				t.Errorf("compiled %v, kin-openapi %v, full validation %v; want %v, %v, %v", fast, valid, full, tt.fast, tt.valid, tt.valid)
			}
		})
	}
}

// kinValid is kin-openapi's verdict on the tile request, query parameters included, with the
// input checks every operation gets (inputErrors).
func kinValid(t *testing.T, s *Server, r *http.Request, id, z, x, tile string) bool {
	t.Helper()
	dot := strings.LastIndexByte(tile, '.')
	if dot <= 0 || dot == len(tile)-1 {
		return false // no route: 404
	}
	params := map[string]string{"dataset_id": id, "z": z, "x": x, "y": tile[:dot], "format": tile[dot+1:]}
	err := openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: s.tileOp,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
	return err == nil && inputErrors(s.tileOp, r.URL.RawQuery, params, nil) == nil
}

// serverValid is the contract's own validation (findRoute and validate, the compiled query
// rules included) without the compiled tile check.
func serverValid(s *Server, r *http.Request, id, z, x, tile string) bool {
	c := echo.New().NewContext(r, httptest.NewRecorder())
	c.SetPath(tileRoute)
	c.SetParamNames("dataset_id", "z", "x", "tile")
	c.SetParamValues(id, z, x, tile)
	route, params, err := s.findRoute(c)
	if err != nil {
		return false
	}
	return s.validate(r.Context(), c, route, params) == nil
}
