package fastapi_test

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tilegate/tilegate/internal/fastapi"
)

func TestQuery(t *testing.T) {
	param := func(name string, typ string) *openapi3.ParameterRef {
		return &openapi3.ParameterRef{Value: &openapi3.Parameter{In: "query", Name: name,
			Schema: openapi3.NewSchemaRef("", &openapi3.Schema{Type: types(typ)})}}
	}
	params := openapi3.Parameters{
		param("limit", "integer"), param("cursor", "string"), param("tags", "array"),
		{Value: &openapi3.Parameter{In: "path", Name: "id", Schema: openapi3.NewSchemaRef("", openapi3.NewStringSchema())}},
	}
	const bad = "Value error, the query string could not be decoded: "
	cases := []struct{ name, raw, want string }{
		{"empty", "", `null`},
		{"plain", "limit=10&cursor=abc", `null`},
		{"escaped", "limit=1%30&cursor=a%2Bb+c", `null`},
		{"an escaped percent before 00 is not NUL", "cursor=%2500", `null`},
		{"empty pairs and a name without value", "&&limit=10&&flag", `null`},
		{"array parameter repeated", "tags=a&tags=b", `null`},
		{"undeclared name repeated", "x=1&x=2", `null`},
		{"same name as a path parameter", "id=1&id=2", `null`},
		{"value with a bad escape", "cursor=%%%",
			`[{"loc":["query","cursor"],"msg":"` + bad + `invalid %-escape \"%%%\"","type":"value_error","input":"%%%","ctx":{"error":"the query string could not be decoded: invalid %-escape \"%%%\""}}]`},
		{"trailing percent", "limit=5%",
			`[{"loc":["query","limit"],"msg":"` + bad + `invalid %-escape \"%\"","type":"value_error","input":"5%","ctx":{"error":"the query string could not be decoded: invalid %-escape \"%\""}}]`},
		{"non-hex escape", "limit=%zz",
			`[{"loc":["query","limit"],"msg":"` + bad + `invalid %-escape \"%zz\"","type":"value_error","input":"%zz","ctx":{"error":"the query string could not be decoded: invalid %-escape \"%zz\""}}]`},
		{"name with a bad escape", "li%mit=5",
			`[{"loc":["query","li%mit"],"msg":"` + bad + `invalid %-escape \"%mi\"","type":"value_error","input":"5","ctx":{"error":"the query string could not be decoded: invalid %-escape \"%mi\""}}]`},
		{"semicolon", "limit=10;cursor=x",
			`[{"loc":["query","limit"],"msg":"` + bad + `';' is not a separator (use '&')","type":"value_error","input":"10;cursor=x","ctx":{"error":"the query string could not be decoded: ';' is not a separator (use '&')"}}]`},
		{"NUL in a value", "cursor=a%00b",
			`[{"loc":["query","cursor"],"msg":"Value error, the text must not contain NUL (\\u0000)","type":"value_error","input":"a\u0000b","ctx":{"error":"the text must not contain NUL (\\u0000)"}}]`},
		{"NUL in a name", "a%00=1",
			`[{"loc":["query","a\u0000"],"msg":"Value error, the text must not contain NUL (\\u0000)","type":"value_error","input":"1","ctx":{"error":"the text must not contain NUL (\\u0000)"}}]`},
		{"repeated, reported once", "limit=10&limit=20&limit=30",
			`[{"loc":["query","limit"],"msg":"Value error, the parameter takes one value and was given more than once","type":"value_error","input":"20","ctx":{"error":"the parameter takes one value and was given more than once"}}]`},
		{"repeated, one escaped", "cursor=a&cursor=%61",
			`[{"loc":["query","cursor"],"msg":"Value error, the parameter takes one value and was given more than once","type":"value_error","input":"a","ctx":{"error":"the parameter takes one value and was given more than once"}}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantJSON(t, fastapi.Query(tc.raw, params), tc.want)
		})
	}
}

// A tile request's query (a token's scope is escaped) is checked without allocating.
func TestQueryAllocatesNothingOnPlainQueries(t *testing.T) {
	params := openapi3.Parameters{{Value: &openapi3.Parameter{In: "query", Name: "key", Schema: openapi3.NewSchemaRef("", openapi3.NewStringSchema())}}}
	if n := testing.AllocsPerRun(100, func() { fastapi.Query("key=abcdefghijklmnopqrstuv&sig=00ff&exp=1", params) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestPath(t *testing.T) {
	wantJSON(t, fastapi.Path(map[string]string{"id": "x", "format": "pbf"}), `null`)
	wantJSON(t, fastapi.Path(map[string]string{"z": "0", "y": "1\x00", "format": "p\x00bf"}),
		`[{"loc":["path","format"],"msg":"Value error, the text must not contain NUL (\\u0000)","type":"value_error","input":"p\u0000bf","ctx":{"error":"the text must not contain NUL (\\u0000)"}},
		  {"loc":["path","y"],"msg":"Value error, the text must not contain NUL (\\u0000)","type":"value_error","input":"1\u0000","ctx":{"error":"the text must not contain NUL (\\u0000)"}}]`)
}

func TestNUL(t *testing.T) {
	const nul = `"msg":"Value error, the text must not contain NUL (\\u0000)","type":"value_error"`
	const ctx = `"ctx":{"error":"the text must not contain NUL (\\u0000)"}`
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"clean", map[string]any{"name": "a", "n": 1.0, "list": []any{"x", nil, true}}, `null`},
		{"top-level string", "a\x00", `[{"loc":["body"],` + nul + `,"input":"a\u0000",` + ctx + `}]`},
		{"member", map[string]any{"name": "a\x00b"}, `[{"loc":["body","name"],` + nul + `,"input":"a\u0000b",` + ctx + `}]`},
		{"array item", map[string]any{"origins": []any{"ok", "\x00"}}, `[{"loc":["body","origins",1],` + nul + `,"input":"\u0000",` + ctx + `}]`},
		{"deep, and a member name, in name order", map[string]any{
			"z":      "\x00",
			"layers": []any{map[string]any{"id": "l", "fields": map[string]any{"f\x00": "String", "g": "x\x00"}}},
		}, `[{"loc":["body","layers",0,"fields","f\u0000"],` + nul + `,"input":"f\u0000",` + ctx + `},
		     {"loc":["body","layers",0,"fields","g"],` + nul + `,"input":"x\u0000",` + ctx + `},
		     {"loc":["body","z"],` + nul + `,"input":"\u0000",` + ctx + `}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantJSON(t, fastapi.NUL([]any{"body"}, tc.v), tc.want)
		})
	}
}

func TestMerge(t *testing.T) {
	first := []fastapi.Error{fastapi.ValueError([]any{"body", "name"}, "a", "NUL")}
	then := []fastapi.Error{
		{Loc: []any{"body", "name"}, Type: "string_too_long", Msg: "long"},
		{Loc: []any{"body", "kind"}, Type: "missing", Msg: "Field required"},
	}
	wantJSON(t, fastapi.Merge(first, then),
		`[{"loc":["body","name"],"msg":"Value error, NUL","type":"value_error","input":"a","ctx":{"error":"NUL"}},
		  {"loc":["body","kind"],"msg":"Field required","type":"missing","input":null}]`)
}
