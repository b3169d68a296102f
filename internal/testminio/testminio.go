// Package testminio runs a real S3-compatible server (MinIO) for tests: it finds the MinIO
// binary in a cache outside the repository, or builds it there once, starts it on a free
// port with a temporary directory and known credentials, and stops it when the test ends.
//
// MinIO is AGPL-licensed: it is a test fixture only. The binary is built from the module proxy
// into the user's cache directory; it is never committed, vendored, linked into tilegate or
// shipped.
package testminio

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Module is the MinIO server module built as the fixture, pinned.
const Module = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"

// Credentials every fixture server accepts.
const (
	AccessKey = "tilegate-test"
	SecretKey = "tilegate-test-secret"
	Region    = "us-east-1"
)

// BinaryPath is where the fixture binary lives: $TILEGATE_MINIO when set, else
// <user cache dir>/tilegate-fixtures/bin/minio.
func BinaryPath() (string, error) {
	if p := os.Getenv("TILEGATE_MINIO"); p != "" {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory for the MinIO fixture: %w", err)
	}
	return filepath.Join(dir, "tilegate-fixtures", "bin", "minio"), nil
}

// Ensure returns the fixture binary's path, building it first when it is missing. The build
// (about 3.5 minutes, from the module proxy) runs under an exclusive lock on a file beside the
// binary, so test packages running in parallel build it once; it is installed into a temporary
// directory and renamed into place, so nobody ever runs a half-written binary.
func Ensure(ctx context.Context) (string, error) {
	bin, err := BinaryPath()
	if err != nil {
		return "", err
	}
	if isExecutable(bin) {
		return bin, nil
	}
	if os.Getenv("TILEGATE_MINIO") != "" {
		return "", fmt.Errorf("TILEGATE_MINIO=%s is not an executable file", bin)
	}
	dir := filepath.Dir(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".minio.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // built by whoever held the lock before us
		return bin, nil
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", Module)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	cmd.Dir = tmp // outside any module: go install pkg@version ignores the caller's go.mod
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the MinIO fixture (%s): %w\n%s", Module, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "minio"), bin); err != nil {
		return "", fmt.Errorf("install the MinIO fixture: %w", err)
	}
	return bin, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// lockFile takes an exclusive flock on path, waiting for it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil // closing the file releases the lock
}

// Server is a running MinIO.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	// Client is an admin client of the server.
	Client *minio.Client

	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

// syncBuffer collects the server's output; read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Launch starts MinIO storing under dir. Close stops it.
func Launch(ctx context.Context, dir string) (*Server, error) {
	bin, err := Ensure(ctx)
	if err != nil {
		return nil, err
	}
	var last error
	// The free port is found by binding and releasing it; another process may take it before
	// MinIO binds, so a server that exits at once is started again on another port.
	for range 3 {
		s, err := launch(ctx, bin, dir)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func launch(ctx context.Context, bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	log := &syncBuffer{}
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, dir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION="+Region)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start MinIO: %w", err)
	}
	s := &Server{Endpoint: "http://" + addr, cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w\nMinIO output:\n%s", err, log.String())
	}
	s.Client, err = minio.New(addr, &minio.Options{
		Creds:  credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region: Region,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls MinIO's readiness endpoint.
func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/minio/health/ready", nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return errors.New("MinIO exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("MinIO not ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it to exit.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// NewBucket creates a bucket with a fresh random name and returns the name.
func (s *Server) NewBucket(ctx context.Context) (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	name := "test-" + hex.EncodeToString(b)
	if err := s.Client.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		return "", fmt.Errorf("create bucket %s: %w", name, err)
	}
	return name, nil
}

// Start launches a server for tb, stopped when tb ends. When MinIO can be neither found nor
// built, the test is skipped, except in CI (CI=true), where it fails: CI must run the bucket
// tests (.ci/run builds the fixture first).
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Launch(context.Background(), tb.TempDir())
	if err != nil {
		Unavailable(tb, err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Unavailable skips tb for want of MinIO, or fails it in CI.
func Unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("MinIO fixture unavailable (required in CI): %v", err)
	}
	tb.Skipf("MinIO fixture unavailable: %v", err)
}

// Bucket creates a fresh bucket on s for tb and returns its name.
func (s *Server) Bucket(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name, err := s.NewBucket(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return name
}

// shared is one server for a whole test package (Shared, StopShared).
var shared struct {
	once sync.Once
	dir  string
	s    *Server
	err  error
}

// Shared returns the package's one server, started by the first caller (each test takes its
// own bucket: Bucket). The test package's TestMain must call StopShared after m.Run.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "testminio-")
		if shared.err == nil {
			shared.s, shared.err = Launch(context.Background(), shared.dir)
		}
	})
	if shared.err != nil {
		Unavailable(tb, shared.err)
	}
	return shared.s
}

// StopShared stops the shared server, if one was started, and removes its data.
func StopShared() {
	if shared.s != nil {
		shared.s.Close()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
}
