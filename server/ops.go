package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tilegate/tilegate"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
)

func (s *Server) Healthz(context.Context, gen.HealthzRequestObject) (gen.HealthzResponseObject, error) {
	return gen.Healthz200JSONResponse{Status: "ok"}, nil
}

func (s *Server) Readyz(ctx context.Context, _ gen.ReadyzRequestObject) (gen.ReadyzResponseObject, error) {
	if err := s.store.Ping(ctx); err != nil {
		// Load balancers ask often: aggregated like the other 503s.
		reason := store.UnavailableReason(err)
		if reason == "" {
			reason = "ping"
		}
		s.outages.failure(reason, time.Now().Add(-2*time.Second), slog.String("reason", reason), slog.String("path", "/readyz"), slog.String("err", err.Error()))
		return gen.Readyz503JSONResponse{UnavailableJSONResponse: gen.UnavailableJSONResponse{Detail: "The database is unavailable"}}, nil
	}
	return gen.Readyz200JSONResponse{Status: "ok"}, nil
}

func (s *Server) OpenapiYAML(context.Context, gen.OpenapiYAMLRequestObject) (gen.OpenapiYAMLResponseObject, error) {
	doc := tilegate.OpenAPIYAML
	return gen.OpenapiYAML200ApplicationyamlResponse{Body: bytes.NewReader(doc), ContentLength: int64(len(doc))}, nil
}

func (s *Server) OpenapiJSON(context.Context, gen.OpenapiJSONRequestObject) (gen.OpenapiJSONResponseObject, error) {
	return gen.OpenapiJSON200JSONResponse(s.specJSON), nil
}

// specDocument is the loaded spec as the generic JSON value /openapi.json serves, built once.
func specDocument(spec *openapi3.T) (map[string]any, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("marshal spec: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("unmarshal spec: %w", err)
	}
	return doc, nil
}
