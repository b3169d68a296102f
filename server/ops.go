package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tilegate/tilegate"
	"github.com/tilegate/tilegate/gen"
)

func specYAML(*openapi3.T) ([]byte, error) { return tilegate.OpenAPIYAML, nil }

func (s *Server) Healthz(context.Context, gen.HealthzRequestObject) (gen.HealthzResponseObject, error) {
	return gen.Healthz200JSONResponse{Status: "ok"}, nil
}

func (s *Server) Readyz(ctx context.Context, _ gen.ReadyzRequestObject) (gen.ReadyzResponseObject, error) {
	if err := s.ping(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		return gen.Readyz503JSONResponse{UnavailableJSONResponse: gen.UnavailableJSONResponse{Detail: "The database is unavailable"}}, nil
	}
	return gen.Readyz200JSONResponse{Status: "ok"}, nil
}

func (s *Server) OpenapiYAML(context.Context, gen.OpenapiYAMLRequestObject) (gen.OpenapiYAMLResponseObject, error) {
	return gen.OpenapiYAML200ApplicationyamlResponse{Body: bytes.NewReader(s.yaml), ContentLength: int64(len(s.yaml))}, nil
}

func (s *Server) OpenapiJSON(context.Context, gen.OpenapiJSONRequestObject) (gen.OpenapiJSONResponseObject, error) {
	b, err := json.Marshal(s.spec)
	if err != nil {
		return nil, fmt.Errorf("marshal spec: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("unmarshal spec: %w", err)
	}
	return gen.OpenapiJSON200JSONResponse(doc), nil
}
