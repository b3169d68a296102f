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
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// chromium finds a Chromium binary; .ci/run installs Debian's package, so CI always has one.
func chromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is required in CI (.ci/run installs Debian's chromium)")
	}
	t.Skip("no Chromium on this machine: apt-get install chromium")
	return ""
}

// A web page on another origin loads a private dataset's tiles in a real browser with an API key
// that lists the page's origin, and is refused — with the reason readable by the page — with a key
// that does not. This is what a MapLibre map does: fetch() tiles and TileJSON cross-origin.
func TestBrowserOnAnotherOrigin(t *testing.T) {
	bin := chromium(t)
	db := testenv.Databases()[0]
	e := tlStart(t, db, server.Config{})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, d.Id, tlVectorFile())

	// The page is written before its server starts serving it (the browser is another process:
	// nothing else orders the two).
	var page string
	site := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	defer site.Close()
	siteURL := "http://" + site.Listener.Addr().String()
	listed := e.key(t, e.c, []string{siteURL}, "")
	unlisted := e.key(t, e.c, []string{"https://maps.example.com"}, "")

	tile := func(key string) string { return e.URL + tlTilePath(d.Id, "0/0/0", "pbf", "key="+url.QueryEscape(key)) }
	probes := map[string]string{
		"listed":    tile(listed.Token),
		"unlisted":  tile(unlisted.Token),
		"tilejson":  e.URL + "/api/tiles/" + d.Id.String() + "/tilejson.json?key=" + url.QueryEscape(listed.Token),
		"preflight": tile(listed.Token), // sent with If-None-Match, which needs a CORS preflight
	}
	js, _ := json.Marshal(probes)
	page = `<!doctype html><html><body><pre id="out">pending</pre><script>
const probes = ` + string(js) + `;
(async () => {
  const out = {};
  for (const [name, url] of Object.entries(probes)) {
    try {
      const init = name === "preflight" ? {headers: {"If-None-Match": "\"stale\""}} : {};
      const r = await fetch(url, init);
      const body = await r.arrayBuffer();
      out[name] = {status: r.status, reason: r.headers.get("X-Tilegate-Reason"),
        type: r.headers.get("Content-Type"), bytes: body.byteLength,
        text: name === "tilejson" ? new TextDecoder().decode(body) : ""};
    } catch (err) {
      out[name] = {error: String(err)};
    }
  }
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script></body></html>`
	site.Start()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=15000", "--dump-dom", siteURL+"/")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no results in the page: %.500s", out)
	}
	var got map[string]struct {
		Status int    `json:"status"`
		Reason string `json:"reason"`
		Type   string `json:"type"`
		Bytes  int    `json:"bytes"`
		Text   string `json:"text"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &got); err != nil {
		t.Fatalf("results %q: %v", m[1], err)
	}
	if r := got["listed"]; r.Status != 200 || r.Type != "application/vnd.mapbox-vector-tile" || r.Bytes == 0 {
		t.Errorf("listed origin: %+v", r)
	}
	if r := got["unlisted"]; r.Status != 403 || r.Reason != "origin" {
		t.Errorf("unlisted origin: %+v (want 403 with the reason readable by the page)", r)
	}
	if r := got["preflight"]; r.Status != 200 {
		t.Errorf("request needing a preflight: %+v", r)
	}
	r := got["tilejson"]
	if r.Status != 200 || !strings.Contains(r.Text, `"tilejson":"3.0.0"`) || !strings.Contains(r.Text, "key="+listed.Token) {
		t.Errorf("tilejson: %+v", r)
	}
}
