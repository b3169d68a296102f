// Package fastapi renders request validation failures in FastAPI's (pydantic v2) 422 shape,
// {"detail":[{"loc","msg","type","input","ctx"}]}: it translates kin-openapi's validation
// errors, and adds the checks kin-openapi leaves out (a query string that does not decode, a
// repeated single-valued parameter, NUL in any string). Clients written against the FastAPI
// services tilegate stands in for parse these entries, so their exact loc/type/msg/ctx are the
// contract; the package's tests pin them against kin-openapi's error values.
package fastapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/google/uuid"
)

// Error is one entry of a FastAPI validation error body. Input is always present (null when
// there was none), as FastAPI sends it.
type Error struct {
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Type  string         `json:"type"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

func init() {
	// Importing the package registers it. kin-openapi checks no uuid format by default; pydantic accepts any hex UUID (any version),
	// and so do we: the GeoLens example id is not an RFC 4122 version.
	openapi3.DefineStringFormatValidator("uuid", openapi3.NewCallbackValidator(func(s string) error {
		if _, err := uuid.Parse(s); err != nil {
			return err
		}
		return nil
	}))
}

// Body is the 422 response: {"detail": [...]}.
type Body struct {
	Detail []Error `json:"detail"`
}

// ValueError is the entry for a rule the schema cannot express (a bad cursor, an origin entry):
// pydantic's value_error, with msg also in ctx.error.
func ValueError(loc []any, input any, msg string) Error {
	return Error{Loc: loc, Input: input, Type: "value_error", Msg: "Value error, " + msg, Ctx: map[string]any{"error": msg}}
}

// FromValidation turns the error of openapi3filter.ValidateRequest into FastAPI's entries. r is
// the request validated (for the raw parameter values), pathParams the route's path parameters,
// body the raw request body (nil when it was not read), used to find array positions and
// offending inputs. An error it does not know becomes one value_error entry at loc [].
func FromValidation(err error, r *http.Request, pathParams map[string]string, body []byte) []Error {
	var decoded any
	if len(body) > 0 {
		_ = json.Unmarshal(body, &decoded)
	}
	var out []Error
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case openapi3.MultiError:
			for _, inner := range e {
				walk(inner)
			}
		case *openapi3filter.RequestError:
			switch {
			case e.Parameter != nil:
				out = append(out, paramErrors(e, r, pathParams)...)
			case e.RequestBody != nil:
				out = append(out, bodyErrors(e, r, body, decoded)...)
			default:
				out = append(out, Error{Loc: []any{}, Msg: e.Error(), Type: "value_error"})
			}
		default:
			out = append(out, Error{Loc: []any{}, Msg: err.Error(), Type: "value_error"})
		}
	}
	walk(err)
	return out
}

func paramErrors(e *openapi3filter.RequestError, r *http.Request, pathParams map[string]string) []Error {
	p := e.Parameter
	loc := []any{p.In, p.Name}
	var raw any
	switch p.In {
	case openapi3.ParameterInQuery:
		if vs, ok := r.URL.Query()[p.Name]; ok && len(vs) > 0 {
			raw = vs[0]
		}
	case openapi3.ParameterInPath:
		if v, ok := pathParams[p.Name]; ok {
			raw = v
		}
	case openapi3.ParameterInHeader:
		if v := r.Header.Get(p.Name); v != "" {
			raw = v
		}
	}
	if errors.Is(e.Err, openapi3filter.ErrInvalidRequired) {
		return []Error{{Loc: loc, Msg: "Field required", Type: "missing"}}
	}
	if errors.Is(e.Err, openapi3filter.ErrInvalidEmptyValue) {
		// Given without a value (?limit=): FastAPI parses "" and fails like any bad string.
		return []Error{parseFailure(loc, raw, p.Schema)}
	}
	var parseErr *openapi3filter.ParseError
	if errors.As(e.Err, &parseErr) {
		return []Error{parseFailure(loc, raw, p.Schema)}
	}
	out := schemaErrors(e.Err, loc, nil)
	for i := range out {
		// Parameters arrive as strings; FastAPI reports the string the client sent.
		if len(out[i].Loc) == 2 {
			out[i].Input = raw
		}
	}
	return out
}

func parseFailure(loc []any, raw any, ref *openapi3.SchemaRef) Error {
	typ := ""
	if ref != nil && ref.Value != nil && ref.Value.Type != nil && len(*ref.Value.Type) > 0 {
		typ = (*ref.Value.Type)[0]
	}
	switch typ {
	case "integer":
		return Error{Loc: loc, Input: raw, Type: "int_parsing", Msg: "Input should be a valid integer, unable to parse string as an integer"}
	case "number":
		return Error{Loc: loc, Input: raw, Type: "float_parsing", Msg: "Input should be a valid number, unable to parse string as a number"}
	case "boolean":
		return Error{Loc: loc, Input: raw, Type: "bool_parsing", Msg: "Input should be a valid boolean, unable to interpret input"}
	}
	return Error{Loc: loc, Input: raw, Type: "value_error", Msg: "Value error, could not parse the value"}
}

func bodyErrors(e *openapi3filter.RequestError, r *http.Request, body []byte, decoded any) []Error {
	if errors.Is(e.Err, openapi3filter.ErrInvalidRequired) || (len(bytes.TrimSpace(body)) == 0 && e.Err == nil) {
		return []Error{{Loc: []any{"body"}, Msg: "Field required", Type: "missing"}}
	}
	var parseErr *openapi3filter.ParseError
	if errors.As(e.Err, &parseErr) || e.Err == nil {
		if len(bytes.TrimSpace(body)) == 0 {
			return []Error{{Loc: []any{"body"}, Msg: "Field required", Type: "missing"}}
		}
		// The body was sent as a media type the operation does not take (kin-openapi says so
		// with a nil Err), or one it has no decoder for (KindUnsupportedFormat).
		unsupported := parseErr != nil && parseErr.Kind == openapi3filter.KindUnsupportedFormat
		if unsupported || e.Err == nil && !takes(e.RequestBody, r) {
			return []Error{{Loc: []any{"header", "Content-Type"}, Type: "value_error",
				Msg: "Value error, the request body must be sent as application/json"}}
		}
		return []Error{JSONInvalid(body)}
	}
	return schemaErrors(e.Err, []any{"body"}, decoded)
}

// takes reports whether the operation's request body accepts the request's Content-Type.
func takes(rb *openapi3.RequestBody, r *http.Request) bool {
	if len(rb.Content) == 0 {
		return true
	}
	ct := ""
	if r != nil {
		ct = r.Header.Get("Content-Type")
	}
	return rb.Content.Get(ct) != nil
}

// JSONInvalid mirrors FastAPI's answer to a body that is not JSON: the byte offset of the error.
func JSONInvalid(body []byte) Error {
	var v any
	err := json.Unmarshal(body, &v)
	pos := 0
	msg := "invalid JSON"
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		pos = int(syn.Offset)
		msg = syn.Error()
	} else if err != nil {
		msg = err.Error()
	}
	return Error{Loc: []any{"body", pos}, Msg: "JSON decode error", Type: "json_invalid",
		Input: map[string]any{}, Ctx: map[string]any{"error": msg}}
}

// schemaErrors maps kin-openapi SchemaErrors under base. root is the decoded value the
// pointers walk, so array positions become integers in loc as FastAPI reports them.
func schemaErrors(err error, base []any, root any) []Error {
	var se *openapi3.SchemaError
	switch e := err.(type) {
	case nil:
		return nil
	case openapi3.MultiError:
		var out []Error
		for _, inner := range e {
			out = append(out, schemaErrors(inner, base, root)...)
		}
		return out
	case *openapi3.SchemaError:
		se = e
	default:
		if !errors.As(err, &se) {
			return []Error{{Loc: base, Msg: "Value error, " + err.Error(), Type: "value_error"}}
		}
	}
	loc, _ := locate(base, root, se.JSONPointer())
	// A nullable $ref is wrapped in allOf: report the inner rule that failed, where it failed.
	if se.SchemaField == "allOf" || se.SchemaField == "anyOf" || se.SchemaField == "oneOf" {
		var inner *openapi3.SchemaError
		if errors.As(se.Origin, &inner) {
			return schemaErrors(inner, base, root)
		}
	}
	return []Error{describe(se, loc)}
}

// locate extends loc along a JSON pointer into root; array positions become integers, as
// FastAPI reports them. It returns the value found there too.
func locate(base []any, root any, pointer []string) ([]any, any) {
	loc := append([]any(nil), base...)
	cur := root
	for _, key := range pointer {
		if arr, ok := cur.([]any); ok {
			if i, err := strconv.Atoi(key); err == nil {
				loc = append(loc, i)
				cur = nil
				if i >= 0 && i < len(arr) {
					cur = arr[i]
				}
				continue
			}
		}
		loc = append(loc, key)
		obj, _ := cur.(map[string]any)
		cur = obj[key]
	}
	return loc, cur
}

func describe(se *openapi3.SchemaError, loc []any) Error {
	s := se.Schema
	fe := Error{Loc: loc, Input: se.Value}
	switch se.SchemaField {
	case "required":
		fe.Type, fe.Msg = "missing", "Field required"
	case "properties", "additionalProperties":
		if key, ok := extraKey(se); ok {
			fe.Loc = append(fe.Loc, key)
			if obj, ok := se.Value.(map[string]any); ok {
				fe.Input = obj[key]
			}
			fe.Type, fe.Msg = "extra_forbidden", "Extra inputs are not permitted"
		} else {
			fe.Type, fe.Msg = "value_error", "Value error, "+se.Reason
		}
	case "type", "nullable":
		fe.Type, fe.Msg = typeError(s, se.Value)
	case "minimum", "exclusiveMinimum":
		if s.Min == nil {
			fe.Type, fe.Msg = "value_error", "Value error, "+se.Reason
		} else if s.ExclusiveMin.Bool != nil && *s.ExclusiveMin.Bool {
			fe.Type, fe.Msg, fe.Ctx = "greater_than", fmt.Sprintf("Input should be greater than %v", num(*s.Min)), map[string]any{"gt": num(*s.Min)}
		} else {
			fe.Type, fe.Msg, fe.Ctx = "greater_than_equal", fmt.Sprintf("Input should be greater than or equal to %v", num(*s.Min)), map[string]any{"ge": num(*s.Min)}
		}
	case "maximum", "exclusiveMaximum":
		if s.Max == nil {
			fe.Type, fe.Msg = "value_error", "Value error, "+se.Reason
		} else if s.ExclusiveMax.Bool != nil && *s.ExclusiveMax.Bool {
			fe.Type, fe.Msg, fe.Ctx = "less_than", fmt.Sprintf("Input should be less than %v", num(*s.Max)), map[string]any{"lt": num(*s.Max)}
		} else {
			fe.Type, fe.Msg, fe.Ctx = "less_than_equal", fmt.Sprintf("Input should be less than or equal to %v", num(*s.Max)), map[string]any{"le": num(*s.Max)}
		}
	case "minLength":
		fe.Type, fe.Msg, fe.Ctx = "string_too_short", fmt.Sprintf("String should have at least %d %s", s.MinLength, plural(s.MinLength, "character")), map[string]any{"min_length": s.MinLength}
	case "maxLength":
		fe.Type, fe.Msg, fe.Ctx = "string_too_long", fmt.Sprintf("String should have at most %d %s", *s.MaxLength, plural(*s.MaxLength, "character")), map[string]any{"max_length": *s.MaxLength}
	case "minItems":
		n := length(se.Value)
		fe.Type, fe.Msg, fe.Ctx = "too_short", fmt.Sprintf("List should have at least %d %s after validation, not %d", s.MinItems, plural(s.MinItems, "item"), n),
			map[string]any{"field_type": "List", "min_length": s.MinItems, "actual_length": n}
	case "maxItems":
		n := length(se.Value)
		fe.Type, fe.Msg, fe.Ctx = "too_long", fmt.Sprintf("List should have at most %d %s after validation, not %d", *s.MaxItems, plural(*s.MaxItems, "item"), n),
			map[string]any{"field_type": "List", "max_length": *s.MaxItems, "actual_length": n}
	case "enum":
		expected := enumText(s.Enum)
		fe.Type, fe.Msg, fe.Ctx = "enum", "Input should be "+expected, map[string]any{"expected": expected}
	case "pattern":
		fe.Type, fe.Msg, fe.Ctx = "string_pattern_mismatch", fmt.Sprintf("String should match pattern '%s'", s.Pattern), map[string]any{"pattern": s.Pattern}
	case "format":
		fe.Type, fe.Msg, fe.Ctx = formatError(s.Format, se.Value)
	default:
		fe.Type, fe.Msg = "value_error", "Value error, "+se.Reason
	}
	return fe
}

// extraKey names the property an additionalProperties failure is about. kin-openapi reports one
// error per extra property and names it only in Reason (`property "x" is unsupported`); when that
// wording changes (the package's tests pin it), an object with a single property the schema does
// not declare still names it.
func extraKey(se *openapi3.SchemaError) (string, bool) {
	var key string
	if _, err := fmt.Sscanf(se.Reason, "property %q is unsupported", &key); err == nil {
		return key, true
	}
	obj, ok := se.Value.(map[string]any)
	if !ok || se.Schema == nil {
		return "", false
	}
	var extra []string
	for k := range obj {
		if _, declared := se.Schema.Properties[k]; !declared {
			extra = append(extra, k)
		}
	}
	if len(extra) != 1 {
		return "", false
	}
	return extra[0], true
}

func typeError(s *openapi3.Schema, v any) (string, string) {
	typ := ""
	if s.Type != nil && len(*s.Type) > 0 {
		typ = (*s.Type)[0]
	}
	switch typ {
	case "string":
		return "string_type", "Input should be a valid string"
	case "integer":
		if f, ok := v.(float64); ok && f != float64(int64(f)) {
			return "int_from_float", "Input should be a valid integer, got a number with a fractional part"
		}
		return "int_type", "Input should be a valid integer"
	case "number":
		return "float_type", "Input should be a valid number"
	case "boolean":
		return "bool_type", "Input should be a valid boolean"
	case "array":
		return "list_type", "Input should be a valid list"
	case "object":
		return "model_attributes_type", "Input should be a valid dictionary or object to extract fields from"
	}
	return "value_error", "Value error, wrong type"
}

func formatError(format string, v any) (string, string, map[string]any) {
	s, _ := v.(string)
	switch format {
	case "uuid":
		reason := uuidReason(s)
		return "uuid_parsing", "Input should be a valid UUID, " + reason, map[string]any{"error": reason}
	case "date-time":
		return "datetime_from_date_parsing", "Input should be a valid datetime", map[string]any{"error": "invalid datetime"}
	case "byte":
		return "value_error", "Value error, invalid cursor", map[string]any{"error": "invalid cursor"}
	}
	return "value_error", "Value error, invalid " + format, map[string]any{"error": "invalid " + format}
}

// uuidReason explains a bad UUID the way pydantic's uuid_parsing errors do.
func uuidReason(s string) string {
	hex := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(s), "urn:uuid:"), "-", "")
	for i, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return fmt.Sprintf("invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `%c` at %d", c, i+1)
		}
	}
	if len(hex) != 32 {
		return fmt.Sprintf("invalid length: expected length 32 for simple format, found %d", len(hex))
	}
	return "invalid group length"
}

func num(f float64) any {
	if f == float64(int64(f)) {
		return int64(f)
	}
	return f
}

func plural(n uint64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func length(v any) int {
	if a, ok := v.([]any); ok {
		return len(a)
	}
	return 0
}

func enumText(values []any) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = fmt.Sprintf("'%v'", v)
	}
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}
