package server

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/tileurl"
)

// noSniff is the header every answer carries: browsers then use the Content-Type tilegate
// declares and never guess one from the bytes (a tile or an error body read as HTML or script).
var noSniff = []string{"nosniff"}

// NoSniff sets X-Content-Type-Options: nosniff on every answer of h (the admin listener's
// /metrics and profiles; the public handler sets it in securityHeaders).
func NoSniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Content-Type-Options"] = noSniff
		h.ServeHTTP(w, r)
	})
}

// securityHeaders runs first in the pre-routing chain (echo's and the tile dispatch's alike), so
// that every answer carries nosniff: tiles, errors, 404s, 405s, redirects, /docs and the preview.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header()["X-Content-Type-Options"] = noSniff
		return next(c)
	}
}

// allowedMethods lists the methods the request's path accepts, for a 405's Allow header: the
// contract's operations on that path, HEAD wherever GET is (headAsGet), OPTIONS where a CORS
// preflight is answered (tiles, TileJSON and the token endpoints), and GET and HEAD on /docs.
// "" when the path accepts nothing (a 404).
func (s *Server) allowedMethods(r *http.Request) string {
	p := r.URL.Path
	if p == docsPath || strings.HasPrefix(p, docsPath+"/") {
		return "GET, HEAD"
	}
	var allow []string
	probe := r.Clone(r.Context())
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe.Method = m
		if _, _, err := s.router.FindRoute(probe); err != nil {
			continue
		}
		allow = append(allow, m)
		if m == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	if len(allow) > 0 && (tileurl.UnderTiles(p) || tileurl.IsTokenEndpoint(p)) {
		allow = append(allow, http.MethodOptions)
	}
	return strings.Join(allow, ", ")
}

// methodNotAllowed answers 405 with the methods the path does accept.
func (s *Server) methodNotAllowed(c echo.Context) error {
	if allow := s.allowedMethods(c.Request()); allow != "" {
		c.Response().Header().Set("Allow", allow)
	}
	return detail(c, http.StatusMethodNotAllowed, "Method Not Allowed")
}
