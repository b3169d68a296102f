package server

import (
	"context"
	"net/http"
	"net/url"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/preview"
)

// PreviewDataset serves the viewer page of a dataset. The page is the same for everyone and
// says nothing about the dataset (not even whether it exists): its script fetches TileJSON and
// tiles with the credential the user gives, so it can never show more than that credential may.
func (s *Server) PreviewDataset(_ context.Context, req gen.PreviewDatasetRequestObject) (gen.PreviewDatasetResponseObject, error) {
	body, err := preview.Page(req.DatasetId, s.cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	return previewResponse{body: body, contentType: "text/html; charset=utf-8", csp: preview.CSP(originOf(s.cfg.PublicURL))}, nil
}

// PreviewAsset serves the page's script, style and the vendored MapLibre GL JS.
func (s *Server) PreviewAsset(_ context.Context, req gen.PreviewAssetRequestObject) (gen.PreviewAssetResponseObject, error) {
	body, contentType, ok := preview.Asset(req.File)
	if !ok {
		return nil, fail(http.StatusNotFound, "No such file")
	}
	return previewResponse{body: body, contentType: contentType, cache: "public, max-age=3600"}, nil
}

// originOf is the scheme://host[:port] of a URL, or "" when it has none.
func originOf(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// previewResponse writes a page or asset with its security headers.
type previewResponse struct {
	body             []byte
	contentType, csp string
	cache            string
}

func (p previewResponse) write(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", p.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if p.csp != "" {
		h.Set("Content-Security-Policy", p.csp)
		h.Set("Referrer-Policy", "strict-origin") // keys match the page by its origin: same-origin GETs carry no Origin header
		h.Set("X-Frame-Options", "DENY")
	}
	if p.cache == "" {
		p.cache = "no-cache"
	}
	h.Set("Cache-Control", p.cache)
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(p.body)
	return err
}

func (p previewResponse) VisitPreviewDatasetResponse(w http.ResponseWriter) error { return p.write(w) }
func (p previewResponse) VisitPreviewAssetResponse(w http.ResponseWriter) error   { return p.write(w) }
