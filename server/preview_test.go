package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// The preview page is the same shell for every dataset id: it carries no data (not the name of
// a private dataset, not whether it exists) and a strict CSP; its assets are embedded.
func TestPreviewPage(t *testing.T) {
	db := testenv.Databases()[0]
	env := testenv.Start(t, db, server.Config{})
	acct := env.NewAccount(t)
	c := env.Client(t, acct.Token)
	d := createDataset(t, c, gen.DatasetCreate{Name: "secret-name-7", Kind: gen.DatasetKindVector})
	hc := env.HTTPClient(t)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		res, err := hc.Get(env.URL + path)
		must(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		must(t, err)
		return res, string(b)
	}

	for _, id := range []uuid.UUID{d.Id, uuid.New()} {
		res, body := get("/preview/" + id.String())
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("preview: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
		if !strings.Contains(body, `data-dataset="`+id.String()+`"`) || strings.Contains(body, "secret-name-7") {
			t.Errorf("page of %s: %s", id, body)
		}
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "worker-src 'self' blob:", "frame-ancestors 'none'", "connect-src 'self' " + env.URL} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") || strings.Contains(body, "<script>") {
			t.Errorf("inline script or unsafe CSP: %q", csp)
		}
	}
	if res, _ := get("/preview/not-a-uuid"); res.StatusCode != 422 {
		t.Errorf("bad id: %d", res.StatusCode)
	}

	for file, want := range map[string]string{"maplibre-gl.mjs": "text/javascript", "maplibre-gl-worker.mjs": "text/javascript",
		"maplibre-gl.css": "text/css", "preview.js": "text/javascript", "preview.css": "text/css", "LICENSE.txt": "text/plain"} {
		res, body := get("/preview/assets/" + file)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != want || len(body) == 0 {
			t.Errorf("%s: %d %s %d bytes", file, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
	}
	for _, bad := range []string{"nope.js", "..%2Fpreview.go", ".hidden", "maplibre%2Fmaplibre-gl.mjs"} {
		if res, _ := get("/preview/assets/" + bad); res.StatusCode != 404 {
			t.Errorf("asset %s: %d, want 404", bad, res.StatusCode)
		}
	}
}
