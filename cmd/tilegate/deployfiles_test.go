package main_test

import (
	"bufio"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// repoFile is a file of the repository (tests run in cmd/tilegate).
func repoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	must(t, err)
	return string(b)
}

// TestDockerfile builds the binary the way the Dockerfile's build stage does and checks what
// the image promises: a static executable (no ELF interpreter, so it runs on distroless/static
// or scratch), a non-root user, a HEALTHCHECK that runs the binary itself. With a Docker daemon
// it also builds the image and waits for the container to report healthy; this machine has a
// docker client but no daemon, so that part skips here (it runs where one answers).
func TestDockerfile(t *testing.T) {
	t.Parallel()
	df := repoFile(t, "Dockerfile")
	build := regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 go build (.*?) -o /out/tilegate ./cmd/tilegate`).FindStringSubmatch(df)
	if build == nil {
		t.Fatalf("Dockerfile: no RUN CGO_ENABLED=0 go build … -o /out/tilegate ./cmd/tilegate line")
	}
	var finalStage string
	if i := strings.LastIndex(df, "\nFROM "); i >= 0 {
		finalStage = df[i:]
	}
	if !regexp.MustCompile(`(?m)^FROM golang:\S+ AS build$`).MatchString(df) {
		t.Errorf("Dockerfile: no golang build stage")
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^FROM gcr.io/distroless/static\S*:nonroot$`),
		regexp.MustCompile(`(?m)^USER 65532:65532$`),
		regexp.MustCompile(`(?m)^HEALTHCHECK .*\\\n\s+CMD \["/usr/local/bin/tilegate", "healthcheck"\]$`),
		regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/tilegate"\]$`),
		regexp.MustCompile(`TILEGATE_ADDR=:8080`),
	} {
		if !want.MatchString(finalStage) {
			t.Errorf("Dockerfile's final stage does not match %s", want)
		}
	}

	// The build stage's command, flags as written (-ldflags='-s -w' unquoted by hand).
	args := []string{"build"}
	for _, f := range strings.Fields(strings.ReplaceAll(build[1], "'-s -w'", "-s\x00-w")) {
		args = append(args, strings.ReplaceAll(f, "\x00", " "))
	}
	bin := filepath.Join(t.TempDir(), "tilegate")
	cmd := exec.Command("go", append(args, "-o", bin, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	f, err := elf.Open(bin)
	must(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the image's binary is dynamically linked (%v): it would not run on distroless/static", p.Type)
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "tilegate ") {
		t.Errorf("static binary: version %q %v", out, err)
	}

	t.Run("image", func(t *testing.T) {
		if _, err := exec.LookPath("docker"); err != nil {
			t.Skip("no docker client: the image is not built here")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := exec.CommandContext(ctx, "docker", "info").Run(); err != nil {
			t.Skipf("no Docker daemon answers (docker info: %v): the image is not built here", err)
		}
		tag := "tilegate-test:" + randHex(4)
		if out, err := exec.Command("docker", "build", "-t", tag, filepath.Join("..", "..")).CombinedOutput(); err != nil {
			t.Fatalf("docker build: %v\n%s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
		out, err := exec.Command("docker", "run", "-d", "-e", "TILEGATE_PUBLIC_URL=http://localhost:8080", tag).Output()
		if err != nil {
			t.Fatalf("docker run: %v", err)
		}
		id := strings.TrimSpace(string(out))
		t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
		waitFor(t, 90*time.Second, "the container to be healthy", func() (bool, string) {
			out, _ := exec.Command("docker", "inspect", "-f", "{{.State.Health.Status}}", id).Output()
			return strings.TrimSpace(string(out)) == "healthy", string(out)
		})
		if out, _ := exec.Command("docker", "exec", id, "/usr/local/bin/tilegate", "version").Output(); !strings.HasPrefix(string(out), "tilegate ") {
			t.Errorf("version in the container: %q", out)
		}
	})
}

// TestSystemdUnit checks deploy/tilegate.service with systemd-analyze: verify (syntax, the
// executable) and security --offline (its exposure level at most 2.0, "OK"), and that its example
// environment file names only variables tilegate reads and starts a server. The unit is not
// started: this machine runs no systemd as PID 1.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	unit := repoFile(t, "deploy/tilegate.service")
	for _, line := range []string{
		"DynamicUser=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
		"CapabilityBoundingSet=", "StateDirectory=tilegate", "EnvironmentFile=/etc/tilegate/tilegate.env",
		"Restart=on-failure", "ExecStart=/usr/local/bin/tilegate serve",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(unit) {
			t.Errorf("deploy/tilegate.service lacks %q", line)
		}
	}

	env := map[string]string{}
	var envList []string
	sc := bufio.NewScanner(strings.NewReader(repoFile(t, "deploy/tilegate.env.example")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("tilegate.env.example: %q is not NAME=value", line)
		}
		env[k] = v
		envList = append(envList, line)
	}
	help := runCLIEnv(t, environ(""), "serve", "--help")
	help.wantOK(t)
	for k := range env {
		if !strings.Contains(help.stdout, "($"+k+")") {
			t.Errorf("tilegate.env.example sets %s, which tilegate serve does not read", k)
		}
	}
	if env["TILEGATE_PUBLIC_URL"] == "" {
		t.Errorf("tilegate.env.example sets no TILEGATE_PUBLIC_URL (required with TILEGATE_ADDR=%s)", env["TILEGATE_ADDR"])
	}
	// The example's settings start a server, the database and directories swapped for the test's.
	srv := startServer(t, migratedSQLite(t), append(envList, "DATABASE_URL="+migratedSQLite(t),
		"TILEGATE_DATA_DIR="+t.TempDir(), "TILEGATE_ADMIN_ADDR=127.0.0.1:0")...)
	if docs := srv.logsWith("tilegate serving"); len(docs) != 1 || !strings.Contains(docs[0], env["TILEGATE_PUBLIC_URL"]+"/docs") {
		t.Errorf("serving line %q, want the example's public URL", docs)
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not found: the unit is not verified here")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tilegate.service")
	must(t, os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/tilegate", binary)), 0o644))
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=20", path).CombinedOutput() // of 100: 2.0 as printed
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v)\n%s", err, out)
	}
	if m := regexp.MustCompile(`Overall exposure level for tilegate.service: (\S+)`).FindSubmatch(out); m == nil {
		t.Errorf("systemd-analyze security printed no exposure level:\n%s", out)
	} else {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	}
}
