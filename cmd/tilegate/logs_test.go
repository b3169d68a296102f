package main_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLIErrorsReadable: a failing command tells a person what is wrong in one line, text on a
// terminal and with TILEGATE_LOG_FORMAT=text, a JSON record when stderr is not a terminal or
// JSON is asked for.
func TestCLIErrorsReadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := "tilegate: database does not exist: no SQLite file at " + filepath.Join(dir, "data", "tilegate.db")

	r := runIn(t, dir, environ("", "TILEGATE_LOG_FORMAT=text"), "admin", "create-account", "--name", "x")
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != 1 || !strings.HasPrefix(lines[len(lines)-1], want) || strings.Contains(r.stderr, "{") {
		t.Errorf("text: exit %d, stderr:\n%s\nwant a last line beginning %q", r.code, r.stderr, want)
	}

	r = runIn(t, dir, environ(""), "admin", "create-account", "--name", "x") // a pipe: JSON
	lines = strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	var rec struct{ Level, Msg, Err string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil || rec.Msg != "tilegate failed" ||
		!strings.HasPrefix("tilegate: "+rec.Err, want) {
		t.Errorf("json: last line %q (%v)", lines[len(lines)-1], err)
	}

	// On a terminal (script(1) gives the command one), auto is text.
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("no script(1): the terminal case is not run")
	}
	cmd := exec.Command("script", "-qec", binary+" admin create-account --name x", "/dev/null")
	cmd.Env, cmd.Dir = environ(""), dir
	out, _ := cmd.CombinedOutput()
	text := strings.ReplaceAll(string(out), "\r", "")
	if !strings.Contains(text, want) || strings.Contains(text, `{"time"`) {
		t.Errorf("on a terminal:\n%s\nwant a line beginning %q and no JSON", text, want)
	}
}

// TestLogDurations: durations in the log are written as durations ("1.5s", "250µs"), in the
// request lines and elsewhere (the shutdown's timeout), and every request line has its id.
func TestLogDurations(t *testing.T) {
	t.Parallel()
	srv := startServer(t, migratedSQLite(t), "TILEGATE_DATA_DIR="+t.TempDir(), "TILEGATE_SHUTDOWN_TIMEOUT=1500ms")
	hc := validatingClient(t)
	if s, body := srv.do(t, hc, "GET", "/readyz", "", ""); s != 200 {
		t.Fatalf("readyz: %d %s", s, body)
	}
	must(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	<-srv.done
	var checked int
	for _, line := range srv.stderr.Lines() {
		var rec map[string]any
		must(t, json.Unmarshal([]byte(line), &rec))
		for _, k := range []string{"duration", "timeout"} {
			v, ok := rec[k]
			if !ok {
				continue
			}
			s, isString := v.(string)
			if _, err := time.ParseDuration(s); !isString || err != nil {
				t.Errorf("%s: %s = %v, want a duration", rec["msg"], k, v)
			}
			checked++
		}
		if rec["msg"] == "request" && rec["request_id"] == "" {
			t.Errorf("request line without a request id: %s", line)
		}
		if rec["msg"] == "shutting down: finishing in-flight requests" && rec["timeout"] != "1.5s" {
			t.Errorf("shutdown timeout %v, want 1.5s", rec["timeout"])
		}
	}
	if checked < 2 {
		t.Errorf("%d durations in the log, want the request's and the shutdown's:\n%s", checked, srv.stderr.String())
	}
}
