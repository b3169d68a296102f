package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// One line per request at Info, except tiles served (Debug); never a credential in the log.
func TestRequestLog(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := tlStart(t, testenv.Databases()[0], server.Config{Logger: logger})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, d.Id, tlVectorFile())
	k := e.key(t, e.c, nil, "")
	tok, err := e.c.GetTileTokenWithResponse(t.Context(), d.Id)
	must(t, err)
	vt, err := tok.JSON200.AsVectorTileToken()
	must(t, err)

	tlCheck(t, "served", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token)), 200, "")
	tlCheck(t, "refused", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+corrupt(k.Token, 0))), 403, "unknown_key")

	lines := buf.String()
	count := func(sub string) int { return strings.Count(lines, sub) }
	if count(`"route":"/api/tiles/:dataset_id/:z/:x/:tile","status":200`) != 0 {
		t.Errorf("a served tile was logged at Info")
	}
	if count(`"route":"/api/tiles/:dataset_id/:z/:x/:tile","status":403`) != 0 {
		t.Errorf("the refused tile's request line was logged at Info (its \"tile refused\" line is):\n%s", lines)
	}
	if count(`"msg":"tile refused","reason":"unknown_key","status":403,"dataset_id":"`+d.Id.String()+`"`) != 1 {
		t.Errorf("the refused tile was not logged once:\n%s", lines)
	}
	if count(`"route":"/api/tiles/token/:dataset_id/","status":200`) != 1 {
		t.Errorf("the token request was not logged:\n%s", lines)
	}
	for _, secret := range []string{k.Token, vt.Sig, e.acct.Token, "key="} {
		if strings.Contains(lines, secret) {
			t.Errorf("the log holds a credential (%.8s…)", secret)
		}
	}
}

// logRecords decodes JSON log lines whose msg is msg.
func logRecords(t *testing.T, lines, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(lines) {
		var rec map[string]any
		must(t, json.Unmarshal([]byte(line), &rec))
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// A refused tile logs its reason, dataset, key id (never the key's token or a tile token),
// client address and request id — the id its answer carries in X-Request-Id — at most once per
// reason per RefusalLogEvery, the refusals in between counted in the next line.
func TestRefusalLog(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := tlStart(t, testenv.Databases()[0], server.Config{Logger: logger, RefusalLogEvery: time.Hour})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
	e.uploadOK(t, d.Id, tlVectorFile())
	k := e.key(t, e.c, []string{"https://maps.example.com"}, "")
	tok, err := e.c.GetTileTokenWithResponse(t.Context(), d.Id)
	must(t, err)
	vt, err := tok.JSON200.AsVectorTileToken()
	must(t, err)

	refused := e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token), "Origin: https://evil.example")
	tlCheck(t, "origin", refused, 403, "origin")
	for range 5 { // the same reason again: counted, not logged
		tlCheck(t, "origin again", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "key="+k.Token), "Origin: https://evil.example"), 403, "origin")
	}
	tlCheck(t, "bad signature", e.get(t, "GET", tlTilePath(d.Id, "0/0/0", "pbf", "sig="+corrupt(vt.Sig, 3)+"&exp="+
		fmt.Sprint(vt.Exp)+"&scope="+vt.Scope)), 403, "bad_signature")

	lines := buf.String()
	recs := logRecords(t, lines, "tile refused")
	if len(recs) != 2 {
		t.Fatalf("%d tile refused lines, want 2 (one per reason):\n%s", len(recs), lines)
	}
	origin := recs[0]
	for k, want := range map[string]any{"level": "INFO", "reason": "origin", "status": float64(403),
		"dataset_id": d.Id.String(), "key_id": k.Id.String(), "client": "127.0.0.1",
		"request_id": refused.header.Get("X-Request-Id")} {
		if origin[k] != want {
			t.Errorf("origin refusal: %s = %v, want %v (%v)", k, origin[k], want, origin)
		}
	}
	if origin["request_id"] == "" {
		t.Errorf("the refused answer carries no X-Request-Id")
	}
	if sig := recs[1]; sig["reason"] != "bad_signature" || sig["key_id"] != nil || sig["dataset_id"] != d.Id.String() {
		t.Errorf("bad signature refusal: %v", sig)
	}
	for _, secret := range []string{k.Token, vt.Sig, corrupt(vt.Sig, 3), e.acct.Token} {
		if strings.Contains(lines, secret) {
			t.Errorf("the log holds a credential (%.8s…)", secret)
		}
	}

	// With a short window the next line of a reason says how many were left out.
	var buf2 syncBuffer
	e2 := tlStart(t, testenv.Databases()[0], server.Config{
		Logger: slog.New(slog.NewJSONHandler(&buf2, nil)), RefusalLogEvery: 300 * time.Millisecond})
	d2 := e2.dataset(t, e2.c, gen.DatasetKindVector, gen.Private)
	for range 4 {
		tlCheck(t, "missing", e2.get(t, "GET", tlTilePath(d2.Id, "0/0/0", "pbf", "")), 401, "missing")
	}
	time.Sleep(350 * time.Millisecond)
	tlCheck(t, "missing, later", e2.get(t, "GET", tlTilePath(d2.Id, "0/0/0", "pbf", "")), 401, "missing")
	recs = logRecords(t, buf2.String(), "tile refused")
	if len(recs) != 2 || recs[0]["suppressed"] != nil || recs[1]["suppressed"] != float64(3) {
		t.Errorf("refusal lines %v, want 2, the second with suppressed 3", recs)
	}
}

// Every answer carries an X-Request-Id, a new one per request; one sent by a trusted proxy is
// kept, one sent by anybody else (or not fit for a log line) is replaced.
func TestRequestID(t *testing.T) {
	e := tlStart(t, testenv.Databases()[0], server.Config{})
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
	seen := map[string]bool{}
	for _, path := range []string{"/healthz", "/v1/api_keys", "/no/such/path", tlTilePath(d.Id, "0/0/0", "pbf", ""),
		tlTilePath(d.Id, "0/0/0", "png", ""), tlTilePath(d.Id, "0/0/0", "pbf", "")} {
		r := e.get(t, "GET", path)
		id := r.header.Get("X-Request-Id")
		if id == "" || seen[id] {
			t.Errorf("GET %s (%d): X-Request-Id %q (seen before: %v)", path, r.status, id, seen[id])
		}
		seen[id] = true
	}
	if r := e.get(t, "GET", "/healthz", "X-Request-Id: from-the-client"); r.header.Get("X-Request-Id") == "from-the-client" {
		t.Errorf("an untrusted peer's request id was kept")
	}

	p := tlStart(t, testenv.Databases()[0], server.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	d = p.dataset(t, p.c, gen.DatasetKindVector, gen.Public)
	for sent, kept := range map[string]bool{
		"4bf92f3577b34da6a3ce929d0e0e4736":         true,
		"Root=1-67891233-abcdef012345678912345678": true,
		"two words":              false,
		"line\u2028break":        false,
		strings.Repeat("a", 129): false,
	} {
		for _, path := range []string{"/healthz", tlTilePath(d.Id, "0/0/0", "pbf", "")} {
			r := p.get(t, "GET", path, "X-Request-Id: "+sent)
			if got := r.header.Get("X-Request-Id"); (got == sent) != kept || got == "" {
				t.Errorf("GET %s from a trusted proxy with X-Request-Id %q: answered %q, want kept %v", path, sent, got, kept)
			}
		}
	}
}
