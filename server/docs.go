package server

import (
	_ "embed"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/swaggest/swgui/v5emb"
)

// The API documentation: Swagger UI (vendored in the binary by swaggest/swgui, no CDN) at /docs,
// started by tilegate's own page and script so that the page needs no inline script or style
// and its Content-Security-Policy can allow exactly what it loads: the files below, from
// tilegate itself, and /openapi.json and "Try it out" calls to tilegate itself.

const docsPath = "/docs"

var (
	//go:embed docsui/index.html
	docsPage []byte
	//go:embed docsui/docs.js
	docsScript []byte
)

// docsCSP allows what the page loads and nothing else: scripts and the style sheet from
// tilegate ('self'), the images swagger-ui.css holds as data: URLs, fetches of the contract and
// of "Try it out" to tilegate ('self'). No framing (against clickjacking "Try it out" with the
// visitor's token), no <base>, no form posts.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// docsAssets are the files the page loads, and the only ones served under /docs/: swgui's
// file server holds more (an OAuth2 redirect page with an inline script, for one) that this
// page never uses.
var docsAssets = map[string]bool{
	"swagger-ui.css": true, "swagger-ui-bundle.js": true, "favicon-16x16.png": true, "favicon-32x32.png": true,
}

// docsHandler serves /docs and /docs/*.
func docsHandler() echo.HandlerFunc {
	swagger := v5emb.New("tilegate API", "/openapi.json", docsPath) // serves swgui's files under /docs/
	return func(c echo.Context) error {
		r := c.Request()
		h := c.Response().Header()
		h.Set("Content-Security-Policy", docsCSP)
		h.Set("X-Frame-Options", "DENY") // frame-ancestors' predecessor, for older browsers
		h.Set("Referrer-Policy", "no-referrer")
		file, sub := strings.CutPrefix(r.URL.Path, docsPath+"/")
		switch {
		case !sub:
			h.Set("Cache-Control", "no-cache")
			return c.Blob(http.StatusOK, "text/html; charset=utf-8", docsPage)
		case file == "":
			return redirectSpelling(c, docsPath) // one URL for the page, as for every path
		case file == "docs.js":
			h.Set("Cache-Control", "no-cache")
			return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", docsScript)
		case docsAssets[file]:
			h.Set("Cache-Control", "public, max-age=3600")
			swagger.ServeHTTP(c.Response(), r)
			return nil
		}
		return detail(c, http.StatusNotFound, "Not Found")
	}
}

func isDocsPath(p string) bool { return p == docsPath || strings.HasPrefix(p, docsPath+"/") }
