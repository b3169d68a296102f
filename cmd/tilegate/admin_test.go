package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/internal/testenv"
)

// adminAddr is the admin listener's address from the server's log ("" when it logged none).
func (p *serverProc) adminAddr() string {
	for _, line := range p.logsWith("admin listening") {
		var rec struct{ Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Addr != "" {
			return rec.Addr
		}
	}
	return ""
}

// TestAdminListener: `serve` answers /metrics and /debug/pprof/ on TILEGATE_ADMIN_ADDR only,
// never the command line, and an empty TILEGATE_ADMIN_ADDR starts no admin listener.
func TestAdminListener(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "t.db")
	p := startServer(t, dbURL)
	admin := p.adminAddr()
	if admin == "" || admin == p.addr {
		t.Fatalf("admin listener address %q (public %s); log:\n%s", admin, p.addr, p.stderr.String())
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	get := func(url string) (int, string) {
		t.Helper()
		res, err := hc.Get(url)
		must(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		must(t, err)
		return res.StatusCode, string(b)
	}

	// /metrics, scraped and parsed: three /healthz more are three more requests of healthz.
	before := testenv.ScrapeMetrics(t, "http://"+admin+"/metrics")
	for range 3 {
		if code, body := get(p.url + "/healthz"); code != 200 {
			t.Fatalf("/healthz = %d %s", code, body)
		}
	}
	after := testenv.ScrapeMetrics(t, "http://"+admin+"/metrics")
	series := []string{"operation", "healthz", "status", "200"}
	if got := after.Value("tilegate_http_requests_total", series...) - before.Value("tilegate_http_requests_total", series...); got != 3 {
		t.Errorf("tilegate_http_requests_total{healthz,200} grew by %v, want 3", got)
	}
	if after.Type("go_sql_open_connections") != "GAUGE" || after.Type("tilegate_build_info") != "GAUGE" {
		t.Errorf("pool statistics or build info missing: %v %v", after["go_sql_open_connections"], after["tilegate_build_info"])
	}

	// nosniff on the admin listener's answers too (issue #15 item 6), and Allow on its 405.
	for _, m := range []string{"GET", "POST"} {
		req, err := http.NewRequest(m, "http://"+admin+"/metrics", nil)
		must(t, err)
		res, err := hc.Do(req)
		must(t, err)
		res.Body.Close()
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("admin %s /metrics (%d): X-Content-Type-Options %q", m, res.StatusCode, res.Header.Get("X-Content-Type-Options"))
		}
		if m == "POST" && (res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD") {
			t.Errorf("admin POST /metrics: %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
		}
	}

	// pprof on the admin listener: the index and a named profile; not the command line.
	if code, body := get("http://" + admin + "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("admin /debug/pprof/ = %d %.200s", code, body)
	}
	if code, body := get("http://" + admin + "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("admin /debug/pprof/goroutine = %d %.200s", code, body)
	}
	if code, _ := get("http://" + admin + "/debug/pprof/cmdline"); code != 404 {
		t.Errorf("admin /debug/pprof/cmdline = %d, want 404 (the command line may hold a password)", code)
	}
	// Neither on the public listener.
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if code, _ := get(p.url + path); code != 404 {
			t.Errorf("public %s = %d, want 404", path, code)
		}
	}

	// Empty: disabled.
	off := startServer(t, "sqlite:"+filepath.Join(t.TempDir(), "off.db"), "TILEGATE_ADMIN_ADDR=")
	if a := off.adminAddr(); a != "" {
		t.Errorf("TILEGATE_ADMIN_ADDR= started an admin listener on %s", a)
	}
	if len(off.logsWith("admin listener disabled (TILEGATE_ADMIN_ADDR is empty)")) != 1 {
		t.Errorf("no line saying the admin listener is disabled; log:\n%s", off.stderr.String())
	}
}
