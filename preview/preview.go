// Package preview is the dataset viewer tilegate serves at /preview/{dataset_id}: a page with
// MapLibre GL JS (vendored from npm at the version sdk/typescript pins, embedded, no CDN) that
// shows a dataset with an API key or tile token the user gives, its bounds, zoom range and
// layers, and tilegate's reason when it refuses. The page holds no data and no credential: its
// script loads TileJSON and tiles with what the user types, under the rules every client meets.
package preview

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"path"
	"strings"

	"github.com/google/uuid"
)

//go:embed assets
var files embed.FS

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="strict-origin">
<title>tilegate preview · {{.ID}}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{{.Assets}}/maplibre-gl.css">
<link rel="stylesheet" href="{{.Assets}}/preview.css">
</head><body data-dataset="{{.ID}}" data-public-url="{{.PublicURL}}">
<form id="credential" autocomplete="off">
  <label>API key <input id="key" name="key" type="password" spellcheck="false"></label>
  <label>or tile token <input id="token" name="token" placeholder="sig=…&amp;exp=…&amp;scope=… or a token URL" spellcheck="false"></label>
  <button type="submit">Show</button>
</form>
<div id="status" role="status"></div>
<dl id="info" hidden>
  <dt>Dataset</dt><dd id="name"></dd>
  <dt>Bounds</dt><dd id="bounds"></dd>
  <dt>Zoom</dt><dd id="zoom"></dd>
  <dt>Layers</dt><dd><ul id="layers"></ul></dd>
</dl>
<div id="map"></div>
<script type="module" src="{{.Assets}}/preview.js"></script>
</body></html>
`))

// AssetsPath is where the page's assets are served.
const AssetsPath = "/preview/assets"

// Page renders the page of a dataset. publicURL is where tilegate serves (TILEGATE_PUBLIC_URL):
// the page asks TileJSON there.
func Page(id uuid.UUID, publicURL string) ([]byte, error) {
	var b bytes.Buffer
	err := page.Execute(&b, struct{ ID, PublicURL, Assets string }{id.String(), publicURL, AssetsPath})
	return b.Bytes(), err
}

// CSP is the page's Content-Security-Policy: scripts, styles and MapLibre's worker from tilegate
// only (MapLibre starts its worker from a blob: URL that imports the worker file), data only
// from connectOrigin (tilegate's public origin), nothing inline, no framing, no forms elsewhere.
func CSP(connectOrigin string) string {
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data: blob:",
		"connect-src 'self' " + connectOrigin,
		"worker-src 'self' blob:",
		"child-src blob:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

// Asset returns an asset's bytes and content type, or ok false when there is no such file.
func Asset(name string) (body []byte, contentType string, ok bool) {
	if name == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		return nil, "", false
	}
	dir := "assets"
	if strings.HasPrefix(name, "maplibre-gl") || name == "LICENSE.txt" {
		dir = "assets/maplibre"
	}
	b, err := fs.ReadFile(files, path.Join(dir, name))
	if err != nil {
		return nil, "", false
	}
	switch path.Ext(name) {
	case ".js", ".mjs":
		contentType = "text/javascript"
	case ".css":
		contentType = "text/css"
	default:
		contentType = "text/plain"
	}
	return b, contentType, true
}
