// Command tiles measures tile throughput over loopback, side by side in one run: a public
// dataset (no credential check), a private dataset read with a tile token, and a private dataset
// read with an API key that has origin rules (the requests send a matching Origin). Rounds
// interleave the modes so machine noise hits them alike; it prints tiles/second per mode, the
// server's CPU per tile (when it runs as a process), and the ratios token/public and key/public.
// A fourth mode reads the private dataset with a key that has every rule (issue #10: origins, a
// user agent, 10 datasets, 10 IP ranges and an expiry; the one that matches is listed last) and
// prints its ratio to the origins-only key; -mode key-all-rules runs just those two.
//
//	go run ./bench/tiles [-mode all|key-all-rules] [-rounds 3] [-duration 3s] [-concurrency 16] [-inprocess] [-cpuprofile f] [-sqlite] [-server-cpu 0]
//
// -server-cpu starts the server under taskset on that CPU; pin this process to another one
// (taskset -c 1 go run ./bench/tiles -server-cpu 0) so server and load do not share a core.
//
// The API keys have a rate limit and a monthly quota that never bind, so their modes pay for the
// limits as well as for usage counting. -usage-baseline also starts a second tilegate on the same
// database with TILEGATE_USAGE_OFF=true (no counting, no limits; pinned like the first) and runs
// every mode against both, interleaved, printing throughput and server CPU with usage over
// without (issue #11: counting and limits cost at most 5%).
//
// By default it builds and starts the real tilegate binary; on PostgreSQL when one answers at
// TEST_DATABASE_URL (or the local default, in a scratch database dropped afterwards), else on
// SQLite. -inprocess serves from this process instead (then -cpuprofile profiles server and
// client together). Only 127.0.0.1 is ever contacted.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
)

type options struct {
	rounds      int
	duration    time.Duration
	concurrency int
	inProcess   bool
	cpuProfile  string
	sqlite      bool
	pgURL       string
	mode        string
	serverCPU   string
	baseline    bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds per mode")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of one mode's run in a round")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent requests")
	flag.BoolVar(&o.inProcess, "inprocess", false, "serve from this process instead of the tilegate binary")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured rounds (with -inprocess)")
	flag.BoolVar(&o.sqlite, "sqlite", false, "use SQLite even when PostgreSQL answers")
	flag.StringVar(&o.pgURL, "postgres", scratchdb.BaseURL(),
		"PostgreSQL server to create a scratch database on")
	flag.StringVar(&o.mode, "mode", "all", "all: every mode; key-all-rules: the origins-only key against the key with every rule")
	flag.StringVar(&o.serverCPU, "server-cpu", "", "run the server under taskset -c on this CPU list")
	flag.BoolVar(&o.baseline, "usage-baseline", false, "also run every mode against a tilegate with TILEGATE_USAGE_OFF=true")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

type mode struct {
	name    string
	urls    []string
	headers http.Header
	// server is the index of the tilegate process the mode's URLs go to (1: usage off).
	server int
	// refresh, when set, gives the mode new URLs before each measurement: a tile token is
	// valid only to the end of its 900 s window, which a long run crosses.
	refresh func() ([]string, error)
}

type result struct {
	n    int64
	wall time.Duration
	cpu  time.Duration
}

func run(o options) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "tilegate-bench-tiles-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	dbURL, dbName := "sqlite:"+filepath.Join(tmp, "tilegate.db"), "SQLite"
	if !o.sqlite {
		if db, err := scratchdb.Create(ctx, o.pgURL, "tilegate_bench_tiles"); err == nil {
			defer db.Drop()
			dbURL, dbName = db.URL, "PostgreSQL"
		} else {
			fmt.Fprintf(os.Stderr, "PostgreSQL unavailable (%v): using SQLite\n", err)
		}
	}
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	acct, err := st.CreateAccount(ctx, "bench")
	if err != nil {
		return err
	}

	dataDir := filepath.Join(tmp, "data")
	var base string
	var bases []string                    // every server, the measured one first
	var serverCPUs []func() time.Duration // their CPU time
	serverCPU := func() time.Duration { return 0 }
	if o.inProcess && o.baseline {
		return fmt.Errorf("-usage-baseline needs the tilegate binary (not -inprocess)")
	}
	if o.inProcess {
		srv, err := server.New(st, server.Config{
			DataDir: dataDir, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		})
		if err != nil {
			return err
		}
		defer srv.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		base = "http://" + ln.Addr().String()
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
	} else {
		bin := filepath.Join(tmp, "tilegate")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tilegate").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
		env := []string{"DATABASE_URL=" + dbURL, "TILEGATE_DATA_DIR=" + dataDir, "TILEGATE_ADMIN_ADDR="}
		var stop func()
		base, serverCPU, stop, err = startBinary(bin, o.serverCPU, env)
		if err != nil {
			return err
		}
		defer stop()
		if o.baseline {
			offBase, offCPU, offStop, err := startBinary(bin, o.serverCPU, append(env, "TILEGATE_USAGE_OFF=true"))
			if err != nil {
				return err
			}
			defer offStop()
			bases = append(bases, offBase)
			serverCPUs = append(serverCPUs, offCPU)
		}
	}
	bases = append([]string{base}, bases...)
	serverCPUs = append([]func() time.Duration{serverCPU}, serverCPUs...)

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: o.concurrency, MaxConnsPerHost: o.concurrency, DisableCompression: true,
	}}
	for _, b := range bases {
		if err := loadgen.WaitReady(client, b); err != nil {
			return err
		}
	}
	auth := "Bearer " + acct.Token
	file := filepath.Join(tmp, "bench.mbtiles")
	coords, err := writeTiles(file)
	if err != nil {
		return err
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ids := map[string]string{}
	for _, vis := range []string{"public", "private"} {
		var d struct{ ID string }
		if err := loadgen.Call(client, "POST", base+"/api/datasets/", auth, "application/json",
			`{"name":"bench `+vis+`","kind":"vector","visibility":"`+vis+`"}`, 201, &d); err != nil {
			return err
		}
		if err := loadgen.Call(client, "PUT", base+"/api/datasets/"+d.ID+"/tiles/", auth, "application/octet-stream", string(body), 200, nil); err != nil {
			return err
		}
		ids[vis] = d.ID
	}
	var key struct{ Token string }
	if err := loadgen.Call(client, "POST", base+"/v1/api_keys", auth, "application/json",
		`{"origins":["https://maps.bench.example","*.bench.example","http://localhost:3000"],`+limits+`}`, 200, &key); err != nil {
		return err
	}
	tokenQuery := func() (string, error) {
		var tok struct{ Tiles []string }
		if err := loadgen.Call(client, "GET", base+"/api/tiles/token/"+ids["private"]+"/", auth, "", "", 200, &tok); err != nil {
			return "", err
		}
		return tok.Tiles[0][strings.IndexByte(tok.Tiles[0], '?'):], nil
	}

	urls := func(b, id, query string) []string {
		out := make([]string, len(coords))
		for i, c := range coords {
			out[i] = fmt.Sprintf("%s/api/tiles/%s/%d/%d/%d.pbf%s", b, id, c[0], c[1], c[2], query)
		}
		return out
	}
	allRules, err := allRulesKey(client, base, auth, ids["private"])
	if err != nil {
		return err
	}
	modesOf := func(si int) []mode {
		b, suffix := bases[si], ""
		if si == 1 {
			suffix = " [usage off]"
		}
		keyMode := mode{name: "private, API key + origin" + suffix, urls: urls(b, ids["private"], "?key="+key.Token),
			headers: http.Header{"Origin": {"https://www.bench.example"}}, server: si}
		allMode := mode{name: "private, API key, all rules" + suffix, urls: urls(b, ids["private"], "?key="+allRules),
			headers: http.Header{"Origin": {"https://www.bench.example"}, "User-Agent": {"bench-map/1.0 (Go)"}}, server: si}
		if o.mode == "key-all-rules" {
			return []mode{keyMode, allMode}
		}
		tokenMode := mode{name: "private, tile token" + suffix, server: si, refresh: func() ([]string, error) {
			q, err := tokenQuery()
			return urls(b, ids["private"], q), err
		}}
		return []mode{
			{name: "public (no check)" + suffix, urls: urls(b, ids["public"], ""), server: si},
			tokenMode, keyMode, allMode,
		}
	}
	modes := modesOf(0)
	measured := len(modes) // the modes of the first server; with -usage-baseline the second's follow
	if o.baseline {
		modes = append(modes, modesOf(1)...)
	}
	refresh := func(m *mode) error {
		if m.refresh == nil {
			return nil
		}
		u, err := m.refresh()
		if err != nil {
			return fmt.Errorf("%s: new credentials: %w", m.name, err)
		}
		m.urls = u
		return nil
	}
	for i := range modes { // warm up connections, caches and the tile file
		m := &modes[i]
		if err := refresh(m); err != nil {
			return err
		}
		if _, err := load(client, *m, o.concurrency, 300*time.Millisecond); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	totals := make([]result, len(modes))
	perRound := make([][]float64, len(modes))
	for r := range o.rounds {
		for j := range modes {
			i := (j + r) % len(modes) // rotate the order too
			if err := refresh(&modes[i]); err != nil {
				return err
			}
			cpu0 := serverCPUs[modes[i].server]()
			start := time.Now()
			n, err := load(client, modes[i], o.concurrency, o.duration)
			if err != nil {
				return fmt.Errorf("%s: %w", modes[i].name, err)
			}
			wall := time.Since(start)
			totals[i].n += n
			totals[i].wall += wall
			totals[i].cpu += serverCPUs[modes[i].server]() - cpu0
			perRound[i] = append(perRound[i], float64(n)/wall.Seconds())
		}
	}

	where := "the tilegate binary"
	if o.inProcess {
		where = "in process"
	}
	fmt.Printf("tilegate tiles on %s, %s, loopback; %d rounds x %v per mode, interleaved, concurrency %d, %d distinct tiles\n\n",
		dbName, where, o.rounds, o.duration, o.concurrency, len(coords))
	fmt.Printf("%-40s %12s %28s", "mode", "tiles/s", "per round")
	if !o.inProcess {
		fmt.Printf(" %18s", "server CPU/tile")
	}
	fmt.Println()
	rate := make([]float64, len(modes))
	cpuPer := make([]float64, len(modes))
	for i, m := range modes {
		t := totals[i]
		rate[i] = float64(t.n) / t.wall.Seconds()
		rounds := make([]string, len(perRound[i]))
		for k, v := range perRound[i] {
			rounds[k] = strconv.Itoa(int(math.Round(v)))
		}
		fmt.Printf("%-40s %12.0f %28s", m.name, rate[i], strings.Join(rounds, " "))
		if !o.inProcess {
			cpuPer[i] = float64(t.cpu.Microseconds()) / float64(t.n)
			fmt.Printf(" %15.1f µs", cpuPer[i])
		}
		fmt.Println()
	}
	k, a := measured-2, measured-1
	if o.mode != "key-all-rules" {
		fmt.Printf("\ntoken/public: %.2f (target >= 0.90)\nkey/public:   %.2f (target >= 0.85)\n", rate[1]/rate[0], rate[2]/rate[0])
		if !o.inProcess {
			fmt.Printf("server CPU per tile, public/token: %.2f, public/key: %.2f\n", cpuPer[0]/cpuPer[1], cpuPer[0]/cpuPer[2])
		}
	}
	fmt.Printf("key all rules/key origins: %.3f tiles/s (target >= 0.95)\n", rate[a]/rate[k])
	if !o.inProcess {
		fmt.Printf("server CPU per tile, key origins/key all rules: %.3f\n", cpuPer[k]/cpuPer[a])
	}
	if o.baseline {
		fmt.Println("\nwith usage counting and limits vs usage off (target: at most 5% of throughput):")
		for i := range measured {
			fmt.Printf("  %-28s tiles/s %.3f, server CPU per tile %.3f\n", modes[i].name, rate[i]/rate[i+measured], cpuPer[i]/cpuPer[i+measured])
		}
	}
	return nil
}

// limits are the API keys' rate limit and monthly quota: they never bind, but every request of
// the keys' modes pays for checking them.
const limits = `"rate_limit":{"requests_per_second":100000,"burst":1000000},"monthly_quota":1000000000000`

// startBinary starts `tilegate serve` on a free loopback port with env (under taskset -c cpus when
// given: taskset execs it, so the pid stays the server's) and returns its base URL, a reader of
// its CPU time, and its stop.
func startBinary(bin, cpus string, env []string) (string, func() time.Duration, func(), error) {
	addr, err := loadgen.FreeAddr()
	if err != nil {
		return "", nil, nil, err
	}
	cmd := exec.Command(bin, "serve")
	if cpus != "" {
		cmd = exec.Command("taskset", "-c", cpus, bin, "serve")
	}
	cmd.Env = append(append(os.Environ(), env...), "TILEGATE_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard // the request log is still written, to a pipe
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	pid := cmd.Process.Pid
	cpu := func() time.Duration { d, _ := loadgen.ProcessCPU(pid); return d }
	return "http://" + addr, cpu, func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }, nil
}

// allRulesKey creates a key with every rule of issue #10 that still admits the benchmark's
// requests to dataset: the origins of the origins-only key, a user agent, 10 datasets and 10 IP
// ranges (the matching one listed last, so every rule is checked in full) and an expiry.
func allRulesKey(c *http.Client, base, auth, dataset string) (string, error) {
	var datasets []string
	for i := range 9 {
		var d struct{ ID string }
		if err := loadgen.Call(c, "POST", base+"/api/datasets/", auth, "application/json",
			fmt.Sprintf(`{"name":"bench other %d","kind":"vector"}`, i), 201, &d); err != nil {
			return "", err
		}
		datasets = append(datasets, `"`+d.ID+`"`)
	}
	datasets = append(datasets, `"`+dataset+`"`)
	var ranges []string
	for i := range 9 {
		ranges = append(ranges, fmt.Sprintf(`"10.%d.0.0/16"`, i))
	}
	ranges = append(ranges, `"127.0.0.0/8"`)
	body := fmt.Sprintf(`{"origins":["https://maps.bench.example","*.bench.example","http://localhost:3000"],`+
		`"user_agent":"bench-map/","dataset_ids":[%s],"ip_ranges":[%s],"expires_at":"%s",`+limits+`}`,
		strings.Join(datasets, ","), strings.Join(ranges, ","), time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	var key struct{ Token string }
	if err := loadgen.Call(c, "POST", base+"/v1/api_keys", auth, "application/json", body, 200, &key); err != nil {
		return "", err
	}
	return key.Token, nil
}

// load runs concurrency workers requesting m's URLs in a shuffled cycle for d and returns how
// many tiles they got; any answer but 200 is an error.
func load(c *http.Client, m mode, concurrency int, d time.Duration) (int64, error) {
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := mrand.Perm(len(m.urls))
			buf := make([]byte, 32<<10)
			for i := w; time.Now().Before(deadline); i++ {
				req, _ := http.NewRequest("GET", m.urls[order[i%len(order)]], nil)
				for k, v := range m.headers {
					req.Header[k] = v
				}
				req.Header.Set("Accept-Encoding", "gzip")
				res, err := c.Do(req)
				if err == nil {
					_, err = io.CopyBuffer(io.Discard, res.Body, buf)
					res.Body.Close()
					if err == nil && res.StatusCode != 200 {
						err = fmt.Errorf("%s: status %d", req.URL.Path, res.StatusCode)
					}
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load(), firstErr
}

// writeTiles writes an MBTiles file with every tile of zooms 0 to 5 (1365 tiles of about 2 KiB,
// gzipped as vector tiles usually are) and returns their z/x/y.
func writeTiles(path string) ([][3]int, error) {
	tiles := map[[3]int][]byte{}
	var coords [][3]int
	for z := 0; z <= 5; z++ {
		for x := 0; x < 1<<z; x++ {
			for y := 0; y < 1<<z; y++ {
				data := make([]byte, 2048)
				_, _ = rand.Read(data)
				data[0] = 0x1a
				tiles[[3]int{z, x, y}] = data
				coords = append(coords, [3]int{z, x, y})
			}
		}
	}
	slices.SortFunc(coords, func(a, b [3]int) int { return slices.Compare(a[:], b[:]) })
	return coords, mbtiles.WriteTestFile(path, mbtiles.TestFile{Format: "pbf", MinZoom: 0, MaxZoom: 5, Tiles: tiles, Gzip: true})
}
