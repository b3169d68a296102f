// The edge token check (tilegate_token.js with nginx.conf) run in a real nginx with njs, in front
// of an origin that counts what reaches it.
package edge_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/internal/testnginx"
	"github.com/tilegate/tilegate/tiletoken"
)

func TestEdgeChecksTokens(t *testing.T) {
	if testnginx.JSModule() == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx's njs module (libnginx-mod-http-js) is required in CI")
		}
		t.Skip("nginx's njs module (libnginx-mod-http-js) is not installed")
	}
	var originHits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originHits.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("tile"))
	}))
	defer origin.Close()

	current := tiletoken.Key{ID: "k2", Secret: []byte("0123456789abcdef0123456789abcdef")}
	previous := tiletoken.Key{ID: "k1", Secret: []byte("fedcba9876543210fedcba9876543210")}
	keys := tiletoken.EncodeKeys([]tiletoken.Key{current, previous})
	conf, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs(".")
	cache := t.TempDir()
	httpConf := strings.NewReplacer(
		"/etc/nginx/njs/", dir+"/",
		"k1:REPLACE_WITH_HEX_SECRET", keys,
		"127.0.0.1:8080", strings.TrimPrefix(origin.URL, "http://"),
		"listen 80;", "listen {{LISTEN}};",
		"/var/cache/nginx/tiles", cache,
	).Replace(string(conf))
	edge := testnginx.StartWith(t, testnginx.JSModule(), httpConf)

	dataset := uuid.New()
	scope := tiletoken.Scope(uuid.NewString(), dataset.String(), 3)
	signer := func(k tiletoken.Key) *tiletoken.Signer {
		s, err := tiletoken.New([]tiletoken.Key{k})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tok := signer(current).Sign(scope)
	old := signer(previous).Sign(scope)
	past := time.Now().Add(-time.Minute).Unix()
	tileURL := func(ds uuid.UUID, q string) string {
		return fmt.Sprintf("%s/api/tiles/%s/3/2/1.pbf%s", edge.URL, ds, q)
	}
	query := func(scope, sig string, exp int64) string {
		return fmt.Sprintf("?sig=%s&exp=%d&scope=%s", sig, exp, scope)
	}
	tampered := []byte(tok.Sig)
	tampered[10] ^= 1
	if tampered[10] > 'f' || (tampered[10] > '9' && tampered[10] < 'a') {
		tampered[10] = '0'
	}
	otherScope := tiletoken.Scope(uuid.NewString(), uuid.NewString(), 3)
	cases := []struct {
		name       string
		url        string
		status     int
		reason     string
		reachesOrg bool
	}{
		{"valid token", tileURL(dataset, query(tok.Scope, tok.Sig, tok.Exp)), 200, "", true},
		{"previous signing key", tileURL(dataset, query(old.Scope, old.Sig, old.Exp)), 200, "", true},
		{"no token: tilegate decides", tileURL(dataset, "?key=abc"), 200, "", true},
		{"tampered signature", tileURL(dataset, query(tok.Scope, string(tampered), tok.Exp)), 403, "bad_signature", false},
		{"other exp", tileURL(dataset, query(tok.Scope, tok.Sig, tok.Exp-1)), 403, "bad_signature", false},
		{"expired", tileURL(dataset, query(scope, signer(current).SignAt(scope, past), past)), 403, "expired", false},
		{"too far ahead", tileURL(dataset, query(scope, signer(current).SignAt(scope, tok.Exp+86400), tok.Exp+86400)), 403, "expired", false},
		{"token of another dataset", tileURL(dataset, query(otherScope, signer(current).SignAt(otherScope, tok.Exp), tok.Exp)), 403, "scope", false},
		{"sig not hex", tileURL(dataset, query(tok.Scope, strings.ToUpper(tok.Sig), tok.Exp)), 401, "malformed", false},
		{"exp missing", tileURL(dataset, fmt.Sprintf("?sig=%s&scope=%s", tok.Sig, tok.Scope)), 401, "malformed", false},
		{"sig repeated", tileURL(dataset, query(tok.Scope, tok.Sig, tok.Exp)+"&sig="+tok.Sig), 401, "malformed", false},
	}
	for _, c := range cases {
		before := originHits.Load()
		resp, err := get(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		reached := originHits.Load() > before
		if resp.StatusCode != c.status || resp.Header.Get("X-Tilegate-Reason") != c.reason || reached != c.reachesOrg {
			t.Errorf("%s: %d reason %q reached origin %v; want %d %q %v\n%s", c.name, resp.StatusCode,
				resp.Header.Get("X-Tilegate-Reason"), reached, c.status, c.reason, c.reachesOrg, edge.ErrorLog())
		}
	}
}

func get(url string) (*http.Response, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp, resp.Body.Close()
}
