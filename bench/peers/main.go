// Command peers measures tilegate's tile path side by side with consbio/mbtileserver, the
// MBTiles server a user would pick instead, on the same files in one run (issue #9).
//
//	go run ./bench/peers [-rounds 3] [-duration 3s] [-connections 16] [-sizes small,large]
//	                     [-backends sqlite,postgres] [-only token,public] [-peer TARBALL] [-cache DIR]
//
// It builds mbtileserver from its source tarball (into a cache directory, never the repo) and
// tilegate from this checkout, generates two MBTiles files (about 9,300 small vector tiles of
// about 100 B gzipped, and a few hundred of about 50 KB), and serves each file from both:
// mbtileserver public and in its HMAC-signed mode; tilegate as a public dataset, a private
// dataset read with an API key that has origin rules, and one read with a tile token, on the
// SQLite and the PostgreSQL metadata backends. Every server is pinned to CPU 0 with taskset;
// the load generator (a child process of this program, GOMAXPROCS=1) to CPU 1. Each round
// runs every mode once, in a rotated order, each right after a run of mbtileserver public on
// the same file (its pair for the ratios), with credentials minted afresh for it, requesting
// every tile in a new shuffled order over keep-alive connections; every answer must be 200 and
// a sample of bodies must equal the file's bytes. It prints, per mode, medians over rounds of
// tiles/s, server CPU per tile (from /proc utime+stime), p50/p99 latency as the client sees it,
// the server's peak RSS, and the ratios to mbtileserver public against the targets.
// Only 127.0.0.1 is contacted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/internal/testpeer"
)

type options struct {
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	connections int
	checks      int
	sizes       []string
	backends    []string
	peer        string
	cache       string
	pgURL       string
	smallTiles  int
	largeTiles  int
	only        string
	wrk         bool
	tmp         string
	// hotTiles is tilegate's TILEGATE_HOT_TILE_CACHE_BYTES; negative: its default.
	hotTiles int64
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-loadgen" {
		if err := runLoadChild(); err != nil {
			log.Fatal(err)
		}
		return
	}
	var o options
	var sizes, backends string
	cache, _ := os.UserCacheDir()
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; each runs every mode once")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured length of one mode in a round")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each measurement")
	flag.IntVar(&o.connections, "connections", 16, "keep-alive connections of the load generator")
	flag.IntVar(&o.checks, "checks", 512, "tiles per mode and round whose bodies are compared with the file")
	flag.StringVar(&sizes, "sizes", "small,large", "tile files: small (~100 B tiles), large (~50 KB)")
	flag.StringVar(&backends, "backends", "sqlite,postgres", "tilegate metadata databases")
	flag.StringVar(&o.peer, "peer", "/work/shared/peers/mbtileserver-3358834.tar.gz", "mbtileserver source tarball")
	flag.StringVar(&o.cache, "cache", filepath.Join(cache, "tilegate-bench-peers"), "where the peer binary is built and kept")
	flag.StringVar(&o.pgURL, "postgres", scratchdb.BaseURL(), "PostgreSQL server to create a scratch database on")
	flag.IntVar(&o.smallTiles, "small-tiles", 9348, "tiles in the small-tile file")
	flag.IntVar(&o.largeTiles, "large-tiles", 600, "tiles in the large-tile file")
	flag.Int64Var(&o.hotTiles, "hot-tile-cache-bytes", -1, "tilegate's TILEGATE_HOT_TILE_CACHE_BYTES (0: no hot-tile cache; negative: tilegate's default)")
	flag.StringVar(&o.only, "only", "", "measure only the modes whose name contains one of these comma-separated words (mbtileserver public is always kept)")
	flag.BoolVar(&o.wrk, "wrk", false, "generate the load with wrk (must be installed) instead of the Go load generator")
	flag.Parse()
	o.sizes = strings.Split(sizes, ",")
	o.backends = strings.Split(backends, ",")
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

// mode is one way of reading one file from one server.
type mode struct {
	name     string
	size     string
	proc     *process
	set      *tileSet
	prefix   string // path up to the tile coordinates
	headers  [][2]string
	mint     func() (string, error) // the query carrying a fresh credential ("" when none)
	baseline bool                   // mbtileserver public: what the ratios divide by
	results  []jobResult
	pairs    []jobResult // the baseline's run just before each of results
}

func run(o options) error {
	ctx := context.Background()
	if _, err := os.Stat("cmd/tilegate"); err != nil {
		return errors.New("run from the repository root (make bench-peers)")
	}
	tmp, err := os.MkdirTemp("", "tilegate-bench-peers-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	o.tmp = tmp
	if o.wrk {
		if _, err := exec.LookPath("wrk"); err != nil {
			return fmt.Errorf("-wrk: %w", err)
		}
	}

	peerBin, err := testpeer.Build(o.peer, o.cache)
	if err != nil {
		return err
	}
	tgBin, err := buildTilegate(tmp)
	if err != nil {
		return err
	}

	tilesDir := filepath.Join(tmp, "tiles")
	if err := os.MkdirAll(tilesDir, 0o755); err != nil {
		return err
	}
	sets := map[string]*tileSet{}
	for _, size := range o.sizes {
		n, raw := o.smallTiles, 100
		switch size {
		case "small":
		case "large":
			n, raw = o.largeTiles, 50_000
		default:
			return fmt.Errorf("unknown size %q", size)
		}
		ts, err := writeTileSet(filepath.Join(tilesDir, size+".mbtiles"), size, n, raw, uint64(len(size)))
		if err != nil {
			return fmt.Errorf("write %s tiles: %w", size, err)
		}
		sets[size] = ts
	}

	client := &http.Client{Timeout: 60 * time.Second}
	var procs []*process
	defer func() {
		for _, p := range procs {
			p.stop()
		}
		for _, db := range scratchDrops {
			if err := db.Drop(); err != nil {
				fmt.Fprintf(os.Stderr, "drop scratch database: %v\n", err)
			}
		}
	}()
	env := cleanEnv()

	modes, peers, err := startPeers(o, peerBin, tilesDir, env, sets, client)
	procs = append(procs, peers...)
	if err != nil {
		return err
	}

	for _, backend := range o.backends {
		tm, p, err := startTilegate(ctx, o, backend, tgBin, tmp, env, sets, client)
		if p != nil {
			procs = append(procs, p)
		}
		if errors.Is(err, errNoPostgres) {
			fmt.Fprintf(os.Stderr, "skipping tilegate on PostgreSQL: %v\n", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("tilegate on %s: %w", backend, err)
		}
		modes = append(modes, tm...)
	}

	modes = slices.DeleteFunc(modes, func(m *mode) bool { return !m.baseline && !selected(o.only, m.name) })
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, p := range procs {
		fmt.Fprintf(os.Stderr, "%s: pid %d, http://%s\n", p.name, p.pid(), p.addr)
	}
	fmt.Fprintf(os.Stderr, "%d modes, %d rounds x %v (+%v warm-up) each\n", len(modes), o.rounds, o.duration, o.warmup)
	if err := runRounds(self, o, modes); err != nil {
		return err
	}
	report(os.Stdout, o, modes, sets)
	return nil
}

// runRounds measures every mode once per round. The machine is shared, so the load on CPU 0
// drifts within a round: every mode is paired with a run of mbtileserver public on the same
// file just before it, and ratios are taken within pairs.
func runRounds(self string, o options, modes []*mode) error {
	var measured []*mode
	bases := map[string]*mode{}
	for _, m := range modes {
		if m.baseline {
			bases[m.size] = m
		} else {
			measured = append(measured, m)
		}
	}
	one := func(r int, m *mode) (jobResult, error) {
		res, err := measure(self, o, m)
		if err != nil {
			return res, fmt.Errorf("round %d, %s (%s): %w", r+1, m.name, m.size, err)
		}
		m.results = append(m.results, res)
		fmt.Fprintf(os.Stderr, "round %d %-32s %-5s %8.0f tiles/s %6.1f µs CPU/tile\n",
			r+1, m.name, m.size, float64(res.N)/res.Wall.Seconds(), perTile(res.ServerCPU, res.N))
		return res, nil
	}
	for r := range o.rounds {
		for k := range measured {
			m := measured[(k+r*5)%len(measured)] // a different order each round
			base, err := one(r, bases[m.size])
			if err != nil {
				return err
			}
			if _, err := one(r, m); err != nil {
				return err
			}
			m.pairs = append(m.pairs, base)
		}
	}
	return nil
}

// startPeers starts mbtileserver twice, public and HMAC-signed, both serving every file of
// tilesDir, and returns their modes once each answers a tile of every file.
func startPeers(o options, bin, tilesDir string, env []string, sets map[string]*tileSet,
	client *http.Client) ([]*mode, []*process, error) {
	secret := randomHex(24)
	var modes []*mode
	var procs []*process
	for _, signed := range []bool{false, true} {
		addr, err := freeAddr()
		if err != nil {
			return modes, procs, err
		}
		host, port, _ := strings.Cut(addr, ":")
		args := []string{"--host", host, "-p", port, "-d", tilesDir, "--tiles-only"}
		name := "mbtileserver public"
		if signed {
			args = append(args, "-s", secret)
			name = "mbtileserver signed"
		}
		p, err := startPinned(name, addr, bin, env, args...)
		if err != nil {
			return modes, procs, err
		}
		procs = append(procs, p)
		for _, size := range o.sizes {
			ts := sets[size]
			m := &mode{name: name, size: size, proc: p, set: ts, baseline: !signed,
				prefix: "/services/" + ts.name + "/tiles/", mint: func() (string, error) { return "", nil }}
			if signed {
				m.mint = func() (string, error) { return peerSignature(secret, ts.name) }
			}
			q, err := m.mint()
			if err != nil {
				return modes, procs, err
			}
			c := ts.coords[0]
			if err := waitFor(client, p, fmt.Sprintf("http://%s%s%d/%d/%d.pbf%s", addr, m.prefix, c[0], c[1], c[2], q)); err != nil {
				return modes, procs, err
			}
			modes = append(modes, m)
		}
	}

	return modes, procs, nil
}

// measure mints m's credential and runs one load-generator child for it.
func measure(self string, o options, m *mode) (jobResult, error) {
	query, err := m.mint()
	if err != nil {
		return jobResult{}, fmt.Errorf("mint credential: %w", err)
	}
	j := job{
		Addr: m.proc.addr, Headers: m.headers, Connections: o.connections,
		Warmup: o.warmup, Duration: o.duration, ServerPID: m.proc.pid(),
		Paths: make([]string, len(m.set.coords)), Order: mrand.Perm(len(m.set.coords)),
		Checks: map[int][32]byte{},
	}
	for i, c := range m.set.coords {
		j.Paths[i] = fmt.Sprintf("%s%d/%d/%d.pbf%s", m.prefix, c[0], c[1], c[2], query)
	}
	for _, i := range mrand.Perm(len(j.Paths))[:min(o.checks, len(j.Paths))] {
		j.Checks[i] = m.set.stored[i]
	}
	run := func() (jobResult, error) { return runChild(self, j) }
	if o.wrk {
		run = func() (jobResult, error) { return runWrk(o.tmp, j) }
	}
	res, err := run()
	if err == nil && (res.N == 0 || res.Checked == 0) {
		err = fmt.Errorf("%d tiles served, %d sampled ones compared: run longer", res.N, res.Checked)
	}
	return res, err
}

func perTile(d time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(n)
}

// cleanEnv is this process's environment without what would reconfigure a server behind the
// harness's back (mbtileserver reads HOST and PORT; tilegate its TILEGATE_ and DATABASE_URL).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOST" || k == "PORT" || k == "DATABASE_URL" || k == "GOMAXPROCS" || strings.HasPrefix(k, "TILEGATE_") ||
			k == "HMAC_SECRET_KEY" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// selected tells whether name contains one of the comma-separated words of only (all when empty).
func selected(only, name string) bool {
	if only == "" {
		return true
	}
	for _, w := range strings.Split(only, ",") {
		if w != "" && strings.Contains(name, w) {
			return true
		}
	}
	return false
}
