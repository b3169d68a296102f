package server

import (
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tilegate/tilegate"
)

// LoadSpec parses the contract as written (openapi.yaml, embedded in the binary), with its
// servers dropped so requests match on path alone whatever host the service is reached by.
//
// It is used instead of gen.GetSwagger: oapi-codegen removes the operations listed in
// exclude-operation-ids (getTile, which echo cannot route) from the document it embeds, so a
// router built from that would answer 405 for every tile. Routing, validation, /openapi.json and
// the tests' response validator all use this one document.
func LoadSpec() (*openapi3.T, error) {
	spec, err := openapi3.NewLoader().LoadFromData(tilegate.OpenAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	spec.Servers = nil
	return spec, nil
}
