package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// MapLibre GL JS (the version the preview page vendors) in headless Chromium, on a page of
// another origin, shows two datasets' attributions: one with a link, and one stored before the
// attribution rule with an onerror script in it. The link renders as a link; the script's markup
// shows as text and never runs.
func TestAttributionInMapLibre(t *testing.T) {
	bin := chromium(t)
	db := testenv.Databases()[0]
	e := tlStart(t, db, server.Config{})
	ctx := context.Background()
	noAttribution := tlVectorFile()
	noAttribution.Attribution = ""

	linked := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, linked.Id, noAttribution)
	link := `© <a href="https://example.com/osm">Example Data</a>`
	pr, err := e.c.UpdateDatasetWithResponse(ctx, linked.Id, gen.DatasetUpdate{Attribution: nullable.NewNullableWithValue(link)})
	must(t, err)
	wantStatus(t, pr.StatusCode(), 200, pr.Body)

	old := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, old.Id, noAttribution)
	// Written past the API, as a version before the rule could; nothing has read it yet.
	must(t, db.Store.DB().Exec("UPDATE datasets SET attribution = ? WHERE id = ?", xssAttribution, old.Id.String()).Error)

	var page string
	vendor := filepath.Join("..", "preview", "assets", "maplibre")
	site := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, page)
		case "/maplibre-gl.mjs", "/maplibre-gl-worker.mjs", "/maplibre-gl.css":
			b, err := os.ReadFile(filepath.Join(vendor, r.URL.Path[1:]))
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			if strings.HasSuffix(r.URL.Path, ".css") {
				w.Header().Set("Content-Type", "text/css")
			} else {
				w.Header().Set("Content-Type", "text/javascript")
			}
			_, _ = w.Write(b)
		default:
			http.NotFound(w, r)
		}
	}))
	defer site.Close()
	siteURL := "http://" + site.Listener.Addr().String()
	key := e.key(t, e.c, []string{siteURL}, "")
	tj := func(id fmt.Stringer) string {
		return e.URL + "/api/tiles/" + id.String() + "/tilejson.json?key=" + url.QueryEscape(key.Token)
	}
	style, _ := json.Marshal(map[string]any{
		"version": 8,
		"sources": map[string]any{
			"linked": map[string]any{"type": "vector", "url": tj(linked.Id)},
			"old":    map[string]any{"type": "vector", "url": tj(old.Id)},
		},
		"layers": []any{
			map[string]any{"id": "bg", "type": "background", "paint": map[string]any{"background-color": "#fff"}},
			map[string]any{"id": "a", "type": "line", "source": "linked", "source-layer": "roads"},
			map[string]any{"id": "b", "type": "line", "source": "old", "source-layer": "roads"},
		},
	})
	page = `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/maplibre-gl.css"><style>#map{width:400px;height:300px}</style></head>
<body><div id="map"></div><pre id="out">pending</pre><script type="module">
import * as maplibregl from "/maplibre-gl.mjs";
const out = document.getElementById("out");
const report = (extra) => {
  const inner = document.querySelector(".maplibregl-ctrl-attrib-inner");
  out.textContent = JSON.stringify(Object.assign({
    pwned: window.pwned === 1,
    html: inner ? inner.innerHTML : null,
    text: inner ? inner.textContent : null,
    links: inner ? Array.from(inner.querySelectorAll("a")).map((a) => a.href) : [],
    imgs: document.querySelectorAll("#map img").length,
  }, extra));
};
try {
  const map = new maplibregl.Map({container: "map", style: ` + string(style) + `, center: [0, 0], zoom: 1,
    attributionControl: {compact: false}, fadeDuration: 0});
  map.on("error", (e) => report({error: String(e.error && e.error.message || e)}));
  let reported = false;
  map.on("idle", () => { if (!reported) { reported = true; setTimeout(() => report({}), 200); } });
  setTimeout(() => { if (!reported) report({timeout: true}); }, 12000);
} catch (err) {
  report({error: String(err)});
}
</script></body></html>`
	site.Start()

	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
		"--enable-unsafe-swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=20000", "--dump-dom", siteURL+"/")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no results in the page: %.500s", b)
	}
	var got struct {
		Pwned   bool
		HTML    *string
		Text    *string
		Links   []string
		Imgs    int
		Error   string
		Timeout bool
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &got); err != nil {
		t.Fatalf("results %q: %v", m[1], err)
	}
	if got.Error != "" || got.HTML == nil {
		t.Fatalf("the map did not show its attribution: %s", m[1])
	}
	if got.Pwned || got.Imgs != 0 {
		t.Errorf("the stored attribution's script ran or its element was built: %s", m[1])
	}
	if !strings.Contains(*got.Text, `<img src=x onerror="window.pwned=1">`) {
		t.Errorf("the old attribution is not shown as text: %s", m[1])
	}
	if len(got.Links) != 1 || got.Links[0] != "https://example.com/osm" || !strings.Contains(*got.Text, "Example Data") {
		t.Errorf("the link attribution: %s", m[1])
	}
}
