package server_test

import (
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tilegate/tilegate/server"
)

// TestSpecDocumentsEveryOperation: what SDK users read in Swagger UI and generated clients is
// there for every operation: a description, an example for each JSON request body and success
// answer, and an example for each error answer (the linters check the examples against their
// schemas). Error examples name the operation's own error: an API key operation's 404 is
// about a key, a dataset operation's about a dataset.
func TestSpecDocumentsEveryOperation(t *testing.T) {
	spec, err := server.LoadSpec()
	must(t, err)
	hasExample := func(mt *openapi3.MediaType) bool {
		return mt.Example != nil || len(mt.Examples) > 0 || mt.Schema != nil && mt.Schema.Value != nil && mt.Schema.Value.Example != nil
	}
	for path, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if strings.TrimSpace(op.Description) == "" {
				t.Errorf("%s: no description", name)
			}
			if rb := op.RequestBody; rb != nil && rb.Value != nil {
				if mt := rb.Value.Content.Get("application/json"); mt != nil && !hasExample(mt) {
					t.Errorf("%s: request body without an example", name)
				}
			}
			for code, ref := range op.Responses.Map() {
				for ct, mt := range ref.Value.Content {
					if !strings.Contains(ct, "json") || hasExample(mt) {
						continue
					}
					// Success answers: the main ones (JSON bodies) need one; errors always.
					t.Errorf("%s: %s %s answer without an example", name, code, ct)
				}
				if code == "404" && strings.Contains(path, "{key_id}") {
					if ex, _ := ref.Value.Content.Get("application/json").Example.(map[string]any); ex["detail"] != "API key not found" {
						t.Errorf("%s: 404 example %v is not the key's", name, ex)
					}
				}
				if code == "404" && strings.HasPrefix(path, "/api/datasets/{dataset_id}/") && !strings.Contains(path, "grant_id") {
					if ex, _ := ref.Value.Content.Get("application/json").Example.(map[string]any); ex["detail"] != "Dataset not found" {
						t.Errorf("%s: 404 example %v is not the dataset's", name, ex)
					}
				}
			}
		}
	}
}
