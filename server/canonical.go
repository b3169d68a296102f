package server

import (
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/tileurl"
)

// otherSpelling is the canonical URL of a request that matches no operation as spelled but does
// with its trailing slash added or removed (the seed paths mix both: `…/change_settings` without,
// `/api/datasets/` with): ok is false when that spelling matches nothing either. The query string
// is kept. Clients get 308, which keeps the method and body.
func (s *Server) otherSpelling(r *http.Request) (string, bool) {
	p := r.URL.Path
	switch {
	case p == "/" || p == "":
		return "", false
	case strings.HasSuffix(p, "/"):
		p = strings.TrimSuffix(p, "/")
	default:
		p += "/"
	}
	probe := r.Clone(r.Context())
	probe.URL.Path, probe.URL.RawPath = p, ""
	if _, _, err := s.router.FindRoute(probe); err != nil {
		return "", false
	}
	if r.URL.RawQuery != "" {
		p += "?" + r.URL.RawQuery
	}
	return p, true
}

// redirectSpelling answers 308 to the canonical spelling of the request's path.
func redirectSpelling(c echo.Context, to string) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Redirect(http.StatusPermanentRedirect, to)
}

// geolensAlias serves GeoLens's vector tile URL, /api/tiles/data.<table>/{z}/{x}/{y}.pbf (its
// front end builds it from a dataset's table name; a single-tenant GeoLens scope is that same
// name), as the canonical /api/tiles/<dataset_id>/{z}/{x}/{y}.pbf: a tilegate dataset's "table"
// is its id, and a tile token's scope (<account>:<dataset>:<version>) names it too. The token is
// then verified against the dataset as on the canonical URL, so the alias grants nothing more.
type geolensAlias struct{ next http.Handler }

const geolensPrefix = "/api/tiles/data."

func (a geolensAlias) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, geolensPrefix); ok {
		if table, tail, ok := strings.Cut(rest, "/"); ok {
			if id, ok := aliasDataset(table); ok {
				r.URL.Path, r.URL.RawPath = tileurl.Prefix+id.String()+"/"+tail, ""
			}
		}
	}
	a.next.ServeHTTP(w, r)
}

// aliasDataset reads the dataset a GeoLens table name stands for: a dataset id, or a tile
// token's scope whose middle part is one.
func aliasDataset(table string) (uuid.UUID, bool) {
	if id, err := uuid.Parse(table); err == nil {
		return id, true
	}
	parts := strings.Split(table, ":")
	if len(parts) != 3 {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(parts[1])
	return id, err == nil
}
