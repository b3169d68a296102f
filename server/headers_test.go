package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// headerCase is one request of the header tests: what is sent, the status it must get, and
// whether the response is in the contract (then the validating transport checks it).
type headerCase struct {
	method, path string
	header       []string // name, value, …
	body         string
	status       int
	outside      bool // outside openapi.yaml (/docs, CORS preflights): not validated
}

// noRedirects answers a redirect as it is: the 308s are among the answers checked.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (hc headerCase) send(t *testing.T, validated, plain *http.Client, base string) *http.Response {
	t.Helper()
	var body io.Reader
	if hc.body != "" {
		body = strings.NewReader(hc.body)
	}
	req, err := http.NewRequest(hc.method, base+hc.path, body)
	must(t, err)
	if hc.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept-Encoding", "gzip")
	for i := 0; i+1 < len(hc.header); i += 2 {
		req.Header.Set(hc.header[i], hc.header[i+1])
	}
	c := validated
	if hc.outside {
		c = plain
	}
	res, err := c.Do(req)
	must(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != hc.status {
		t.Errorf("%s %s: status %d, want %d", hc.method, hc.path, res.StatusCode, hc.status)
	}
	return res
}

// Every answer carries X-Content-Type-Options: nosniff (issue #15 item 6): each kind of route,
// answered, refused and failed, tiles by key and by token on the tile dispatch's fast path and
// through echo, 404s, 405s, 308s, /docs and the preview page, through the real HTTP server.
func TestEveryAnswerNoSniff(t *testing.T) {
	db := testenv.Databases()[0]
	e := tlStart(t, db, server.Config{BodyLimit: 1 << 10})
	pub := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
	priv := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, pub.Id, tlVectorFile())
	e.uploadOK(t, priv.Id, tlVectorFile())
	key := e.key(t, e.c, nil, "")
	tok := e.token(t, e.c, priv.Id)
	auth := []string{"Authorization", "Bearer " + e.acct.Token}
	pubID, privID := pub.Id.String(), priv.Id.String()

	cases := []headerCase{
		{method: "GET", path: "/healthz", status: 200},
		{method: "HEAD", path: "/healthz", status: 200},
		{method: "GET", path: "/readyz", status: 200},
		{method: "GET", path: "/openapi.yaml", status: 200},
		{method: "GET", path: "/openapi.json", status: 200},
		{method: "GET", path: "/docs", status: 200, outside: true},
		{method: "HEAD", path: "/docs", status: 200, outside: true},
		{method: "GET", path: "/docs/swagger-ui-bundle.js", status: 200, outside: true},
		{method: "GET", path: "/docs/swagger-ui.css", status: 200, outside: true},
		{method: "GET", path: "/docs/docs.js", status: 200, outside: true},
		{method: "GET", path: "/docs/", status: 308, outside: true},
		{method: "GET", path: "/docs/oauth2-redirect.html", status: 404, outside: true},
		{method: "DELETE", path: "/docs", status: 405},
		// Management: answered, unauthenticated, invalid, too large, redirected, unknown.
		{method: "GET", path: "/v1/api_keys", header: auth, status: 200},
		{method: "GET", path: "/v1/api_keys", status: 401},
		{method: "POST", path: "/v1/api_keys", header: auth, body: `{"name": 5}`, status: 422},
		{method: "POST", path: "/v1/api_keys", header: auth, body: `{"name": "` + strings.Repeat("x", 2<<10) + `"}`, status: 413},
		{method: "GET", path: "/api/datasets/", header: auth, status: 200},
		{method: "GET", path: "/api/datasets", header: auth, status: 308},
		{method: "GET", path: "/api/datasets/" + privID + "/", header: auth, status: 200},
		{method: "GET", path: "/api/datasets/00000000-0000-4000-8000-000000000000/", header: auth, status: 404},
		{method: "PUT", path: "/api/datasets/" + privID + "/tiles/", status: 401},
		{method: "GET", path: "/api/audit/", header: auth, status: 200},
		{method: "POST", path: "/healthz", status: 405},
		{method: "GET", path: "/no/such/path", status: 404},
		// Tiles on the fast path: public, by key, by token, refused, absent, invalid.
		{method: "GET", path: tlTilePath(pub.Id, "1/1/1", "pbf", ""), status: 200},
		{method: "HEAD", path: tlTilePath(pub.Id, "1/1/1", "pbf", ""), status: 200},
		{method: "GET", path: tlTilePath(priv.Id, "1/1/1", "pbf", "key="+key.Token), status: 200},
		{method: "GET", path: tlTilePath(priv.Id, "1/1/1", "pbf", tok), status: 200},
		{method: "GET", path: tlTilePath(priv.Id, "1/1/1", "pbf", ""), status: 401},
		{method: "GET", path: tlTilePath(priv.Id, "1/1/1", "pbf", "key=unknown"), status: 403},
		{method: "GET", path: tlTilePath(pub.Id, "5/0/0", "pbf", ""), status: 204},
		{method: "GET", path: tlTilePath(pub.Id, "1/1/1", "png", ""), status: 404},
		{method: "GET", path: tlTilePath(pub.Id, "1/2/1", "pbf", ""), status: 400},
		{method: "GET", path: "/api/tiles/" + pubID + "/1/1/%31.pbf", status: 404},
		{method: "GET", path: "/api/tiles/data." + pubID + "/1/1/1.pbf", status: 200}, // GeoLens's URL
		{method: "OPTIONS", path: tlTilePath(priv.Id, "1/1/1", "pbf", ""), status: 204, outside: true},
		{method: "POST", path: tlTilePath(pub.Id, "1/1/1", "pbf", ""), status: 405},
		// TileJSON, tokens, forward auth, the preview.
		{method: "GET", path: "/api/tiles/" + privID + "/tilejson.json?key=" + key.Token, status: 200},
		{method: "GET", path: "/api/tiles/" + privID + "/tilejson.json", status: 401},
		{method: "GET", path: "/api/tiles/token/" + privID + "/", header: auth, status: 200},
		{method: "POST", path: "/api/tiles/tokens/", header: auth, body: `{"dataset_ids": ["` + privID + `"]}`, status: 200},
		{method: "OPTIONS", path: "/api/tiles/tokens/", status: 204, outside: true},
		{method: "GET", path: "/api/tiles/auth", header: []string{"X-Original-URI", tlTilePath(priv.Id, "1/1/1", "pbf", tok)}, status: 200},
		{method: "GET", path: "/api/tiles/auth", status: 400},
		{method: "GET", path: "/preview/" + privID, status: 200},
		{method: "GET", path: "/preview/assets/preview.js", status: 200},
		{method: "GET", path: "/preview/assets/nothing.js", status: 404},
	}
	validated := &http.Client{Transport: testenv.NewValidatingTransport(t, http.DefaultTransport), CheckRedirect: noRedirects, Timeout: 30 * time.Second}
	plain := &http.Client{CheckRedirect: noRedirects, Timeout: 30 * time.Second}
	statuses := map[int]bool{}
	for _, hc := range cases {
		res := hc.send(t, validated, plain, e.URL)
		statuses[res.StatusCode] = true
		if got := res.Header.Values("X-Content-Type-Options"); !slices.Equal(got, []string{"nosniff"}) {
			t.Errorf("%s %s (%d): X-Content-Type-Options %q, want nosniff", hc.method, hc.path, res.StatusCode, got)
		}
	}
	// The walk covered what it claims to.
	for _, s := range []int{200, 204, 308, 400, 401, 403, 404, 405, 413, 422} {
		if !statuses[s] {
			t.Errorf("no answer with status %d was checked", s)
		}
	}

	// The tile requests through echo alone (without the dispatch's fast path) too.
	echoOnly := server.EchoOnly(e.Server.Handler())
	for _, hc := range cases {
		if !strings.HasPrefix(hc.path, "/api/tiles/") {
			continue
		}
		r := httptest.NewRequest(hc.method, hc.path, nil)
		for i := 0; i+1 < len(hc.header); i += 2 {
			r.Header.Set(hc.header[i], hc.header[i+1])
		}
		w := httptest.NewRecorder()
		echoOnly.ServeHTTP(w, r)
		if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("echo only: %s %s (%d): X-Content-Type-Options %q", hc.method, hc.path, w.Code, got)
		}
	}
}

// A 405 says in Allow which methods its path does accept (RFC 9110 §15.5.6): the contract's
// operations on the path, HEAD wherever GET is, OPTIONS where a CORS preflight is answered. The
// same through the tile dispatch and echo alone; and the methods listed are really answered.
func TestMethodNotAllowedSaysAllow(t *testing.T) {
	db := testenv.Databases()[0]
	e := tlStart(t, db, server.Config{})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
	e.uploadOK(t, d.Id, tlVectorFile())
	key := e.key(t, e.c, nil, "")
	id := d.Id.String()
	for _, tt := range []struct {
		method, path, allow string
	}{
		{"POST", "/healthz", "GET, HEAD"},
		{"DELETE", "/openapi.json", "GET, HEAD"},
		{"PUT", "/v1/api_keys", "GET, HEAD, POST"},
		{"POST", "/v1/api_keys/" + key.Id.String(), "GET, HEAD, DELETE"},
		{"GET", "/v1/api_keys/" + key.Id.String() + "/change_settings", "POST"},
		{"DELETE", "/api/datasets/", "GET, HEAD, POST"},
		{"PUT", "/api/datasets/" + id + "/", "GET, HEAD, PATCH, DELETE"},
		{"POST", "/api/datasets/" + id + "/tiles/", "PUT"},
		{"DELETE", "/api/audit/", "GET, HEAD"},
		{"DELETE", "/api/tiles/token/" + id + "/", "GET, HEAD, OPTIONS"},
		{"GET", "/api/tiles/tokens/", "POST, OPTIONS"},
		{"POST", tlTilePath(d.Id, "1/1/1", "pbf", ""), "GET, HEAD, OPTIONS"},
		{"DELETE", tlTilePath(d.Id, "1/1/1", "pbf", ""), "GET, HEAD, OPTIONS"},
		{"PUT", "/api/tiles/" + id + "/tilejson.json", "GET, HEAD, OPTIONS"},
		{"POST", "/api/tiles/auth", "GET, HEAD, OPTIONS"},
		{"POST", "/preview/" + id, "GET, HEAD"},
		{"DELETE", "/docs", "GET, HEAD"},
		{"POST", "/docs/swagger-ui.css", "GET, HEAD"},
		{"OPTIONS", "/docs", "GET, HEAD"},
	} {
		for name, h := range map[string]http.Handler{"server": e.Server.Handler(), "echo only": server.EchoOnly(e.Server.Handler())} {
			r := httptest.NewRequest(tt.method, tt.path, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != tt.allow {
				t.Errorf("%s: %s %s: %d, Allow %q; want 405, Allow %q", name, tt.method, tt.path, w.Code, w.Header().Get("Allow"), tt.allow)
			}
		}
		// Every method listed is answered: not 405 (nor 404).
		for _, m := range strings.Split(tt.allow, ", ") {
			r := httptest.NewRequest(m, tt.path, nil)
			w := httptest.NewRecorder()
			e.Server.Handler().ServeHTTP(w, r)
			if w.Code == http.StatusMethodNotAllowed || w.Code == http.StatusNotFound {
				t.Errorf("%s %s, listed in Allow, answered %d", m, tt.path, w.Code)
			}
		}
	}
	// Through the real server and the validating client: a 405 the contract accepts.
	res := headerCase{method: "POST", path: "/readyz", status: 405}.send(t, e.hc, nil, e.URL)
	if got := res.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("POST /readyz: Allow %q", got)
	}
}

// /docs is an HTML page with a charset, a Content-Security-Policy that allows what the page
// loads (from tilegate itself) and nothing else, and no framing; every file it loads is served
// with its type, the same headers and nosniff; nothing from a CDN.
func TestDocsPageHeaders(t *testing.T) {
	db := testenv.Databases()[0]
	env := testenv.Start(t, db, server.Config{})
	get := func(path string) (*http.Response, string) {
		t.Helper()
		res, err := http.Get(env.URL + path)
		must(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		must(t, err)
		return res, string(b)
	}
	res, page := get("/docs")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/docs: %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	csp := parseCSP(res.Header.Get("Content-Security-Policy"))
	for directive, want := range map[string]string{
		"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
		"connect-src": "'self'", "frame-ancestors": "'none'", "base-uri": "'none'", "form-action": "'none'",
	} {
		if csp[directive] != want {
			t.Errorf("CSP %s %q, want %q (whole: %q)", directive, csp[directive], want, res.Header.Get("Content-Security-Policy"))
		}
	}
	if len(csp) != 8 {
		t.Errorf("CSP has directives beyond the eight expected: %v", csp)
	}
	if res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("/docs: X-Frame-Options %q, X-Content-Type-Options %q", res.Header.Get("X-Frame-Options"), res.Header.Get("X-Content-Type-Options"))
	}
	// No inline script or style, no attribute handlers: the CSP would block them.
	if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]|<style|\son[a-z]+=|style=`).MatchString(page) {
		t.Errorf("/docs has inline script or style:\n%s", page)
	}
	// What the page loads: every src/href, each from tilegate, each served with its type.
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("the page loads %d files: %s", len(refs), page)
	}
	types := map[string][]string{ // (the bundle's type comes from the system's MIME table)
		".js": {"text/javascript; charset=utf-8", "application/javascript"}, ".css": {"text/css; charset=utf-8"}, ".png": {"image/png"},
	}
	for _, ref := range refs {
		u := ref[1]
		if !strings.HasPrefix(u, "/docs/") {
			t.Errorf("/docs loads %q, not from tilegate's /docs/", u)
			continue
		}
		res, body := get(u)
		ext := u[strings.LastIndexByte(u, '.'):]
		if res.StatusCode != 200 || !slices.Contains(types[ext], res.Header.Get("Content-Type")) || len(body) == 0 {
			t.Errorf("%s: %d, Content-Type %q, %d bytes", u, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s without nosniff or CSP", u)
		}
	}
	// The contract the page shows, fetched from the origin the CSP allows.
	if !strings.Contains(string(docsScript(t, env.URL)), `"/openapi.json"`) {
		t.Errorf("docs.js does not load /openapi.json")
	}
}

func docsScript(t *testing.T, base string) []byte {
	t.Helper()
	res, err := http.Get(base + "/docs/docs.js")
	must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	must(t, err)
	return b
}

// parseCSP splits a Content-Security-Policy into its directives' values.
func parseCSP(h string) map[string]string {
	out := map[string]string{}
	for _, d := range strings.Split(h, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		if name != "" {
			out[name] = strings.TrimSpace(value)
		}
	}
	return out
}

// /docs renders in a real browser under its CSP: Swagger UI shows the contract's operations
// (one opened by a deep link), and Chromium reports no CSP violation. The
// same page served with a stricter policy does report one: the check can see a violation.
func TestDocsPageInBrowser(t *testing.T) {
	bin := chromium(t)
	db := testenv.Databases()[0]
	env := testenv.Start(t, db, server.Config{})

	render := func(t *testing.T, base string) (dom, console string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
			"--no-first-run", "--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0",
			"--virtual-time-budget=15000", "--dump-dom", base+"/docs#/API_keys/createAPIKey")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		// Console messages (CSP violations among them) are logged as INFO:CONSOLE lines.
		var lines []string
		for line := range strings.Lines(stderr.String()) {
			if strings.Contains(line, ":CONSOLE") {
				lines = append(lines, line)
			}
		}
		return string(out), strings.Join(lines, "")
	}

	dom, console := render(t, env.URL)
	if strings.Contains(console, "Content Security Policy") {
		t.Errorf("/docs violates its own CSP:\n%s", console)
	}
	for _, want := range []string{`id="operations-API_keys-createAPIKey"`, `id="operations-Tiles-getTile"`, `id="operations-Datasets-uploadTiles"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("Swagger UI did not render %s; console:\n%s\nDOM: %.2000s", want, console, dom)
		}
	}

	// The control: the same server with the page's styles forbidden must be reported.
	strict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		env.Server.Handler().ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if csp := w.Header().Get("Content-Security-Policy"); csp != "" {
			w.Header().Set("Content-Security-Policy", strings.Replace(csp, "style-src 'self'", "style-src 'none'", 1))
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	defer strict.Close()
	if _, console := render(t, strict.URL); !strings.Contains(console, "Content Security Policy") {
		t.Errorf("a page whose style sheet the CSP forbids reported no violation: the check is blind\n%s", console)
	}
}
