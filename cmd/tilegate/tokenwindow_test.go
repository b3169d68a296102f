package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TILEGATE_TOKEN_WINDOW sets the tokens' window; one out of range stops serve with a message
// naming the setting.
func TestTokenWindow(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "t.db")
	runCLI(t, dbURL, "migrate").wantOK(t)
	var acct issued
	r := runCLI(t, dbURL, "admin", "create-account", "--name", "w")
	r.wantOK(t)
	r.decodeOne(t, &acct)

	for _, bad := range []string{"5s", "25h", "1500ms", "soon"} {
		r := runCLIEnv(t, environ(dbURL, "TILEGATE_TOKEN_WINDOW="+bad, "TILEGATE_ADMIN_ADDR="), "serve", "--addr", "127.0.0.1:0")
		if r.code == 0 || !strings.Contains(r.stderr, "TILEGATE_TOKEN_WINDOW") {
			t.Errorf("window %s: exit %d, stderr %s", bad, r.code, r.stderr)
		}
	}

	srv := startServer(t, dbURL, "TILEGATE_TOKEN_WINDOW=10s")
	hc := validatingClient(t)
	s, body := srv.do(t, hc, "POST", "/api/datasets/", acct.Token, `{"name":"w","kind":"vector"}`)
	if s != 201 {
		t.Fatalf("create dataset: %d %s", s, body)
	}
	var ds struct{ ID string }
	must(t, json.Unmarshal(body, &ds))
	s, body = srv.do(t, hc, "GET", "/api/tiles/token/"+ds.ID+"/", acct.Token, "")
	if s != 200 {
		t.Fatalf("token: %d %s", s, body)
	}
	var tok struct {
		Exp       int64 `json:"exp"`
		ExpiresIn int   `json:"expires_in"`
	}
	must(t, json.Unmarshal(body, &tok))
	if tok.Exp%10 != 0 || tok.ExpiresIn <= 1 || tok.ExpiresIn > 11 {
		t.Errorf("10 s window: exp %d expires_in %d, want a multiple of 10 and (1, 11]", tok.Exp, tok.ExpiresIn)
	}
}
