// Command tokens compares, against a real tilegate process on PostgreSQL over loopback, one
// batch token request for N datasets with N concurrent single-token requests for the same
// datasets, and batches of 1 and 50. It prints wall-time and server-CPU ratios measured side by
// side in one run (rounds interleave the modes, so machine noise hits them alike).
//
//	go run ./bench/tokens [-rounds 5] [-iters 100]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	rounds := flag.Int("rounds", 5, "interleaved rounds per mode")
	iters := flag.Int("iters", 100, "requests (or request groups) per mode per round")
	pgURL := flag.String("postgres", envOr("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL server to create a scratch database on")
	flag.Parse()
	if err := run(*pgURL, *rounds, *iters); err != nil {
		log.Fatal(err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type result struct {
	wall time.Duration
	cpu  time.Duration
	n    int
}

func run(pgURL string, rounds, iters int) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "tilegate-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "tilegate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tilegate").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	dbURL, drop, err := scratchDB(ctx, pgURL)
	if err != nil {
		return err
	}
	defer drop()

	env := append(os.Environ(), "DATABASE_URL="+dbURL, "TILEGATE_DATA_DIR="+tmp)
	out, err := cmd(env, bin, "admin", "create-account", "--name", "bench").Output()
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	var acct struct{ Token string }
	if err := json.Unmarshal(out, &acct); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	srv := cmd(append(env, "TILEGATE_ADDR="+addr), bin, "serve")
	srv.Stderr = io.Discard
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}
	if err := waitReady(client, base); err != nil {
		return err
	}
	auth := "Bearer " + acct.Token
	var ids []string
	for i := range 50 {
		kind := "vector"
		if i%3 == 0 {
			kind = "raster"
		}
		body := fmt.Sprintf(`{"name":"d%d","kind":"%s"}`, i, kind)
		var d struct{ ID string }
		if err := call(client, "POST", base+"/api/datasets/", auth, body, 201, &d); err != nil {
			return err
		}
		ids = append(ids, d.ID)
	}
	batch := func(n int) func() error {
		body := `{"dataset_ids":["` + strings.Join(ids[:n], `","`) + `"]}`
		return func() error { return call(client, "POST", base+"/api/tiles/tokens/", auth, body, 200, nil) }
	}
	singles := func(n int) func() error {
		return func() error {
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for _, id := range ids[:n] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- call(client, "GET", base+"/api/tiles/token/"+id+"/", auth, "", 200, nil)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					return err
				}
			}
			return nil
		}
	}
	modes := []struct {
		name string
		fn   func() error
	}{
		{"batch of 20", batch(20)},
		{"20 concurrent singles", singles(20)},
		{"batch of 1", batch(1)},
		{"batch of 50", batch(50)},
	}
	for _, m := range modes { // warm up connections, caches and the credential
		for range 10 {
			if err := m.fn(); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
	}
	totals := make([]result, len(modes))
	for range rounds {
		for i, m := range modes {
			cpu0, err := processCPU(srv.Process.Pid)
			if err != nil {
				return err
			}
			start := time.Now()
			for range iters {
				if err := m.fn(); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			wall := time.Since(start)
			cpu1, _ := processCPU(srv.Process.Pid)
			totals[i].wall += wall
			totals[i].cpu += cpu1 - cpu0
			totals[i].n += iters
		}
	}
	fmt.Printf("tilegate token endpoints on PostgreSQL, loopback; %d rounds x %d per mode, interleaved\n\n", rounds, iters)
	fmt.Printf("%-24s %14s %18s\n", "mode", "wall/op", "server CPU/op")
	for i, m := range modes {
		t := totals[i]
		fmt.Printf("%-24s %14s %18s\n", m.name, (t.wall / time.Duration(t.n)).Round(time.Microsecond), (t.cpu / time.Duration(t.n)).Round(time.Microsecond))
	}
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
	fmt.Printf("\n20 singles / batch of 20: wall %.1fx, server CPU %.1fx (target: CPU >= 5x)\n",
		ratio(totals[1].wall, totals[0].wall), ratio(totals[1].cpu, totals[0].cpu))
	fmt.Printf("batch of 50 / batch of 1: wall %.2fx, server CPU %.2fx (target: < 3x)\n",
		ratio(totals[3].wall, totals[2].wall), ratio(totals[3].cpu, totals[2].cpu))
	return nil
}

func cmd(env []string, bin string, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = env
	return c
}

func call(c *http.Client, method, url, auth, body string, want int, out any) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, raw)
	}
	if out != nil {
		return json.NewDecoder(bytes.NewReader(raw)).Decode(out)
	}
	return nil
}

// processCPU reads a process's user+system CPU time from /proc.
func processCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitReady(c *http.Client, base string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := c.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("server at %s did not become ready", base)
}

func scratchDB(ctx context.Context, base string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("tilegate_bench_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	drop := func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	i := strings.LastIndex(base, "/")
	rest := base[i+1:]
	q := ""
	if j := strings.Index(rest, "?"); j >= 0 {
		q = rest[j:]
	}
	return base[:i+1] + name + q, drop, nil
}
