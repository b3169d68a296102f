package main_test

import (
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestVersion: `tilegate version` reports the Go version and module version of the binary,
// and the VCS revision when the build recorded one (a plain clone with -buildvcs; a git
// worktree, where the Go toolchain finds no repository, records none).
func TestVersion(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "version", "--json")
	r.wantOK(t)
	var v struct {
		Version, Revision, Time, Go string
		Modified                    *bool
	}
	r.decodeOne(t, &v)
	if v.Go != runtime.Version() || v.Version == "" || v.Modified == nil {
		t.Errorf("version --json: %s, want go %s and a version", r.stdout, runtime.Version())
	}
	line := runCLI(t, "", "version")
	line.wantOK(t)
	if got := strings.TrimSpace(line.stdout); !strings.HasPrefix(got, "tilegate "+v.Version) || !strings.HasSuffix(got, runtime.Version()) || strings.Count(line.stdout, "\n") != 1 {
		t.Errorf("version: %q", line.stdout)
	}

	// A build with VCS stamping reports the checkout's revision.
	bin := filepath.Join(t.TempDir(), "tilegate")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	must(t, err)
	must(t, json.Unmarshal(out, &v))
	if v.Revision == "" {
		t.Logf("this checkout gives the Go toolchain no VCS data (a git worktree?): revision not checked")
		return
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	must(t, err)
	if v.Revision != strings.TrimSpace(string(head)) {
		t.Errorf("version revision %q, want HEAD %s", v.Revision, head)
	}
	if _, err := time.Parse(time.RFC3339, v.Time); err != nil {
		t.Errorf("version time %q: %v", v.Time, err)
	}
}

// TestHealthcheck: `tilegate healthcheck` exits 0 against a ready server (given its listen
// address, all-interfaces forms included) and 1, saying why, when nothing answers.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := startServer(t, migratedSQLite(t), "TILEGATE_DATA_DIR="+t.TempDir())
	_, port, err := net.SplitHostPort(srv.addr)
	must(t, err)
	for _, addr := range []string{srv.addr, ":" + port, "0.0.0.0:" + port} {
		r := runCLIEnv(t, environ("", "TILEGATE_ADDR="+addr), "healthcheck")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "ready" {
			t.Errorf("healthcheck %s: exit %d, stdout %q, stderr %s", addr, r.code, r.stdout, r.stderr)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closed := ln.Addr().String()
	ln.Close()
	r := runCLIEnv(t, environ(""), "healthcheck", "--addr", closed, "--timeout", "2s")
	if r.code != 1 || !strings.Contains(r.stderr, "http://"+closed+"/readyz") || !strings.Contains(r.stderr, "refused") {
		t.Errorf("healthcheck of a closed port: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestAdminList: `tilegate admin list` shows accounts, principals and their tokens' ids and
// dates, revocations included, and never a token, secret or hash.
func TestAdminList(t *testing.T) {
	t.Parallel()
	for name, dbURL := range map[string]func() string{
		"sqlite":   func() string { return migratedSQLite(t) },
		"postgres": func() string { u, _ := freshPostgres(t); return u },
	} {
		t.Run(name, func(t *testing.T) {
			dbURL := dbURL()
			a := createAccount(t, dbURL)
			b := createAccount(t, dbURL)
			var viewer issued
			r := runCLI(t, dbURL, "admin", "create-token", "--account", a.AccountID, "--role", "viewer", "--name", "maps")
			r.wantOK(t)
			r.decodeOne(t, &viewer)
			runCLI(t, dbURL, "admin", "revoke-token", "--principal", viewer.PrincipalID).wantOK(t)

			type token struct {
				ID      string     `json:"id"`
				Created time.Time  `json:"created"`
				Revoked *time.Time `json:"revoked"`
			}
			type principal struct {
				ID, Name, Role string
				Created        time.Time
				Tokens         []token
			}
			var list struct {
				Accounts []struct {
					ID, Name   string
					Created    time.Time
					Principals []principal
				}
			}
			r = runCLI(t, dbURL, "admin", "list")
			r.wantOK(t)
			r.decodeOne(t, &list)
			for _, secret := range []string{a.Token, b.Token, viewer.Token, a.Token[len(a.Token)-20:]} {
				if strings.Contains(r.stdout, secret) {
					t.Fatalf("admin list printed a token or its secret:\n%s", r.stdout)
				}
			}
			if strings.Contains(r.stdout, "hash") || strings.Contains(r.stdout, "tgs_") {
				t.Fatalf("admin list printed hashes or tokens:\n%s", r.stdout)
			}
			if len(list.Accounts) != 2 || list.Accounts[0].ID != a.AccountID || list.Accounts[1].ID != b.AccountID {
				t.Fatalf("admin list: %s", r.stdout)
			}
			ps := list.Accounts[0].Principals
			if len(ps) != 2 || ps[0].ID != a.PrincipalID || ps[0].Role != "admin" || ps[1].ID != viewer.PrincipalID ||
				ps[1].Name != "maps" || ps[1].Role != "viewer" || len(ps[0].Tokens) != 1 || len(ps[1].Tokens) != 1 {
				t.Fatalf("account a's principals: %+v", ps)
			}
			// A token's id is the lookup id it begins with (tgs_ + 16 characters).
			if tok := ps[0].Tokens[0]; tok.ID != a.Token[4:20] || tok.Revoked != nil || time.Since(tok.Created) > time.Minute {
				t.Errorf("admin token %+v, token begins %s", tok, a.Token[:20])
			}
			if tok := ps[1].Tokens[0]; tok.ID != viewer.Token[4:20] || tok.Revoked == nil || tok.Revoked.Before(tok.Created) {
				t.Errorf("revoked viewer token %+v", tok)
			}

			// --account narrows the list; an unknown account is an error.
			r = runCLI(t, dbURL, "admin", "list", "--account", b.AccountID)
			r.wantOK(t)
			r.decodeOne(t, &list)
			if len(list.Accounts) != 1 || list.Accounts[0].ID != b.AccountID || len(list.Accounts[0].Principals) != 1 {
				t.Errorf("admin list --account: %s", r.stdout)
			}
			r = runCLI(t, dbURL, "admin", "list", "--account", "00000000-0000-4000-8000-000000000000")
			if r.code == 0 || !strings.Contains(r.stderr, "not found") {
				t.Errorf("admin list of an unknown account: exit %d\n%s", r.code, r.stderr)
			}
		})
	}
}
