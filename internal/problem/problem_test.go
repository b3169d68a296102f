package problem_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tilegate/tilegate/internal/problem"
)

func TestMediaType(t *testing.T) {
	for accept, want := range map[string]string{
		"":                                    problem.JSON,
		"*/*":                                 problem.JSON,
		"application/*":                       problem.JSON,
		"application/json":                    problem.JSON,
		"text/html":                           problem.JSON,
		"application/json, text/plain, */*":   problem.JSON, // axios
		"application/problem+json":            problem.ProblemJSON,
		"application/problem+json, */*;q=0.8": problem.ProblemJSON,
		"application/json, application/problem+json":             problem.ProblemJSON,
		"application/problem+json;q=0.5, application/json":       problem.JSON,
		"application/problem+json;q=0.5, */*;q=0.1":              problem.ProblemJSON,
		"application/problem+json;q=0, */*":                      problem.JSON,
		"application/problem+json;q=oops":                        problem.JSON,
		"application/json;q=0.2, application/problem+json;q=0.4": problem.ProblemJSON,
		"*/*;q=0.1, application/problem+json;q=0.05":             problem.JSON,
		";;,,": problem.JSON,
	} {
		if got := problem.MediaType(accept); got != want {
			t.Errorf("MediaType(%q) = %s, want %s", accept, got, want)
		}
	}
}

func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set("WWW-Authenticate", "Bearer")
	if err := problem.Write(w, "application/problem+json", http.StatusNotFound, "Dataset not found"); err != nil {
		t.Fatal(err)
	}
	if w.Code != 404 || w.Header().Get("Content-Type") != problem.ProblemJSON || w.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("status %d headers %v", w.Code, w.Header())
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "about:blank", "title": "Not Found", "status": 404.0, "detail": "Dataset not found"}
	if len(got) != len(want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestNewKeepsTheValidationList(t *testing.T) {
	b, err := json.Marshal(problem.New(422, []map[string]any{{"loc": []any{"body"}, "msg": "Field required", "type": "missing"}}))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":[{"loc":["body"],"msg":"Field required","type":"missing"}]}`
	if string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
}
