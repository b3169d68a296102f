package tilehttp

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/tileurl"
)

// AuthRoute is the forward-auth endpoint for proxies that serve tiles themselves (nginx
// auth_request, Envoy ext_authz, Traefik ForwardAuth).
const AuthRoute = "/api/tiles/auth"

// publicDecisionMaxAge is how long a proxy may reuse an allowed decision on a public dataset: a
// dataset made private again is refused by proxies within this time.
const publicDecisionMaxAge = 60

// Authorize answers whether the tile request the proxy describes would be served: the tile
// path's own steps (parse, dataset, credential, limits), on the original URI, with the original
// request's headers (the proxy forwards them) and client address (trusted-proxy rule). An
// allowed decision is counted as a served tile, without bytes (the proxy sends them).
func (h *Handler) Authorize(c echo.Context) error {
	r := c.Request()
	if r.Header.Get("X-Tilegate-Auth-Request") == "nginx" {
		refuseAsNginxUnderstands(c.Response())
	}
	uri := r.Header.Get("X-Original-URI")
	if uri == "" {
		uri = r.Header.Get("X-Forwarded-Uri")
	}
	if uri == "" {
		return WriteError(c, http.StatusBadRequest, "Send the original request's path and query in X-Original-URI (nginx) or X-Forwarded-Uri (Traefik)")
	}
	method := r.Header.Get("X-Original-Method")
	if method == "" {
		method = r.Header.Get("X-Forwarded-Method")
	}
	if method != "" && method != http.MethodGet && method != http.MethodHead {
		return WriteError(c, http.StatusBadRequest, "Only GET and HEAD are tile requests")
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.RawPath != "" || u.Host != "" {
		return WriteError(c, http.StatusBadRequest, notATileURL)
	}
	if _, ok := tileurl.Segments(u.Path); !ok {
		return WriteError(c, http.StatusBadRequest, notATileURL)
	}
	t, bad := parseTileURL(u.EscapedPath())
	if bad != nil {
		return WriteRefusal(c, bad)
	}
	e, err := h.Access.Dataset(r.Context(), t.Dataset)
	if err != nil {
		return err
	}
	if !e.Found {
		return WriteRefusal(c, tileaccess.RefuseNotFound)
	}
	use, answered, err := h.admit(c, e, t, u.RawQuery)
	if answered {
		return err
	}
	if t.Format != e.Dataset.Format {
		use.notServed()
		return WriteError(c, http.StatusNotFound, "This dataset's tiles are ."+e.Dataset.Format)
	}
	use.served(0)
	hdr := c.Response().Header()
	creds := tileaccess.ParseCredentials(u.RawQuery)
	hdr.Set("Cache-Control", h.decisionCacheControl(e, use, &creds))
	hdr.Set("X-Tilegate-Dataset", t.Dataset.String())
	return c.NoContent(http.StatusOK)
}

// refuseAsNginxUnderstands makes every refusal a 401 or 403 carrying the real status in
// X-Tilegate-Status. nginx's auth_request passes on only 401 and 403 and turns any other
// status (404, 429, 400) into a 500 without reading its headers; with this, the nginx
// configuration reads the real status and reason (auth_request_set) and answers them itself.
func refuseAsNginxUnderstands(w *echo.Response) {
	w.Before(func() {
		if w.Status < 400 {
			return
		}
		w.Header().Set("X-Tilegate-Status", strconv.Itoa(w.Status))
		if w.Status != http.StatusUnauthorized {
			w.Status = http.StatusForbidden
		}
	})
}

const notATileURL = "The original URI is not a tile URL (" + tileurl.Prefix + "{dataset_id}/{z}/{x}/{y}.{format})"

// decisionCacheControl says how long a proxy may reuse an allowed decision: a token's until its
// exp (the URL carries the token, so the decision is the same for everyone in the window), a
// public dataset's for a minute, an API key's not at all (it depends on the caller's Origin,
// Referer, User-Agent and address, and on the key's limits).
func (h *Handler) decisionCacheControl(e *tileaccess.DatasetEntry, use tileUse, creds *tileaccess.Credentials) string {
	switch {
	case use.dec.Key != nil:
		return "no-store"
	case e.Public:
		return "max-age=" + strconv.Itoa(publicDecisionMaxAge)
	}
	if creds.Token() {
		// Verified by now: exp is a canonical integer in the token's lifetime.
		if exp, err := strconv.ParseInt(creds.Exp, 10, 64); err == nil {
			if left := exp - h.Now().Unix(); left > 0 {
				return "max-age=" + strconv.FormatInt(left, 10)
			}
		}
	}
	return "no-store"
}
