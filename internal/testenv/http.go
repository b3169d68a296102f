package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
)

// Env is a running tilegate on one database.
type Env struct {
	DB     *Database
	Server *server.Server
	HTTP   *httptest.Server
	URL    string
	t      testing.TB
}

// Start serves tilegate on real HTTP for the test's lifetime.
func Start(t testing.TB, db *Database, cfg server.Config) *Env {
	t.Helper()
	if cfg.AuthCacheTTL == 0 {
		cfg.AuthCacheTTL = time.Minute
	}
	e := &Env{DB: db, t: t}
	// The listener (and so the URL, the server's PublicURL) exists before the server: a request
	// that arrives in between (a browser of an earlier test reusing the port) is answered 503 by
	// the holder, never raced with setting the handler.
	var handler atomic.Pointer[http.Handler]
	e.HTTP = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := handler.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}))
	e.HTTP.Start()
	e.URL = e.HTTP.URL
	if cfg.PublicURL == "" {
		cfg.PublicURL = e.URL
	}
	if cfg.Signer == nil {
		key, err := tiletoken.GenerateKey("test")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Signer, err = tiletoken.New([]tiletoken.Key{key}); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	srv, err := server.New(db.Store, cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e.Server = srv
	h := srv.Handler()
	handler.Store(&h)
	// Cleanups run last-in first-out: the HTTP server stops first, then the server's listener and
	// last_used flusher.
	t.Cleanup(func() { _ = srv.Close() })
	t.Cleanup(e.HTTP.Close)
	return e
}

// Account is a tenant with an admin token.
type Account struct {
	ID          uuid.UUID
	PrincipalID uuid.UUID
	Token       string
}

// NewAccount creates an account and its admin principal.
func (e *Env) NewAccount(t testing.TB) Account {
	t.Helper()
	issued, err := e.DB.Store.CreateAccount(context.Background(), "acct-"+uuid.NewString()[:8])
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	return Account{ID: issued.AccountID, PrincipalID: issued.PrincipalID, Token: issued.Token}
}

// NewPrincipal adds a principal with a role to an account and returns its token.
func (e *Env) NewPrincipal(t testing.TB, accountID uuid.UUID, role string) store.Issued {
	t.Helper()
	issued, err := e.DB.Store.CreatePrincipal(context.Background(), accountID, role, role)
	if err != nil {
		t.Fatalf("create principal: %v", err)
	}
	return issued
}

// Client returns a generated client that sends token (when not empty) and validates every response.
func (e *Env) Client(t testing.TB, token string) *gen.ClientWithResponses {
	t.Helper()
	c, err := gen.NewClientWithResponses(e.URL, gen.WithHTTPClient(e.HTTPClient(t)), gen.WithRequestEditorFn(
		func(_ context.Context, r *http.Request) error {
			if token != "" {
				r.Header.Set("Authorization", "Bearer "+token)
			}
			return nil
		}))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// HTTPClient is a plain client whose responses are validated against openapi.yaml.
func (e *Env) HTTPClient(t testing.TB) *http.Client {
	return &http.Client{Transport: NewValidatingTransport(t, http.DefaultTransport), Timeout: 30 * time.Second}
}

// ValidatingTransport checks every response against openapi.yaml; a response the spec does not
// declare (status, content type or body) fails the test.
type ValidatingTransport struct {
	t      testing.TB
	next   http.RoundTripper
	router routers.Router
}

func NewValidatingTransport(t testing.TB, next http.RoundTripper) *ValidatingTransport {
	// server.LoadSpec, not gen.GetSwagger: the generated document lacks getTile (excluded from
	// code generation), so tile responses would count as routes outside the spec.
	spec, err := server.LoadSpec()
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &ValidatingTransport{t: t, next: next, router: router}
}

func (v *ValidatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// The validator needs the request as it was sent; keep a copy of its body.
	var reqBody []byte
	if req.Body != nil && req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			reqBody, _ = io.ReadAll(io.LimitReader(rc, 2<<20))
			rc.Close()
		}
	}
	res, err := v.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	if verr := v.check(req, reqBody, res, body); verr != nil {
		v.t.Errorf("response to %s %s does not match openapi.yaml: %v\nstatus %d body %.500s", req.Method, req.URL.Path, verr, res.StatusCode, body)
	}
	return res, nil
}

func (v *ValidatingTransport) check(req *http.Request, reqBody []byte, res *http.Response, body []byte) error {
	if req.Method == http.MethodOptions {
		return nil // CORS preflight is answered by middleware, outside the contract
	}
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := v.router.FindRoute(r)
	if err != nil && res.StatusCode == http.StatusPermanentRedirect {
		// The other spelling of a path (trailing slash): 308 to a path of the contract, query kept.
		loc, lerr := url.Parse(res.Header.Get("Location"))
		if lerr != nil || loc.IsAbs() || loc.RawQuery != req.URL.RawQuery {
			return fmt.Errorf("308 to %q, want the canonical path with the query %q", res.Header.Get("Location"), req.URL.RawQuery)
		}
		to := r.Clone(context.Background())
		to.URL.Path, to.URL.RawPath = loc.Path, ""
		if _, _, err := v.router.FindRoute(to); err != nil {
			return fmt.Errorf("308 to %q, which is not in the contract: %w", loc, err)
		}
		return nil
	}
	if err != nil {
		// Not in the contract (unknown path or method): only the uniform error shape is allowed.
		var e struct {
			Detail *string `json:"detail"`
		}
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Errorf("route outside the spec answered %d", res.StatusCode)
		}
		if json.Unmarshal(body, &e) != nil || e.Detail == nil {
			return fmt.Errorf("route outside the spec answered without {\"detail\"}")
		}
		return nil
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: res.StatusCode,
		Header: res.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	input.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), input)
}
