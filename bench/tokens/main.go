// Command tokens compares, against a real tilegate process on PostgreSQL over loopback, one
// batch token request for N datasets with N concurrent single-token requests for the same
// datasets, and batches of 1 and 50. It prints wall-time and server-CPU ratios measured side by
// side in one run (rounds interleave the modes, so machine noise hits them alike).
//
//	go run ./bench/tokens [-rounds 5] [-iters 100]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/scratchdb"
)

func main() {
	rounds := flag.Int("rounds", 5, "interleaved rounds per mode")
	iters := flag.Int("iters", 100, "requests (or request groups) per mode per round")
	pgURL := flag.String("postgres", scratchdb.BaseURL(), "PostgreSQL server to create a scratch database on")
	flag.Parse()
	if err := run(*pgURL, *rounds, *iters); err != nil {
		log.Fatal(err)
	}
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
	db, err := scratchdb.Create(ctx, pgURL, "tilegate_bench_tokens")
	if err != nil {
		return err
	}
	defer db.Drop()
	dbURL := db.URL

	env := append(os.Environ(), "DATABASE_URL="+dbURL, "TILEGATE_DATA_DIR="+tmp)
	out, err := cmd(env, bin, "admin", "create-account", "--name", "bench").Output()
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	var acct struct{ Token string }
	if err := json.Unmarshal(out, &acct); err != nil {
		return err
	}
	addr, err := loadgen.FreeAddr()
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
	if err := loadgen.WaitReady(client, base); err != nil {
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
		if err := loadgen.Call(client, "POST", base+"/api/datasets/", auth, "application/json", body, 201, &d); err != nil {
			return err
		}
		ids = append(ids, d.ID)
	}
	batch := func(n int) func() error {
		body := `{"dataset_ids":["` + strings.Join(ids[:n], `","`) + `"]}`
		return func() error {
			return loadgen.Call(client, "POST", base+"/api/tiles/tokens/", auth, "application/json", body, 200, nil)
		}
	}
	singles := func(n int) func() error {
		return func() error {
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for _, id := range ids[:n] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- loadgen.Call(client, "GET", base+"/api/tiles/token/"+id+"/", auth, "", "", 200, nil)
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
			cpu0, err := loadgen.ProcessCPU(srv.Process.Pid)
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
			cpu1, _ := loadgen.ProcessCPU(srv.Process.Pid)
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
	// /proc counts CPU in 10 ms ticks: a mode that used fewer than 20 of them has no ratio worth
	// printing.
	ratio := func(a, b time.Duration) string { return fmt.Sprintf("%.2fx", float64(a)/float64(b)) }
	cpuRatio := func(a, b time.Duration) string {
		if a < 200*time.Millisecond || b < 200*time.Millisecond {
			return "n/a (too little CPU measured: raise -iters)"
		}
		return fmt.Sprintf("%.2fx", float64(a)/float64(b))
	}
	fmt.Printf("\n20 singles / batch of 20: wall %s, server CPU %s (target: CPU >= 5x)\n",
		ratio(totals[1].wall, totals[0].wall), cpuRatio(totals[1].cpu, totals[0].cpu))
	fmt.Printf("batch of 50 / batch of 1: wall %s, server CPU %s (target: < 3x)\n",
		ratio(totals[3].wall, totals[2].wall), cpuRatio(totals[3].cpu, totals[2].cpu))
	return nil
}

func cmd(env []string, bin string, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = env
	return c
}
