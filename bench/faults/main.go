// Command faults runs the real tilegate binary on a scratch PostgreSQL database behind a fault
// proxy (internal/faultproxy), keeps a steady mixed load on it (API key creates and lists, token
// batches, tiles by key and by token) and injects database faults one after another: a black
// hole, a cut of every connection, and a "restart" (cut, then connections refused for a while).
// For each fault it reports the requests that failed and their statuses, the time to recover
// (first success of a database-bound request started after the fault ended), and over the whole
// run the acknowledged writes lost (every key whose create was answered 200 must be in the
// database afterwards) and the 500s. Both must be 0; the program exits non-zero otherwise.
//
//	go run ./bench/faults [-blackhole 10s] [-restart 5s] [-clients-per-op 2]
//
// Only 127.0.0.1 is contacted; the shared PostgreSQL server is never stopped or reconfigured.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/faultproxy"
	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/store"
)

type options struct {
	blackHole, restart, settle, ttl time.Duration
	concurrency                     int
	pgURL                           string
}

func main() {
	var o options
	flag.DurationVar(&o.blackHole, "blackhole", 10*time.Second, "length of the black hole")
	flag.DurationVar(&o.restart, "restart", 5*time.Second, "how long new connections are refused in the simulated restart")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "normal load before the first fault and after each one")
	flag.DurationVar(&o.ttl, "tile-cache-ttl", 2*time.Second, "the server's TILEGATE_TILE_CACHE_TTL (short, so outages outlast it)")
	flag.IntVar(&o.concurrency, "clients-per-op", 2, "concurrent clients per kind of request")
	flag.StringVar(&o.pgURL, "postgres", scratchdb.BaseURL(), "PostgreSQL server to create a scratch database on")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

// op is one kind of request of the mixed load; db tells whether it needs the database on every
// call (tiles do not: they are served from the cache while it is fresh or stale-if-error).
type op struct {
	name string
	db   bool
	do   func(c *http.Client) (status int, created string)
}

// sample is one request: when it started and ended, and how it was answered (-1: no answer).
type sample struct {
	op         string
	db         bool
	start, end time.Time
	status     int
}

type recorder struct {
	mu      sync.Mutex
	samples []sample
	created []string // ids of keys whose create was answered 200
}

func (r *recorder) add(s sample, created string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, s)
	if created != "" {
		r.created = append(r.created, created)
	}
}

type fault struct {
	name       string
	start, end time.Time
}

func run(o options) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "tilegate-bench-faults-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	db, err := scratchdb.Create(ctx, o.pgURL, "tilegate_bench_faults")
	if err != nil {
		return fmt.Errorf("this benchmark needs PostgreSQL: %w", err)
	}
	defer db.Drop()
	st, err := store.Open(ctx, db.URL, store.Options{})
	if err != nil {
		return err
	}
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	acct, err := st.CreateAccount(ctx, "bench")
	st.Close()
	if err != nil {
		return err
	}

	u, err := url.Parse(db.URL)
	if err != nil {
		return err
	}
	proxy, err := faultproxy.Start(u.Host)
	if err != nil {
		return err
	}
	defer proxy.Close()
	u.Host = proxy.Addr()

	bin := filepath.Join(tmp, "tilegate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tilegate").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	addr, err := loadgen.FreeAddr()
	if err != nil {
		return err
	}
	logPath := filepath.Join(tmp, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+u.String(), "TILEGATE_ADDR="+addr,
		"TILEGATE_DATA_DIR="+filepath.Join(tmp, "data"), "TILEGATE_TILE_CACHE_TTL="+o.ttl.String(),
		"TILEGATE_AUTH_CACHE_TTL=1h")
	cmd.Stdout, cmd.Stderr = io.Discard, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	base := "http://" + addr
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	if err := loadgen.WaitReady(client, base); err != nil {
		return err
	}

	ops, err := setup(client, base, "Bearer "+acct.Token, tmp)
	if err != nil {
		return err
	}

	rec := &recorder{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Each client sends one kind of request, so requests that wait for the database do not
	// slow the tiles down.
	for w := range o.concurrency * len(ops) {
		op := ops[w%len(ops)]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := sample{op: op.name, db: op.db, start: time.Now()}
				status, created := op.do(client)
				s.end, s.status = time.Now(), status
				rec.add(s, created)
			}
		})
	}

	var faults []fault
	time.Sleep(o.settle)
	inject := func(name string, begin func(), length time.Duration, end func()) {
		f := fault{name: name, start: time.Now()}
		begin()
		time.Sleep(length)
		end()
		f.end = time.Now()
		faults = append(faults, f)
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, f.end.Sub(f.start).Round(time.Millisecond))
		time.Sleep(o.settle)
	}
	inject(fmt.Sprintf("black hole %v", o.blackHole), func() { proxy.SetMode(faultproxy.BlackHole) }, o.blackHole,
		func() { proxy.SetMode(faultproxy.Pass) })
	inject("cut every connection", func() { proxy.Cut() }, 0, func() {})
	inject(fmt.Sprintf("restart (cut, refuse %v)", o.restart), func() { proxy.SetMode(faultproxy.Refuse); proxy.Cut() }, o.restart,
		func() { proxy.SetMode(faultproxy.Pass) })
	close(stop)
	wg.Wait()

	lost, err := lostWrites(ctx, db.URL, rec.created)
	if err != nil {
		return err
	}
	return report(o, rec, faults, lost, logPath)
}

// setup creates a private dataset with tiles, an API key and a tile token, and returns the ops.
func setup(c *http.Client, base, auth, tmp string) ([]op, error) {
	var d struct{ ID string }
	if err := loadgen.Call(c, "POST", base+"/api/datasets/", auth, "application/json",
		`{"name":"faults","kind":"vector","visibility":"private"}`, 201, &d); err != nil {
		return nil, err
	}
	file := filepath.Join(tmp, "faults.mbtiles")
	tiles := map[[3]int][]byte{}
	for x := range 4 {
		for y := range 4 {
			tiles[[3]int{2, x, y}] = []byte(fmt.Sprintf("\x1a\x04t%d%d", x, y))
		}
	}
	if err := mbtiles.WriteTestFile(file, mbtiles.TestFile{Format: "pbf", MinZoom: 0, MaxZoom: 4, Tiles: tiles}); err != nil {
		return nil, err
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if err := loadgen.Call(c, "PUT", base+"/api/datasets/"+d.ID+"/tiles/", auth, "application/octet-stream", string(body), 200, nil); err != nil {
		return nil, err
	}
	var key struct{ Token string }
	if err := loadgen.Call(c, "POST", base+"/v1/api_keys", auth, "application/json", `{"name":"tiles"}`, 200, &key); err != nil {
		return nil, err
	}
	var tok struct{ Tiles []string }
	if err := loadgen.Call(c, "GET", base+"/api/tiles/token/"+d.ID+"/", auth, "", "", 200, &tok); err != nil {
		return nil, err
	}
	tokenQuery := tok.Tiles[0][strings.IndexByte(tok.Tiles[0], '?'):]

	var seq atomic.Int64
	send := func(c *http.Client, method, path, ctype, body string, withAuth bool) (int, []byte) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return -1, nil
		}
		if withAuth {
			req.Header.Set("Authorization", auth)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		res, err := c.Do(req)
		if err != nil {
			return -1, nil
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	tile := func(i int64, query string) string {
		return fmt.Sprintf("/api/tiles/%s/2/%d/%d.pbf%s", d.ID, i%4, (i/4)%4, query)
	}
	return []op{
		{"create key", true, func(c *http.Client) (int, string) {
			s, b := send(c, "POST", "/v1/api_keys", "application/json", fmt.Sprintf(`{"name":"load %d"}`, seq.Add(1)), true)
			var k struct{ ID string }
			if s == 200 && json.Unmarshal(b, &k) == nil {
				return s, k.ID
			}
			return s, ""
		}},
		{"list keys", true, func(c *http.Client) (int, string) {
			s, _ := send(c, "GET", "/v1/api_keys?limit=10", "", "", true)
			return s, ""
		}},
		{"token batch", true, func(c *http.Client) (int, string) {
			s, _ := send(c, "POST", "/api/tiles/tokens/", "application/json", `{"dataset_ids":["`+d.ID+`"]}`, true)
			return s, ""
		}},
		{"tile by key", false, func(c *http.Client) (int, string) {
			s, _ := send(c, "GET", tile(seq.Add(1), "?key="+key.Token), "", "", false)
			return s, ""
		}},
		{"tile by token", false, func(c *http.Client) (int, string) {
			s, _ := send(c, "GET", tile(seq.Add(1), tokenQuery), "", "", false)
			return s, ""
		}},
	}, nil
}

// lostWrites counts acknowledged creates whose key is not in the database (read directly).
func lostWrites(ctx context.Context, dbURL string, ids []string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var found int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM api_keys WHERE id::text = ANY($1)", ids).Scan(&found); err != nil {
		return 0, fmt.Errorf("count acknowledged keys: %w", err)
	}
	return len(ids) - found, nil
}

func ok(status int) bool { return status >= 200 && status < 400 }

func report(o options, rec *recorder, faults []fault, lost int, logPath string) error {
	fmt.Printf("%d requests by %d clients per kind of request; server TILEGATE_TILE_CACHE_TTL=%v, other settings default\n\n",
		len(rec.samples), o.concurrency, o.ttl)
	fmt.Println("| fault | requests during it | failed (statuses) | tiles failed | slowest answer | DB requests recovered after | tiles recovered after |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for i, f := range faults {
		// A request belongs to the fault when it was in flight at any time between the fault's
		// start and the first success of a database-bound request started after its end.
		dbRecovery, tileRecovery := recovery(rec.samples, f.end, true), recovery(rec.samples, f.end, false)
		windowEnd := f.end.Add(dbRecovery)
		if i+1 < len(faults) && windowEnd.After(faults[i+1].start) {
			windowEnd = faults[i+1].start
		}
		total, failed, tilesFailed := 0, map[int]int{}, 0
		var slowest time.Duration
		for _, s := range rec.samples {
			if s.end.Before(f.start) || s.start.After(windowEnd) {
				continue
			}
			total++
			slowest = max(slowest, s.end.Sub(s.start))
			if !ok(s.status) {
				failed[s.status]++
				if !s.db {
					tilesFailed++
				}
			}
		}
		fmt.Printf("| %s | %d | %s | %d | %v | %v | %v |\n", f.name, total, statuses(failed), tilesFailed,
			slowest.Round(10*time.Millisecond), dbRecovery.Round(10*time.Millisecond), tileRecovery.Round(10*time.Millisecond))
	}
	all := map[int]int{}
	for _, s := range rec.samples {
		all[s.status]++
	}
	logLines, msgs := 0, map[string]int{}
	if raw, err := os.ReadFile(logPath); err == nil {
		for line := range strings.Lines(string(raw)) {
			var l struct{ Level, Msg string }
			if json.Unmarshal([]byte(line), &l) != nil || l.Msg == "request" {
				continue
			}
			logLines++
			msgs[l.Level+" "+l.Msg]++
		}
	}
	fmt.Printf("\nall statuses: %s\nacknowledged key creates: %d, lost: %d\n500s: %d\nserver log lines other than the request log: %d\n",
		statuses(all), len(rec.created), lost, all[500], logLines)
	names := make([]string, 0, len(msgs))
	for m := range msgs {
		names = append(names, m)
	}
	slices.Sort(names)
	for _, m := range names {
		fmt.Printf("  %3d × %s\n", msgs[m], m)
	}
	if lost != 0 || all[500] != 0 {
		return errors.New("acknowledged writes were lost or a request got a 500")
	}
	return nil
}

// recovery is the time from end to the end of the first success of a request (database-bound
// or tile, as db says) that started at or after end.
func recovery(samples []sample, end time.Time, db bool) time.Duration {
	best := time.Duration(-1)
	for _, s := range samples {
		if s.db != db || s.start.Before(end) || !ok(s.status) {
			continue
		}
		if d := s.end.Sub(end); best < 0 || d < best {
			best = d
		}
	}
	return best
}

func statuses(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		name := fmt.Sprint(k)
		if k == -1 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, m[k]))
	}
	return strings.Join(parts, ", ")
}
