package fastapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/tilegate/tilegate/internal/fastapi"
)

func ptr[T any](v T) *T { return &v }

func types(t ...string) *openapi3.Types { v := openapi3.Types(t); return &v }

// wantJSON compares entries by their JSON, which is what a client sees.
func wantJSON(t *testing.T, got []fastapi.Error, want string) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("got  %s\nwant %s", gb, wb)
	}
}

// kin-openapi's error values, built by hand, and the exact FastAPI entries they become.
func TestFromValidationErrorValues(t *testing.T) {
	intParam := &openapi3.Parameter{In: "query", Name: "limit", Schema: openapi3.NewSchemaRef("", &openapi3.Schema{Type: types("integer")})}
	strParam := &openapi3.Parameter{In: "query", Name: "cursor", Schema: openapi3.NewSchemaRef("", &openapi3.Schema{Type: types("string")})}
	pathParam := &openapi3.Parameter{In: "path", Name: "key_id", Required: true, Schema: openapi3.NewSchemaRef("", &openapi3.Schema{Type: types("string"), Format: "uuid"})}
	jsonBody := &openapi3.RequestBody{Content: openapi3.NewContentWithJSONSchema(&openapi3.Schema{Type: types("object")})}
	obj := &openapi3.Schema{Type: types("object"), Properties: openapi3.Schemas{"name": openapi3.NewSchemaRef("", openapi3.NewStringSchema())}}
	body := func(err error) error { return &openapi3filter.RequestError{RequestBody: jsonBody, Err: err} }
	se := func(field string, s *openapi3.Schema, v any) *openapi3.SchemaError {
		return &openapi3.SchemaError{SchemaField: field, Schema: s, Value: v, Reason: "kin-openapi's own words"}
	}
	cases := []struct {
		name  string
		err   error
		query string // of the request validated
		ct    string // its Content-Type
		body  string
		want  string
	}{
		{"required parameter", &openapi3filter.RequestError{Parameter: pathParam, Err: openapi3filter.ErrInvalidRequired}, "", "", "",
			`[{"loc":["path","key_id"],"msg":"Field required","type":"missing","input":null}]`},
		{"integer parameter that does not parse", &openapi3filter.RequestError{Parameter: intParam, Err: &openapi3filter.ParseError{Kind: openapi3filter.KindInvalidFormat, Value: "ten"}}, "limit=ten", "", "",
			`[{"loc":["query","limit"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing","input":"ten"}]`},
		{"empty integer parameter", &openapi3filter.RequestError{Parameter: intParam, Err: openapi3filter.ErrInvalidEmptyValue}, "limit=", "", "",
			`[{"loc":["query","limit"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing","input":""}]`},
		{"string parameter that does not parse", &openapi3filter.RequestError{Parameter: strParam, Err: &openapi3filter.ParseError{Kind: openapi3filter.KindOther}}, "cursor=x", "", "",
			`[{"loc":["query","cursor"],"msg":"Value error, could not parse the value","type":"value_error","input":"x"}]`},
		{"parameter below minimum", &openapi3filter.RequestError{Parameter: intParam, Err: se("minimum", &openapi3.Schema{Min: ptr(10.0)}, int64(5))}, "limit=5", "", "",
			`[{"loc":["query","limit"],"msg":"Input should be greater than or equal to 10","type":"greater_than_equal","input":"5","ctx":{"ge":10}}]`},
		{"bad uuid in the path", &openapi3filter.RequestError{Parameter: pathParam, Err: se("format", &openapi3.Schema{Format: "uuid"}, "xyz")}, "", "", "",
			`[{"loc":["path","key_id"],"msg":"Input should be a valid UUID, invalid character: expected an optional prefix of ` + "`urn:uuid:`" + ` followed by [0-9a-fA-F-], found ` + "`x`" + ` at 1","type":"uuid_parsing","input":"xyz","ctx":{"error":"invalid character: expected an optional prefix of ` + "`urn:uuid:`" + ` followed by [0-9a-fA-F-], found ` + "`x`" + ` at 1"}}]`},
		{"body required", body(openapi3filter.ErrInvalidRequired), "", "application/json", "",
			`[{"loc":["body"],"msg":"Field required","type":"missing","input":null}]`},
		{"body of a media type the operation does not take", body(nil), "", "text/plain", "hello",
			`[{"loc":["header","Content-Type"],"msg":"Value error, the request body must be sent as application/json","type":"value_error","input":null}]`},
		{"body media type without a decoder", body(&openapi3filter.ParseError{Kind: openapi3filter.KindUnsupportedFormat}), "", "application/json", "{}",
			`[{"loc":["header","Content-Type"],"msg":"Value error, the request body must be sent as application/json","type":"value_error","input":null}]`},
		{"body that is not JSON", body(&openapi3filter.ParseError{Kind: openapi3filter.KindInvalidFormat}), "", "application/json", `{"a":1`,
			`[{"loc":["body",6],"msg":"JSON decode error","type":"json_invalid","input":{},"ctx":{"error":"unexpected end of JSON input"}}]`},
		{"missing member", body(se("required", obj, map[string]any{})), "", "application/json", `{}`,
			`[{"loc":["body"],"msg":"Field required","type":"missing","input":{}}]`},
		{"extra member", body(&openapi3.SchemaError{SchemaField: "properties", Schema: obj, Value: map[string]any{"name": "a", "colour": "red"}, Reason: `property "colour" is unsupported`}), "", "application/json", `{"name":"a","colour":"red"}`,
			`[{"loc":["body","colour"],"msg":"Extra inputs are not permitted","type":"extra_forbidden","input":"red"}]`},
		{"extra member, reworded by a kin-openapi upgrade", body(&openapi3.SchemaError{SchemaField: "additionalProperties", Schema: obj, Value: map[string]any{"name": "a", "colour": "red"}, Reason: "colour: not allowed"}), "", "application/json", `{"name":"a","colour":"red"}`,
			`[{"loc":["body","colour"],"msg":"Extra inputs are not permitted","type":"extra_forbidden","input":"red"}]`},
		{"wrong type string", body(se("type", openapi3.NewStringSchema(), 3.0)), "", "application/json", `3`,
			`[{"loc":["body"],"msg":"Input should be a valid string","type":"string_type","input":3}]`},
		{"integer with a fraction", body(se("type", openapi3.NewIntegerSchema(), 1.5)), "", "application/json", `1.5`,
			`[{"loc":["body"],"msg":"Input should be a valid integer, got a number with a fractional part","type":"int_from_float","input":1.5}]`},
		{"wrong type integer", body(se("type", openapi3.NewIntegerSchema(), "x")), "", "application/json", `"x"`,
			`[{"loc":["body"],"msg":"Input should be a valid integer","type":"int_type","input":"x"}]`},
		{"wrong type number", body(se("type", openapi3.NewFloat64Schema(), "x")), "", "application/json", `"x"`,
			`[{"loc":["body"],"msg":"Input should be a valid number","type":"float_type","input":"x"}]`},
		{"wrong type boolean", body(se("type", openapi3.NewBoolSchema(), "x")), "", "application/json", `"x"`,
			`[{"loc":["body"],"msg":"Input should be a valid boolean","type":"bool_type","input":"x"}]`},
		{"wrong type array", body(se("type", openapi3.NewArraySchema(), "x")), "", "application/json", `"x"`,
			`[{"loc":["body"],"msg":"Input should be a valid list","type":"list_type","input":"x"}]`},
		{"wrong type object", body(se("nullable", openapi3.NewObjectSchema(), nil)), "", "application/json", `null`,
			`[{"loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","type":"model_attributes_type","input":null}]`},
		{"exclusive minimum", body(se("exclusiveMinimum", &openapi3.Schema{Min: ptr(0.5), ExclusiveMin: openapi3.ExclusiveBound{Bool: ptr(true)}}, 0.5)), "", "application/json", `0.5`,
			`[{"loc":["body"],"msg":"Input should be greater than 0.5","type":"greater_than","input":0.5,"ctx":{"gt":0.5}}]`},
		{"maximum", body(se("maximum", &openapi3.Schema{Max: ptr(24.0)}, 25.0)), "", "application/json", `25`,
			`[{"loc":["body"],"msg":"Input should be less than or equal to 24","type":"less_than_equal","input":25,"ctx":{"le":24}}]`},
		{"exclusive maximum", body(se("exclusiveMaximum", &openapi3.Schema{Max: ptr(1.0), ExclusiveMax: openapi3.ExclusiveBound{Bool: ptr(true)}}, 1.0)), "", "application/json", `1`,
			`[{"loc":["body"],"msg":"Input should be less than 1","type":"less_than","input":1,"ctx":{"lt":1}}]`},
		{"minimum without a bound", body(se("minimum", &openapi3.Schema{}, 1.0)), "", "application/json", `1`,
			`[{"loc":["body"],"msg":"Value error, kin-openapi's own words","type":"value_error","input":1}]`},
		{"min length", body(se("minLength", &openapi3.Schema{MinLength: 1}, "")), "", "application/json", `""`,
			`[{"loc":["body"],"msg":"String should have at least 1 character","type":"string_too_short","input":"","ctx":{"min_length":1}}]`},
		{"max length", body(se("maxLength", &openapi3.Schema{MaxLength: ptr(uint64(5))}, "abcdef")), "", "application/json", `"abcdef"`,
			`[{"loc":["body"],"msg":"String should have at most 5 characters","type":"string_too_long","input":"abcdef","ctx":{"max_length":5}}]`},
		{"min items", body(se("minItems", &openapi3.Schema{MinItems: 1}, []any{})), "", "application/json", `[]`,
			`[{"loc":["body"],"msg":"List should have at least 1 item after validation, not 0","type":"too_short","input":[],"ctx":{"field_type":"List","min_length":1,"actual_length":0}}]`},
		{"max items", body(se("maxItems", &openapi3.Schema{MaxItems: ptr(uint64(2))}, []any{1.0, 2.0, 3.0})), "", "application/json", `[1,2,3]`,
			`[{"loc":["body"],"msg":"List should have at most 2 items after validation, not 3","type":"too_long","input":[1,2,3],"ctx":{"field_type":"List","max_length":2,"actual_length":3}}]`},
		{"enum", body(se("enum", &openapi3.Schema{Enum: []any{"vector", "raster"}}, "mesh")), "", "application/json", `"mesh"`,
			`[{"loc":["body"],"msg":"Input should be 'vector' or 'raster'","type":"enum","input":"mesh","ctx":{"expected":"'vector' or 'raster'"}}]`},
		{"enum of three", body(se("enum", &openapi3.Schema{Enum: []any{"a", "b", "c"}}, "d")), "", "application/json", `"d"`,
			`[{"loc":["body"],"msg":"Input should be 'a', 'b' or 'c'","type":"enum","input":"d","ctx":{"expected":"'a', 'b' or 'c'"}}]`},
		{"pattern", body(se("pattern", &openapi3.Schema{Pattern: "^[a-z]+$"}, "A")), "", "application/json", `"A"`,
			`[{"loc":["body"],"msg":"String should match pattern '^[a-z]+$'","type":"string_pattern_mismatch","input":"A","ctx":{"pattern":"^[a-z]+$"}}]`},
		{"uuid of the wrong length", body(se("format", &openapi3.Schema{Format: "uuid"}, "abcd")), "", "application/json", `"abcd"`,
			`[{"loc":["body"],"msg":"Input should be a valid UUID, invalid length: expected length 32 for simple format, found 4","type":"uuid_parsing","input":"abcd","ctx":{"error":"invalid length: expected length 32 for simple format, found 4"}}]`},
		{"date-time", body(se("format", &openapi3.Schema{Format: "date-time"}, "x")), "", "application/json", `"x"`,
			`[{"loc":["body"],"msg":"Input should be a valid datetime","type":"datetime_from_date_parsing","input":"x","ctx":{"error":"invalid datetime"}}]`},
		{"byte", body(se("format", &openapi3.Schema{Format: "byte"}, "!")), "", "application/json", `"!"`,
			`[{"loc":["body"],"msg":"Value error, invalid cursor","type":"value_error","input":"!","ctx":{"error":"invalid cursor"}}]`},
		{"other format", body(se("format", &openapi3.Schema{Format: "email"}, "x")), "", "application/json", `"x"`,
			`[{"loc":["body"],"msg":"Value error, invalid email","type":"value_error","input":"x","ctx":{"error":"invalid email"}}]`},
		{"unknown schema rule", body(se("multipleOf", &openapi3.Schema{}, 3.0)), "", "application/json", `3`,
			`[{"loc":["body"],"msg":"Value error, kin-openapi's own words","type":"value_error","input":3}]`},
		{"nullable $ref: the inner rule is reported", body(&openapi3.SchemaError{SchemaField: "allOf", Schema: &openapi3.Schema{}, Value: "mesh",
			Origin: se("enum", &openapi3.Schema{Enum: []any{"vector"}}, "mesh")}), "", "application/json", `"mesh"`,
			`[{"loc":["body"],"msg":"Input should be 'vector'","type":"enum","input":"mesh","ctx":{"expected":"'vector'"}}]`},
		{"multi-errors, nested", openapi3.MultiError{
			&openapi3filter.RequestError{Parameter: intParam, Err: openapi3filter.ErrInvalidRequired},
			body(openapi3.MultiError{se("minLength", &openapi3.Schema{MinLength: 1}, ""), se("enum", &openapi3.Schema{Enum: []any{"x"}}, "")}),
		}, "", "application/json", `""`,
			`[{"loc":["query","limit"],"msg":"Field required","type":"missing","input":null},
			  {"loc":["body"],"msg":"String should have at least 1 character","type":"string_too_short","input":"","ctx":{"min_length":1}},
			  {"loc":["body"],"msg":"Input should be 'x'","type":"enum","input":"","ctx":{"expected":"'x'"}}]`},
		{"request error about neither", &openapi3filter.RequestError{Err: errors.New("security")}, "", "", "",
			`[{"loc":[],"msg":"security","type":"value_error","input":null}]`},
		{"unknown error", errors.New("boom"), "", "", "",
			`[{"loc":[],"msg":"boom","type":"value_error","input":null}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/x?"+tc.query, strings.NewReader(tc.body))
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			var raw []byte
			if tc.body != "" {
				raw = []byte(tc.body)
			}
			wantJSON(t, fastapi.FromValidation(tc.err, r, map[string]string{"key_id": "xyz"}, raw), tc.want)
		})
	}
}

const spec = `
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /things/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, format: uuid}}
    post:
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 10, maximum: 100}}
        - {name: tag, in: query, schema: {type: string, maxLength: 3}}
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [name, kind]
              properties:
                name: {type: string, minLength: 1, maxLength: 5}
                kind: {type: string, enum: [vector, raster]}
                ids: {type: array, maxItems: 2, items: {type: string, format: uuid}}
                layers:
                  type: array
                  items:
                    type: object
                    required: [id]
                    properties:
                      id: {type: string}
                      minzoom: {type: integer, minimum: 0}
                shape:
                  allOf: [{$ref: "#/components/schemas/Shape"}]
                  nullable: true
      responses:
        "200": {description: ok}
components:
  schemas:
    Shape: {type: string, enum: [round, square]}
`

// The real kin-openapi validator, on a small spec, and the exact entries its errors become: when
// an upgrade changes what kin-openapi reports (its error values, their paths, the wording this
// package reads), this fails instead of a client.
func TestFromValidationKinOpenAPI(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	const id = "7b5a6e9e-2754-4975-8e93-daac5d77a4ee"
	cases := []struct {
		name, path, ct, body, want string
	}{
		{"valid", "/things/" + id, "application/json", `{"name":"a","kind":"vector"}`, `null`},
		{"bad path uuid", "/things/nope", "application/json", `{"name":"a","kind":"vector"}`,
			`[{"loc":["path","id"],"msg":"Input should be a valid UUID, invalid character: expected an optional prefix of ` + "`urn:uuid:`" + ` followed by [0-9a-fA-F-], found ` + "`n`" + ` at 1","type":"uuid_parsing","input":"nope","ctx":{"error":"invalid character: expected an optional prefix of ` + "`urn:uuid:`" + ` followed by [0-9a-fA-F-], found ` + "`n`" + ` at 1"}}]`},
		{"query integer that does not parse", "/things/" + id + "?limit=ten", "application/json", `{"name":"a","kind":"vector"}`,
			`[{"loc":["query","limit"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing","input":"ten"}]`},
		{"query integer out of range", "/things/" + id + "?limit=5", "application/json", `{"name":"a","kind":"vector"}`,
			`[{"loc":["query","limit"],"msg":"Input should be greater than or equal to 10","type":"greater_than_equal","input":"5","ctx":{"ge":10}}]`},
		{"query string too long", "/things/" + id + "?tag=abcd", "application/json", `{"name":"a","kind":"vector"}`,
			`[{"loc":["query","tag"],"msg":"String should have at most 3 characters","type":"string_too_long","input":"abcd","ctx":{"max_length":3}}]`},
		{"empty query integer", "/things/" + id + "?limit=", "application/json", `{"name":"a","kind":"vector"}`,
			`[{"loc":["query","limit"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing","input":""}]`},
		{"no body", "/things/" + id, "application/json", ``,
			`[{"loc":["body"],"msg":"Field required","type":"missing","input":null}]`},
		{"not JSON", "/things/" + id, "application/json", `{"name":`,
			`[{"loc":["body",8],"msg":"JSON decode error","type":"json_invalid","input":{},"ctx":{"error":"unexpected end of JSON input"}}]`},
		{"wrong media type", "/things/" + id, "text/plain", `{"name":"a","kind":"vector"}`,
			`[{"loc":["header","Content-Type"],"msg":"Value error, the request body must be sent as application/json","type":"value_error","input":null}]`},
		{"missing, extra and out of range members", "/things/" + id, "application/json", `{"name":"","colour":"red","ids":["` + id + `","x","` + id + `"]}`,
			`[{"loc":["body","colour"],"msg":"Extra inputs are not permitted","type":"extra_forbidden","input":"red"},
			  {"loc":["body","ids"],"msg":"List should have at most 2 items after validation, not 3","type":"too_long","input":["` + id + `","x","` + id + `"],"ctx":{"field_type":"List","max_length":2,"actual_length":3}},
			  {"loc":["body","ids",1],"msg":"Input should be a valid UUID, invalid character: expected an optional prefix of ` + "`urn:uuid:`" + ` followed by [0-9a-fA-F-], found ` + "`x`" + ` at 1","type":"uuid_parsing","input":"x","ctx":{"error":"invalid character: expected an optional prefix of ` + "`urn:uuid:`" + ` followed by [0-9a-fA-F-], found ` + "`x`" + ` at 1"}},
			  {"loc":["body","name"],"msg":"String should have at least 1 character","type":"string_too_short","input":"","ctx":{"min_length":1}},
			  {"loc":["body","kind"],"msg":"Field required","type":"missing","input":{"colour":"red","ids":["` + id + `","x","` + id + `"],"name":""}}]`},
		{"nested array of objects", "/things/" + id, "application/json", `{"name":"a","kind":"vector","layers":[{"id":"l"},{"minzoom":-1}]}`,
			`[{"loc":["body","layers",1,"minzoom"],"msg":"Input should be greater than or equal to 0","type":"greater_than_equal","input":-1,"ctx":{"ge":0}},
			  {"loc":["body","layers",1,"id"],"msg":"Field required","type":"missing","input":{"minzoom":-1}}]`},
		{"nullable $ref", "/things/" + id, "application/json", `{"name":"a","kind":"mesh","shape":"oval"}`,
			`[{"loc":["body","kind"],"msg":"Input should be 'vector' or 'raster'","type":"enum","input":"mesh","ctx":{"expected":"'vector' or 'raster'"}},
			  {"loc":["body","shape"],"msg":"Input should be 'round' or 'square'","type":"enum","input":"oval","ctx":{"expected":"'round' or 'square'"}}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
			if tc.body == "" {
				r.Body = http.NoBody
			}
			r.Header.Set("Content-Type", tc.ct)
			route, pathParams, err := router.FindRoute(r)
			if err != nil {
				t.Fatal(err)
			}
			err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
				Request: r, PathParams: pathParams, Route: route,
				Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
			})
			var got []fastapi.Error
			if err != nil {
				got = fastapi.FromValidation(err, r, pathParams, []byte(tc.body))
			}
			wantJSON(t, got, tc.want)
		})
	}
}
