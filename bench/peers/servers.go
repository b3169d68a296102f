package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverCPU is the CPU every server is pinned to; the load generator gets loadCPU.
const (
	serverCPU = "0"
	loadCPU   = "1"
)

// buildTilegate builds this checkout's tilegate binary into dir.
func buildTilegate(dir string) (string, error) {
	bin := filepath.Join(dir, "tilegate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tilegate").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tilegate: %v\n%s", err, out)
	}
	return bin, nil
}

// process is a server started pinned to serverCPU.
type process struct {
	name string
	addr string
	cmd  *exec.Cmd
}

// startPinned starts bin with args and env under taskset on serverCPU, output discarded
// straight to /dev/null (a pipe would make this process copy the server's log).
func startPinned(name, addr, bin string, env []string, args ...string) (*process, error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	cmd := exec.Command("taskset", append([]string{"-c", serverCPU, bin}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = null, null
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &process{name: name, addr: addr, cmd: cmd}, nil
}

// pid is the server's pid: taskset execs the server, so it is taskset's.
func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// peakRSS is the process's VmHWM in bytes.
func (p *process) peakRSS() int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// waitFor polls url until it answers 200, for at most 20 s; a server that exits fails at once.
func waitFor(c *http.Client, p *process, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := c.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.cmd.ProcessState != nil {
			return fmt.Errorf("%s exited", p.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 at %s", p.name, url)
}

// peerSignature returns the query mbtileserver's -s mode accepts for tileset id, signed now:
// signature = salt ":" base64url(HMAC-SHA1(SHA1(salt+secret), date ":" id)), date RFC 3339.
// A fresh salt and date per call, as a client minting per session would.
func peerSignature(secret, id string) (string, error) {
	var s [12]byte
	if _, err := rand.Read(s[:]); err != nil {
		return "", err
	}
	salt := hex.EncodeToString(s[:])
	date := time.Now().UTC().Format(time.RFC3339Nano)
	key := sha1.Sum([]byte(salt + secret))
	mac := hmac.New(sha1.New, key[:])
	mac.Write([]byte(date + ":" + id))
	sig := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	return "?signature=" + url.QueryEscape(salt+":"+sig) + "&date=" + url.QueryEscape(date), nil
}

var errNoTiles = errors.New("token has no tile URL")

// tokenQuery extracts the signed query of a tile token's first URL template.
func tokenQuery(tiles []string) (string, error) {
	if len(tiles) == 0 {
		return "", errNoTiles
	}
	i := strings.IndexByte(tiles[0], '?')
	if i < 0 {
		return "", fmt.Errorf("token URL %q has no query", tiles[0])
	}
	return tiles[0][i:], nil
}
