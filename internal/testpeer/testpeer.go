// Package testpeer builds and runs mbtileserver (consbio/mbtileserver, ISC licence), the peer tile
// server whose source sits beside the project in shared/peers, for tests that need a real tile
// server upstream of tilegate and for the side-by-side benchmarks. It is built from the tarball
// into a cache directory outside the repository, once (under a lock), and never shipped.
package testpeer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TarballName is the peer's source tarball in shared/peers.
const TarballName = "mbtileserver-3358834.tar.gz"

// Tarball finds the source tarball: $TILEGATE_PEER_TARBALL, else shared/peers beside the
// repository (found from dir upwards), else /work/shared/peers.
func Tarball(dir string) (string, error) {
	if p := os.Getenv("TILEGATE_PEER_TARBALL"); p != "" {
		return p, nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "shared", "peers", TarballName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	p := filepath.Join("/work/shared/peers", TarballName)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("mbtileserver source %s not found (set TILEGATE_PEER_TARBALL)", TarballName)
	}
	return p, nil
}

// CacheDir is where fixtures are built: <user cache dir>/tilegate-fixtures.
func CacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory for the mbtileserver fixture: %w", err)
	}
	return filepath.Join(dir, "tilegate-fixtures"), nil
}

// Build extracts the tarball and builds mbtileserver into cacheDir, keyed by the tarball's hash,
// under an exclusive lock, and returns the binary's path; a built binary is reused.
func Build(tarball, cacheDir string) (string, error) {
	raw, err := os.ReadFile(tarball)
	if err != nil {
		return "", fmt.Errorf("read peer source: %w", err)
	}
	sum := sha256.Sum256(raw)
	dir := filepath.Join(cacheDir, "mbtileserver-"+hex.EncodeToString(sum[:6]))
	bin := filepath.Join(dir, "mbtileserver")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // built by whoever held the lock before us
		return bin, nil
	}
	src, err := os.MkdirTemp(dir, ".src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if out, err := exec.Command("tar", "-xzf", tarball, "-C", src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("extract %s: %v\n%s", tarball, err, out)
	}
	mods, err := filepath.Glob(filepath.Join(src, "*", "go.mod"))
	if err != nil || len(mods) != 1 {
		return "", fmt.Errorf("extract %s: expected one module directory, found %v", tarball, mods)
	}
	fmt.Fprintf(os.Stderr, "building mbtileserver into %s (once)\n", dir)
	cmd := exec.Command("go", "build", "-o", bin+".tmp", ".")
	cmd.Dir = filepath.Dir(mods[0])
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build mbtileserver: %v\n%s", err, out)
	}
	return bin, os.Rename(bin+".tmp", bin)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

// Server is a running mbtileserver.
type Server struct {
	// URL is http://127.0.0.1:PORT; tiles are at URL/services/<file name>/tiles/{z}/{x}/{y}.<ext>.
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Launch starts mbtileserver serving every .mbtiles file in dir (tiles only, public).
func Launch(ctx context.Context, dir string) (*Server, error) {
	return launchWith(ctx, dir, "--tiles-only")
}

// LaunchWithTileJSON is Launch with mbtileserver's TileJSON endpoints on: URL/services/<file
// name> answers each tileset's TileJSON.
func LaunchWithTileJSON(ctx context.Context, dir string) (*Server, error) {
	return launchWith(ctx, dir, "--disable-preview")
}

func launchWith(ctx context.Context, dir string, flags ...string) (*Server, error) {
	wd, _ := os.Getwd()
	tarball, err := Tarball(wd)
	if err != nil {
		return nil, err
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	bin, err := Build(tarball, cache)
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 { // a free port may be taken before the server binds it
		s, err := launch(ctx, bin, dir, flags)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func launch(ctx context.Context, bin, dir string, flags []string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(bin, append([]string{"--host", "127.0.0.1", "-p", fmt.Sprint(port), "-d", dir}, flags...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mbtileserver: %w", err)
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/services", nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-s.done:
			return errors.New("mbtileserver exited before it answered")
		case <-ctx.Done():
			return fmt.Errorf("mbtileserver not ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the server and waits for it.
func (s *Server) Close() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// Start launches a server for tb over dir, stopped when tb ends. When it cannot be built the
// test is skipped, except in CI (CI=true), where it fails.
func Start(tb testing.TB, dir string) *Server {
	tb.Helper()
	return start(tb, Launch, dir)
}

// StartWithTileJSON is Start with the TileJSON endpoints on (LaunchWithTileJSON).
func StartWithTileJSON(tb testing.TB, dir string) *Server {
	tb.Helper()
	return start(tb, LaunchWithTileJSON, dir)
}

func start(tb testing.TB, launch func(context.Context, string) (*Server, error), dir string) *Server {
	tb.Helper()
	s, err := launch(context.Background(), dir)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("mbtileserver fixture unavailable (required in CI): %v", err)
		}
		tb.Skipf("mbtileserver fixture unavailable: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}
