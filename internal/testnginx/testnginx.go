// Package testnginx runs a real nginx (Debian's package) for tests, with a configuration the test
// gives: the forward-auth (auth_request) deployment in front of a tile server is tested this way.
package testnginx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running nginx.
type Server struct {
	// URL is http://127.0.0.1:PORT, the listen address handed to the configuration.
	URL    string
	prefix string
	cmd    *exec.Cmd
	done   chan struct{}
	once   sync.Once
}

// Binary finds nginx: $TILEGATE_NGINX, else nginx on PATH or in /usr/sbin.
func Binary() (string, error) {
	if p := os.Getenv("TILEGATE_NGINX"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("nginx not found (Debian package nginx; .ci/run installs it)")
}

// Launch starts nginx with main, lines of the main context (load_module), and servers, the
// contents of the http block; every {{LISTEN}} in servers is replaced by the address nginx
// listens on.
func Launch(ctx context.Context, dir, main, servers string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 { // a free port may be taken before nginx binds it
		s, err := launch(ctx, bin, dir, main, servers)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func launch(ctx context.Context, bin, dir, main, servers string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	prefix, err := os.MkdirTemp(dir, "nginx-")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			return nil, err
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers read the test's private temporary directory
	}
	conf := fmt.Sprintf(`%s
%[4]s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log %[2]s/logs/access.log;
  client_body_temp_path %[2]s/tmp/body;
  proxy_temp_path %[2]s/tmp/proxy;
  fastcgi_temp_path %[2]s/tmp/fastcgi;
  uwsgi_temp_path %[2]s/tmp/uwsgi;
  scgi_temp_path %[2]s/tmp/scgi;
%[3]s
}
`, user, prefix, strings.ReplaceAll(servers, "{{LISTEN}}", addr), main)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "-t", "-p", prefix, "-c", confPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t: %v\n%s\nconfiguration:\n%s", err, out, conf)
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath, "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &strings.Builder{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	s := &Server{URL: "http://" + addr, prefix: prefix, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, 10*time.Second); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w\n%s", err, s.ErrorLog())
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", strings.TrimPrefix(s.URL, "http://"))
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-s.done:
			return errors.New("nginx exited before it listened")
		case <-ctx.Done():
			return fmt.Errorf("nginx not listening: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ErrorLog is nginx's error log so far (for failure messages).
func (s *Server) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.prefix, "logs", "error.log"))
	return string(b)
}

// JSModule is the load_module line for Debian's njs module, or "" when it is not installed.
func JSModule() string {
	const p = "/usr/lib/nginx/modules/ngx_http_js_module.so"
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return "load_module " + p + ";"
}

// Close stops nginx (QUIT, then KILL) and waits for it.
func (s *Server) Close() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// Start launches nginx for tb with servers in its http block, stopped when tb ends; skipped
// without nginx except in CI.
func Start(tb testing.TB, servers string) *Server {
	tb.Helper()
	return StartWith(tb, "", servers)
}

// StartWith is Start with lines for the main context too (load_module).
func StartWith(tb testing.TB, main, servers string) *Server {
	tb.Helper()
	s, err := Launch(context.Background(), tb.TempDir(), main, servers)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("nginx fixture unavailable (required in CI): %v", err)
		}
		tb.Skipf("nginx fixture unavailable: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}
