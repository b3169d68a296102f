package main_test

// Black-box tests of the tilegate binary: the CLI on both databases, graceful shutdown with a
// request in flight, and a database outage the server must ride out without a restart.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/internal/testminio"
)

// binary is the tilegate executable built once by TestMain.
var binary string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tilegate-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "tilegate")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tilegate:", err)
		return 1
	}
	code := m.Run()
	testminio.StopShared() // the bucket tests' MinIO
	return code
}

// ---------------------------------------------------------------------------------------------
// 1 + 2: the CLI, on SQLite and PostgreSQL

func TestCLI(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		testCLI(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dbURL, _ := freshPostgres(t)
		testCLI(t, dbURL)
	})
}

func testCLI(t *testing.T, dbURL string) {
	// migrate on a fresh database applies the migrations (logged on stderr, nothing on stdout);
	// a second run is a no-op that still succeeds.
	r := runCLI(t, dbURL, "migrate")
	r.wantOK(t)
	if r.stdout != "" {
		t.Errorf("migrate wrote to stdout: %q", r.stdout)
	}
	if n := r.countLogs(t, "migration applied"); n == 0 {
		t.Errorf("first migrate logged no applied migration; stderr:\n%s", r.stderr)
	}
	r = runCLI(t, dbURL, "migrate")
	r.wantOK(t)
	if n := r.countLogs(t, "migration applied"); n != 0 || r.stdout != "" {
		t.Errorf("second migrate applied %d migrations (stdout %q), want an idempotent no-op", n, r.stdout)
	}

	// create-account prints exactly one JSON object on stdout; logs (if any) are JSON on stderr.
	r = runCLI(t, dbURL, "admin", "create-account", "--name", "demo")
	r.wantOK(t)
	r.countLogs(t, "") // every stderr line is a JSON log record
	var acct issued
	r.decodeOne(t, &acct)
	if acct.AccountID == "" || acct.PrincipalID == "" || !strings.HasPrefix(acct.Token, "tgs_") || acct.Role != "admin" {
		t.Fatalf("create-account printed %+v", acct)
	}

	r = runCLI(t, dbURL, "admin", "create-token", "--account", acct.AccountID, "--role", "viewer")
	r.wantOK(t)
	var viewer issued
	r.decodeOne(t, &viewer)
	if viewer.PrincipalID == "" || viewer.PrincipalID == acct.PrincipalID || !strings.HasPrefix(viewer.Token, "tgs_") ||
		viewer.Role != "viewer" || viewer.AccountID != acct.AccountID {
		t.Fatalf("create-token printed %+v (account %+v)", viewer, acct)
	}

	for _, bad := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"bogus role", []string{"admin", "create-token", "--account", acct.AccountID, "--role", "bogus"}, "--role"},
		{"account not a uuid", []string{"admin", "create-token", "--account", "not-a-uuid", "--role", "viewer"}, "--account"},
		{"unknown account", []string{"admin", "create-token", "--account", "00000000-0000-4000-8000-000000000000", "--role", "viewer"}, "not found"},
		{"principal not a uuid", []string{"admin", "revoke-token", "--principal", "not-a-uuid"}, "--principal"},
		{"unknown principal", []string{"admin", "revoke-token", "--principal", "00000000-0000-4000-8000-000000000000"}, "not found"},
		{"account without name", []string{"admin", "create-account"}, "--name"},
	} {
		r := runCLI(t, dbURL, bad.args...)
		if r.code == 0 {
			t.Errorf("%s: exit 0, want a failure; stdout %q", bad.name, r.stdout)
			continue
		}
		if strings.TrimSpace(r.stdout) != "" && strings.Contains(r.stdout, "tgs_") {
			t.Errorf("%s: failed but printed a token: %q", bad.name, r.stdout)
		}
		if !strings.Contains(r.stderr, bad.want) {
			t.Errorf("%s: stderr does not mention %q:\n%s", bad.name, bad.want, r.stderr)
		}
	}

	// Tokens from the CLI work against a running server, with the role they were issued.
	srv := startServer(t, dbURL, "TILEGATE_AUTH_CACHE_TTL=100ms")
	hc := validatingClient(t)
	if s, body := srv.do(t, hc, "GET", "/v1/api_keys", viewer.Token, ""); s != 200 {
		t.Fatalf("viewer list: %d %s", s, body)
	}
	if s, body := srv.do(t, hc, "POST", "/v1/api_keys", viewer.Token, `{}`); s != 403 {
		t.Errorf("viewer create: %d %s, want 403", s, body)
	}
	if s, body := srv.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"cli"}`); s != 200 {
		t.Errorf("admin create: %d %s", s, body)
	}

	r = runCLI(t, dbURL, "admin", "revoke-token", "--principal", viewer.PrincipalID)
	r.wantOK(t)
	var revoked struct {
		PrincipalID string `json:"principal_id"`
		Revoked     *int   `json:"revoked"`
	}
	r.decodeOne(t, &revoked)
	if revoked.PrincipalID != viewer.PrincipalID || revoked.Revoked == nil || *revoked.Revoked != 1 {
		t.Errorf("revoke-token printed %s", r.stdout)
	}
	// The server trusts a resolved token for TILEGATE_AUTH_CACHE_TTL (100ms), then refuses it.
	waitFor(t, 3*time.Second, "revoked token to be refused", func() (bool, string) {
		s, body := srv.do(t, hc, "GET", "/v1/api_keys", viewer.Token, "")
		return s == 401, fmt.Sprintf("%d %s", s, body)
	})
	if s, body := srv.do(t, hc, "GET", "/v1/api_keys", acct.Token, ""); s != 200 {
		t.Errorf("admin token after revoking the viewer: %d %s", s, body)
	}
	r = runCLI(t, dbURL, "admin", "revoke-token", "--principal", viewer.PrincipalID)
	r.wantOK(t)
	r.decodeOne(t, &revoked)
	if revoked.Revoked == nil || *revoked.Revoked != 0 {
		t.Errorf("second revoke-token printed %s, want revoked 0", r.stdout)
	}
}

type issued struct {
	AccountID   string `json:"account_id"`
	PrincipalID string `json:"principal_id"`
	Role        string `json:"role"`
	Token       string `json:"token"`
}

// ---------------------------------------------------------------------------------------------
// 3: graceful shutdown

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	srv := startServer(t, dbURL, "TILEGATE_SHUTDOWN_TIMEOUT=10s")

	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest("POST", srv.url+"/v1/api_keys", pr)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+acct.Token)
	req.Header.Set("Content-Type", "application/json")
	wroteHeaders := make(chan struct{})
	req = req.WithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		WroteHeaders: func() { close(wroteHeaders) },
	}))
	type result struct {
		status int
		body   []byte
		err    error
	}
	resc := make(chan result, 1)
	hc := validatingClient(t)
	go func() {
		res, err := hc.Do(req)
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		resc <- result{status: res.StatusCode, body: body, err: err}
	}()

	// Half the body; the server is now reading the request.
	writeWithin(t, pw, `{"name":"slow-key",`, 5*time.Second)
	select {
	case <-wroteHeaders:
	case <-time.After(5 * time.Second):
		t.Fatal("request headers not written")
	}
	time.Sleep(100 * time.Millisecond) // let the server pick the request up before the signal

	must(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	signalled := time.Now()
	srv.waitLog(t, "shutting down: finishing in-flight requests", 3*time.Second)

	// New connections are refused once shutdown began.
	waitFor(t, 2*time.Second, "the listener to refuse connections", func() (bool, string) {
		c, err := net.DialTimeout("tcp", srv.addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return false, "dial succeeded"
		}
		return errors.Is(err, syscall.ECONNREFUSED), err.Error()
	})
	if _, err := (&http.Client{Timeout: 2 * time.Second}).Get(srv.url + "/healthz"); err == nil {
		t.Error("a new request after shutdown began was served")
	}
	select {
	case <-srv.done:
		t.Fatalf("the process exited (code %d) with a request in flight", srv.exitCode)
	default:
	}

	time.Sleep(time.Until(signalled.Add(300 * time.Millisecond)))
	writeWithin(t, pw, `"description":"sent across a shutdown"}`, 5*time.Second)
	must(t, pw.Close())

	var r result
	select {
	case r = <-resc:
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not complete")
	}
	if r.err != nil {
		t.Fatalf("in-flight request failed: %v", r.err)
	}
	var key struct {
		ID          string `json:"id"`
		Token       string `json:"token"`
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &key) != nil || key.ID == "" || key.Token == "" ||
		key.Name != "slow-key" || key.Description != "sent across a shutdown" {
		t.Fatalf("in-flight request: %d %s, want 200 and the created key", r.status, r.body)
	}

	select {
	case <-srv.done:
	case <-time.After(5 * time.Second):
		t.Fatal("process did not exit within 5s of the last request")
	}
	if srv.exitCode != 0 {
		t.Errorf("exit code %d, want 0", srv.exitCode)
	}
	srv.waitLog(t, "stopped", time.Second)
}

// ---------------------------------------------------------------------------------------------
// 4: database outage (PostgreSQL)

func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	dbURL, name := freshPostgres(t)
	acct := createAccount(t, dbURL)
	r := runCLI(t, dbURL, "admin", "create-token", "--account", acct.AccountID, "--role", "viewer")
	r.wantOK(t)
	var fresh issued // never used before the outage: resolving it needs a query
	r.decodeOne(t, &fresh)

	srv := startServer(t, dbURL, "TILEGATE_AUTH_CACHE_TTL=1m", "TILEGATE_SHUTDOWN_TIMEOUT=2s")
	hc := validatingClient(t)
	if s, body := srv.do(t, hc, "GET", "/readyz", "", ""); s != 200 {
		t.Fatalf("readyz before the outage: %d %s", s, body)
	}
	s, body := srv.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"before"}`)
	if s != 200 {
		t.Fatalf("create before the outage: %d %s", s, body)
	}
	var key struct {
		ID string `json:"id"`
	}
	must(t, json.Unmarshal(body, &key))
	// Concurrent requests leave several connections in the server's pool, so that after the
	// outage begins several requests meet a killed pooled connection, not only a refused one.
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", srv.url+"/v1/api_keys", nil)
			req.Header.Set("Authorization", "Bearer "+acct.Token)
			if res, err := http.DefaultClient.Do(req); err == nil {
				statuses[i] = res.StatusCode
				res.Body.Close()
			}
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Fatalf("concurrent list %d before the outage: %d", i, s)
		}
	}

	// Outage: nobody may connect to this database, and every session on it is killed. The
	// PostgreSQL server itself (shared with other tests) keeps running.
	pgExec(t, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" ALLOW_CONNECTIONS false")
	restored := false
	restore := func() {
		if !restored {
			restored = true
			pgExec(t, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" ALLOW_CONNECTIONS true")
		}
	}
	defer restore()
	pgExec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
	waitFor(t, 3*time.Second, "sessions on the database to end", func() (bool, string) {
		n := pgCount(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)
		return n == 0, fmt.Sprintf("%d sessions", n)
	})

	// Every request class answers 503 {"detail": "..."}: the first requests meet killed pooled
	// connections (57P01), the later ones fail to connect (55000, connections not allowed).
	calls := []struct {
		name, method, path, token, body string
	}{
		{"list, cached credential", "GET", "/v1/api_keys", acct.Token, ""},
		{"get, cached credential", "GET", "/v1/api_keys/" + key.ID, acct.Token, ""},
		{"create, cached credential", "POST", "/v1/api_keys", acct.Token, `{"name":"during"}`},
		{"change, cached credential", "POST", "/v1/api_keys/" + key.ID + "/change_settings", acct.Token, `{"name":"during"}`},
		{"delete, cached credential", "DELETE", "/v1/api_keys/" + key.ID, acct.Token, ""},
		{"list, credential needs a lookup", "GET", "/v1/api_keys", fresh.Token, ""},
		{"readyz", "GET", "/readyz", "", ""},
	}
	for round := range 3 {
		for _, c := range calls {
			start := time.Now()
			s, body := srv.do(t, hc, c.method, c.path, c.token, c.body)
			var d struct {
				Detail *string `json:"detail"`
			}
			if s != 503 || json.Unmarshal(body, &d) != nil || d.Detail == nil || *d.Detail == "" {
				t.Errorf("round %d, %s during the outage: %d %s, want 503 {\"detail\": \"...\"}", round, c.name, s, body)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("round %d, %s took %v", round, c.name, el)
			}
		}
	}
	if r := runCLI(t, dbURL, "admin", "create-token", "--account", acct.AccountID, "--role", "viewer"); r.code == 0 {
		t.Errorf("create-token during the outage succeeded: %s", r.stdout)
	}
	select {
	case <-srv.done:
		t.Fatalf("server exited (code %d) during the outage", srv.exitCode)
	default:
	}
	if lines := srv.logsWith("request failed"); len(lines) > 0 {
		t.Errorf("the server logged internal errors during the outage:\n%s", strings.Join(lines, "\n"))
	}

	// Recovery without a restart.
	restore()
	waitFor(t, 5*time.Second, "readyz to recover", func() (bool, string) {
		s, body := srv.do(t, hc, "GET", "/readyz", "", "")
		return s == 200, fmt.Sprintf("%d %s", s, body)
	})
	s, body = srv.do(t, hc, "GET", "/v1/api_keys", acct.Token, "")
	var page struct {
		TotalCount int `json:"total_count"`
		Items      []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	if s != 200 || json.Unmarshal(body, &page) != nil || page.TotalCount != 1 || page.Items[0].ID != key.ID || page.Items[0].Name != "before" {
		t.Errorf("list after recovery: %d %s, want exactly the key made before the outage", s, body)
	}
	if s, body := srv.do(t, hc, "GET", "/v1/api_keys", fresh.Token, ""); s != 200 {
		t.Errorf("fresh token after recovery: %d %s", s, body)
	}
	if s, body := srv.do(t, hc, "POST", "/v1/api_keys", acct.Token, `{"name":"after"}`); s != 200 {
		t.Errorf("create after recovery: %d %s", s, body)
	}
	select {
	case <-srv.done:
		t.Fatalf("server exited (code %d)", srv.exitCode)
	default:
	}
}

// ---------------------------------------------------------------------------------------------
// CLI runner

type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, dbURL string, args ...string) cliResult {
	t.Helper()
	return runCLIEnv(t, environ(dbURL), args...)
}

// runCLIEnv runs the binary with exactly env, in a directory of its own.
func runCLIEnv(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	return runCLIDir(t, t.TempDir(), env, args...)
}

// runCLIDir runs the binary in dir with exactly env.
func runCLIDir(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("tilegate %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("tilegate %s did not finish within 30s", strings.Join(args, " "))
	}
	return r
}

func (r cliResult) wantOK(t *testing.T) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("tilegate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
	}
}

// decodeOne requires stdout to be exactly one JSON object.
func (r cliResult) decodeOne(t *testing.T, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil || !bytes.HasPrefix(raw, []byte("{")) {
		t.Fatalf("tilegate %s: stdout is not a JSON object (%v): %q", strings.Join(r.args, " "), err, r.stdout)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("tilegate %s: stdout has more than one JSON object: %q", strings.Join(r.args, " "), r.stdout)
	}
	must(t, json.Unmarshal(raw, v))
}

// countLogs checks that every stderr line is a JSON log record and counts those whose msg is msg.
func (r cliResult) countLogs(t *testing.T, msg string) int {
	t.Helper()
	n := 0
	for line := range strings.Lines(r.stderr) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
			t.Errorf("tilegate %s: stderr line is not a JSON log record: %q", strings.Join(r.args, " "), line)
			continue
		}
		if rec.Msg == msg {
			n++
		}
	}
	return n
}

func createAccount(t *testing.T, dbURL string) issued {
	t.Helper()
	r := runCLI(t, dbURL, "admin", "create-account", "--name", "acct-"+randHex(4))
	r.wantOK(t)
	var acct issued
	r.decodeOne(t, &acct)
	if acct.AccountID == "" || !strings.HasPrefix(acct.Token, "tgs_") {
		t.Fatalf("create-account printed %s", r.stdout)
	}
	return acct
}

// environ is the test's environment without tilegate's own variables, plus DATABASE_URL and extra.
func environ(dbURL string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "TILEGATE_") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "DATABASE_URL="+dbURL), extra...)
}

// ---------------------------------------------------------------------------------------------
// server process

type serverProc struct {
	cmd      *exec.Cmd
	addr     string
	url      string
	stderr   *lineBuffer
	done     chan struct{} // closed when the process has exited
	exitCode int           // valid once done is closed
}

// startServer runs `tilegate serve --addr 127.0.0.1:0`, learns the address from its log and waits
// until /healthz answers.
func startServer(t *testing.T, dbURL string, env ...string) *serverProc {
	t.Helper()
	p := &serverProc{stderr: &lineBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve", "--addr", "127.0.0.1:0")
	// The admin listener on a port of its own (servers run in parallel); env may override it.
	p.cmd.Env = environ(dbURL, append([]string{"TILEGATE_ADMIN_ADDR=127.0.0.1:0"}, env...)...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = p.stderr
	must(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", p.stderr.String())
		}
	})
	waitFor(t, 15*time.Second, "the server to log its address", func() (bool, string) {
		select {
		case <-p.done:
			t.Fatalf("server exited with code %d:\n%s", p.exitCode, p.stderr.String())
		default:
		}
		for _, line := range p.stderr.Lines() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "tilegate serving" && rec.Addr != "" {
				p.addr = rec.Addr
				return true, ""
			}
		}
		return false, "no \"tilegate serving\" line yet"
	})
	p.url = "http://" + p.addr
	hc := &http.Client{Timeout: time.Second}
	waitFor(t, 5*time.Second, "/healthz", func() (bool, string) {
		res, err := hc.Get(p.url + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == 200, res.Status
	})
	return p
}

// do sends one request and returns the status and body; a transport error fails the test.
func (p *serverProc) do(t *testing.T, hc *http.Client, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	must(t, err)
	return res.StatusCode, b
}

func (p *serverProc) logsWith(msg string) []string {
	var out []string
	for _, line := range p.stderr.Lines() {
		var rec struct{ Msg string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			out = append(out, line)
		}
	}
	return out
}

func (p *serverProc) waitLog(t *testing.T, msg string, within time.Duration) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("log line %q", msg), func() (bool, string) {
		return len(p.logsWith(msg)) > 0, ""
	})
}

// validatingClient checks every response against openapi.yaml.
func validatingClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: testenv.NewValidatingTransport(t, tr), Timeout: 10 * time.Second}
}

// lineBuffer collects a process's output; safe for concurrent use.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines are the complete lines written so far.
func (b *lineBuffer) Lines() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

var pgAvail struct {
	once sync.Once
	base string
	err  error
}

// postgresBase returns TEST_DATABASE_URL (or the default) when PostgreSQL answers; without it the
// test is skipped, except in CI where that is a failure.
func postgresBase(t *testing.T) string {
	t.Helper()
	pgAvail.once.Do(func() {
		pgAvail.base = os.Getenv("TEST_DATABASE_URL")
		if pgAvail.base == "" {
			pgAvail.base = testenv.DefaultPostgres
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgAvail.base)
		if err != nil {
			pgAvail.err = err
			return
		}
		pgAvail.err = conn.Ping(ctx)
		_ = conn.Close(ctx)
	})
	if pgAvail.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required in CI: %v", pgAvail.err)
		}
		t.Skipf("PostgreSQL unavailable (set TEST_DATABASE_URL): %v", pgAvail.err)
	}
	return pgAvail.base
}

// freshPostgres creates a database for the test and drops it afterwards.
func freshPostgres(t *testing.T) (dbURL, name string) {
	t.Helper()
	db, err := scratchdb.Create(context.Background(), postgresBase(t), "tilegate_test_cmd")
	must(t, err)
	t.Cleanup(func() {
		if err := db.Drop(); err != nil {
			t.Error(err)
		}
	})
	return db.URL, db.Name
}

func pgConnect(t *testing.T) (*pgx.Conn, context.Context, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := pgx.Connect(ctx, postgresBase(t))
	if err != nil {
		cancel()
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	return conn, ctx, func() { _ = conn.Close(ctx); cancel() }
}

func pgExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn, ctx, done := pgConnect(t)
	defer done()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func pgCount(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	conn, ctx, done := pgConnect(t)
	defer done()
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// ---------------------------------------------------------------------------------------------
// helpers

// waitFor polls cond every 20ms until it holds; after within the test fails with cond's last note.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, note := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", within, what, note)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeWithin writes s to w, failing the test if the reader does not take it in time.
func writeWithin(t *testing.T, w io.Writer, s string, within time.Duration) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := io.WriteString(w, s); errc <- err }()
	select {
	case err := <-errc:
		must(t, err)
	case <-time.After(within):
		t.Fatalf("writing %q did not complete within %v", s, within)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// migratedSQLite is a new SQLite database made by `tilegate migrate`, as an operator makes
// one: admin commands refuse a file that does not exist.
func migratedSQLite(t *testing.T) string {
	t.Helper()
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "t.db")
	runCLI(t, dbURL, "migrate").wantOK(t)
	return dbURL
}
