package main_test

// The real binary's side of #15 items 11, 16 and 17: refusals that do not wait for a body,
// slow bodies cut, upload leftovers of a killed process removed at the next start, and a
// shutdown past its timeout that exits 0 and names what it cut.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawUpload opens a connection to p and sends an upload's request headers (Content-Length n)
// and the first part of its body; the caller sends the rest, or not.
func rawUpload(t *testing.T, p *serverProc, dataset, token string, n int, first []byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", p.addr)
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	_, err = fmt.Fprintf(conn, "PUT /api/datasets/%s/tiles/ HTTP/1.1\r\nHost: test\r\n%s"+
		"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", dataset, auth, n)
	must(t, err)
	_, err = conn.Write(first)
	must(t, err)
	return conn
}

// uploadFiles lists dir's upload files.
func uploadFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".upload-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Item 16: an upload's file left by a process killed with SIGKILL is removed when a server
// starts on the data directory, at once (it was a minute old at least before).
func TestKilledUploadSweptAtStart(t *testing.T) {
	t.Parallel()
	dbURL := migratedSQLite(t)
	dataDir := t.TempDir()
	acct := createAccount(t, dbURL)
	srv := startServer(t, dbURL, "TILEGATE_DATA_DIR="+dataDir)
	dataset := repCreateDataset(t, srv, acct.Token)
	file, err := os.ReadFile(repTilesFile(t, "killed.mbtiles", [3]int{0, 0, 0}, "\x1a\x06killed"))
	must(t, err)
	rawUpload(t, srv, dataset, acct.Token, len(file), file[:len(file)/2])
	waitFor(t, 10*time.Second, "the upload's file", func() (bool, string) {
		return len(uploadFiles(t, dataDir)) == 1, fmt.Sprint(uploadFiles(t, dataDir))
	})
	must(t, srv.cmd.Process.Signal(syscall.SIGKILL))
	<-srv.done
	left := uploadFiles(t, dataDir)
	if len(left) != 1 {
		t.Fatalf("after kill -9 the data directory holds uploads %v, want the one left behind", left)
	}

	startServer(t, dbURL, "TILEGATE_DATA_DIR="+dataDir) // returns once it serves
	if left := uploadFiles(t, dataDir); len(left) != 0 {
		t.Errorf("uploads still there after the start: %v", left)
	}
}

// Item 17: a request still running when the shutdown timeout ends is cut; the process exits 0
// and a WARN line names what was cut (method and path, never the query).
func TestShutdownPastTimeoutExitsZero(t *testing.T) {
	t.Parallel()
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	srv := startServer(t, dbURL, "TILEGATE_DATA_DIR="+t.TempDir(), "TILEGATE_SHUTDOWN_TIMEOUT=500ms")
	dataset := repCreateDataset(t, srv, acct.Token)
	file, err := os.ReadFile(repTilesFile(t, "slow.mbtiles", [3]int{0, 0, 0}, "\x1a\x04slow"))
	must(t, err)
	conn := rawUpload(t, srv, dataset, acct.Token, len(file), file[:len(file)/2]) // and no more
	time.Sleep(200 * time.Millisecond)                                            // the server has the request

	must(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-srv.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not exit within 10s of SIGTERM")
	}
	if srv.exitCode != 0 {
		t.Errorf("exit code %d, want 0", srv.exitCode)
	}
	lines := srv.logsWith("shutdown timeout reached: cut the requests still in flight")
	if len(lines) != 1 {
		t.Fatalf("want one line naming what was cut; log:\n%s", srv.stderr.String())
	}
	var rec struct {
		Level    string
		Cut      int
		Requests []string
	}
	must(t, json.Unmarshal([]byte(lines[0]), &rec))
	want := "PUT /api/datasets/" + dataset + "/tiles/ (running "
	if rec.Level != "WARN" || rec.Cut != 1 || len(rec.Requests) != 1 || !strings.HasPrefix(rec.Requests[0], want) {
		t.Errorf("cut line %s, want WARN naming %s…", lines[0], want)
	}
	for _, line := range srv.stderr.Lines() {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("ERROR line at shutdown: %s", line)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the cut connection: %v, want it closed", err)
	}
}

// Item 11: a refusal does not wait for the body. An upload without credentials, or over the
// size limit, whose body has barely begun is answered at once and its connection closed.
func TestRefusedUploadAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	srv := startServer(t, dbURL, "TILEGATE_DATA_DIR="+t.TempDir(), "TILEGATE_MAX_UPLOAD=1048576")
	dataset := repCreateDataset(t, srv, acct.Token)
	for _, c := range []struct {
		name, token string
		length      int
		want        string
	}{
		{"no credentials", "", 1 << 20, "HTTP/1.1 401 "},
		{"over the size limit", acct.Token, 2 << 20, "HTTP/1.1 413 "},
	} {
		conn := rawUpload(t, srv, dataset, c.token, c.length, []byte("SQLite format 3\x00"))
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		// To the end: the server closes the connection (a reset, when unread body is left).
		resp, err := io.ReadAll(bufio.NewReader(conn))
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil
		}
		if err != nil || !strings.HasPrefix(string(resp), c.want) || !strings.Contains(string(resp), "Connection: close") {
			t.Errorf("%s: %.200q after %v (%v), want %s… and the connection closed", c.name, resp, time.Since(start), err, c.want)
		}
	}
}

// Item 11: a body that trickles in is cut after TILEGATE_READ_TIMEOUT (its connection closed,
// no answer), while an authenticated upload may take longer than that.
func TestSlowBodyCut(t *testing.T) {
	t.Parallel()
	dbURL := migratedSQLite(t)
	acct := createAccount(t, dbURL)
	srv := startServer(t, dbURL, "TILEGATE_DATA_DIR="+t.TempDir(), "TILEGATE_READ_TIMEOUT=1s")
	dataset := repCreateDataset(t, srv, acct.Token)

	conn, err := net.Dial("tcp", srv.addr)
	must(t, err)
	defer conn.Close()
	body := `{"name":"trickled","kind":"vector"}`
	_, err = fmt.Fprintf(conn, "POST /api/datasets/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n", len(body))
	must(t, err)
	if d, ok := trickle(conn, body, 200*time.Millisecond); !ok {
		t.Fatal("a body trickling in for 7 s was not cut")
	} else if d > 3*time.Second {
		t.Errorf("the slow body was cut after %v, want about the 1s read timeout", d)
	}

	// An authenticated upload's body pauses past the read timeout and still succeeds.
	file, err := os.ReadFile(repTilesFile(t, "pause.mbtiles", [3]int{0, 0, 0}, "\x1a\x05pause"))
	must(t, err)
	up := rawUpload(t, srv, dataset, acct.Token, len(file), file[:len(file)/2])
	time.Sleep(1500 * time.Millisecond) // the slow client is the point of the test
	_, err = up.Write(file[len(file)/2:])
	must(t, err)
	_ = up.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(up), nil)
	must(t, err)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("authenticated slow upload: %d, want 200", res.StatusCode)
	}
}

// trickle sends body a byte every interval until the server closes the connection; it reports
// how long that took, or false when the whole body went through.
func trickle(conn net.Conn, body string, interval time.Duration) (time.Duration, bool) {
	start := time.Now()
	cut := make(chan time.Duration, 1)
	go func() {
		_, _ = io.ReadAll(conn) // returns when the server closes the connection
		cut <- time.Since(start)
	}()
	for i := 0; i < len(body); i++ {
		if _, err := conn.Write([]byte{body[i]}); err != nil {
			return <-cut, true
		}
		select {
		case d := <-cut:
			return d, true
		case <-time.After(interval):
		}
	}
	return 0, false
}
