package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilestore"
	"github.com/tilegate/tilegate/tileurl"
)

func init() {
	// The one YAML body in the contract is /openapi.yaml, declared as text (type: string):
	// validate it as the string it is rather than as a parsed document.
	openapi3filter.RegisterBodyDecoder("application/yaml", openapi3filter.PlainBodyDecoder)
}

func (s *Server) Healthz(context.Context, gen.HealthzRequestObject) (gen.HealthzResponseObject, error) {
	return gen.Healthz200JSONResponse{Status: "ok"}, nil
}

// Readyz answers 200 when this replica can do its work: the database answers and accepts
// writes, and the data directory can be read and written. A 503 names the part that failed.
func (s *Server) Readyz(ctx context.Context, _ gen.ReadyzRequestObject) (gen.ReadyzResponseObject, error) {
	if err := s.store.Ping(ctx); err != nil {
		// Load balancers ask often: aggregated like the other 503s.
		reason := store.UnavailableReason(err)
		if reason == "" {
			reason = "ping"
		}
		s.outages.failure(reason, time.Now().Add(-2*time.Second), slog.String("reason", reason), slog.String("path", "/readyz"), slog.String("err", err.Error()))
		return nil, fail(http.StatusServiceUnavailable, "The database is unavailable")
	}
	if err := s.store.Writable(ctx); err != nil {
		s.readiness.failed("database", err)
		return nil, fail(http.StatusServiceUnavailable, "The database answers but cannot be written")
	}
	if err := s.tilestore.Check(ctx); err != nil {
		if errors.Is(err, tilestore.ErrBucket) {
			s.readiness.failed("storage bucket", err)
			return nil, fail(http.StatusServiceUnavailable, "The tile storage bucket cannot be reached")
		}
		s.readiness.failed("data directory", err)
		return nil, fail(http.StatusServiceUnavailable, "The data directory cannot be read or written")
	}
	s.readiness.ready()
	return gen.Readyz200JSONResponse{Status: "ok"}, nil
}

// readiness logs why /readyz fails when that changes, and when it is ready again: probes come
// every few seconds, and each would otherwise log the same line.
type readiness struct {
	log     *slog.Logger
	mu      sync.Mutex
	failing string // the part that failed last; "" when ready
}

func (r *readiness) failed(part string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing != part {
		r.failing = part
		r.log.Error("not ready: "+part+" failed", "err", err)
	}
}

func (r *readiness) ready() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing != "" {
		r.log.Info("ready again", "was", r.failing)
		r.failing = ""
	}
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

// headAsGet answers HEAD wherever GET is answered (uptime checkers probe with HEAD): the request
// is routed, authenticated and validated as the GET it stands for. echo routes on the request
// the server handed it, so that one says GET until routing is done; restoreHead then gives it back
// its HEAD, so net/http drops the body and keeps GET's headers. Tiles answer HEAD themselves.
func headAsGet(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodHead && !tileurl.IsTileFile(r.URL.Path) {
			g := r.Clone(r.Context())
			g.Method = http.MethodGet
			c.SetRequest(g)
			r.Method = http.MethodGet
			c.Set(headRequestKey, r)
		}
		return next(c)
	}
}

const headRequestKey = "tilegate.head"

// restoreHead runs first after routing (see headAsGet).
func restoreHead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if r, ok := c.Get(headRequestKey).(*http.Request); ok {
			r.Method = http.MethodHead
		}
		return next(c)
	}
}
