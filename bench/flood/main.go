// Command flood measures what made-up credentials at full speed cost everybody else (issue #15
// item 4): the real tilegate binary on a scratch PostgreSQL database reached through a TCP proxy
// that adds latency (-db-delay each way: a database a few milliseconds away), a legitimate tile
// client and management calls (key lists and creates) running throughout, first quietly and then
// beside flood clients sending random API keys (of the form before the checksum, which only a
// lookup can refuse, and of the current form with a bad checksum) and random dataset ids as fast
// as they are answered. It reports the management calls' p50/p99 in both phases, the legitimate
// tiles that failed, every status, the 500s, and the SQL transactions per second the flood adds
// (pg_stat_database's xact_commit + xact_rollback of the scratch database). It exits non-zero when
// a legitimate request failed, a request got a 500, or management p99 under the flood is more
// than twice the quiet one.
//
//	go run ./bench/flood [-duration 15s] [-flooders 16] [-db-delay 1500us]
//
// Only 127.0.0.1 is contacted; the shared PostgreSQL server is never stopped or reconfigured.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/faultproxy"
	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/keytoken"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/store"
)

type options struct {
	duration, dbDelay time.Duration
	flooders, mgmt    int
	pgURL, bin        string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "length of each phase (quiet, then flood)")
	flag.DurationVar(&o.dbDelay, "db-delay", 1500*time.Microsecond, "latency the proxy adds each way between tilegate and PostgreSQL")
	flag.IntVar(&o.flooders, "flooders", 16, "concurrent flood clients")
	flag.IntVar(&o.mgmt, "mgmt-clients", 2, "concurrent clients per kind of management call")
	flag.StringVar(&o.pgURL, "postgres", scratchdb.BaseURL(), "PostgreSQL server to create a scratch database on")
	flag.StringVar(&o.bin, "bin", "", "a tilegate binary to run (default: build ./cmd/tilegate), e.g. an older version to compare")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

// latencies are one kind of request's answers: durations of the successes, statuses of all.
type latencies struct {
	mu       sync.Mutex
	took     []time.Duration
	statuses map[int]int
}

func (l *latencies) add(status int, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.statuses == nil {
		l.statuses = map[int]int{}
	}
	l.statuses[status]++
	if status >= 200 && status < 300 {
		l.took = append(l.took, d)
	}
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.took) == 0 {
		return 0
	}
	s := slices.Clone(l.took)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.statuses {
		n += c
	}
	return n
}

func (l *latencies) failed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for s, c := range l.statuses {
		if s < 200 || s >= 300 {
			n += c
		}
	}
	return n
}

// phase is what one phase measured.
type phase struct {
	name          string
	mgmt, tiles   latencies
	flood         map[string]*latencies
	txPerSec      float64
	elapsed       time.Duration
	floodRequests int
}

func run(o options) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "tilegate-bench-flood-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	db, err := scratchdb.Create(ctx, o.pgURL, "tilegate_bench_flood")
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
	proxy.SetDelay(o.dbDelay)
	u.Host = proxy.Addr()

	bin := o.bin
	if bin == "" {
		bin = filepath.Join(tmp, "tilegate")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tilegate").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	addr, err := loadgen.FreeAddr()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+u.String(), "TILEGATE_ADDR="+addr,
		"TILEGATE_DATA_DIR="+filepath.Join(tmp, "data"))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	base := "http://" + addr
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	if err := loadgen.WaitReady(client, base); err != nil {
		return err
	}
	auth := "Bearer " + acct.Token
	dataset, key, err := setup(client, base, auth, tmp)
	if err != nil {
		return err
	}
	tx := func() (int64, error) { return transactions(ctx, db.URL, db.Name) }

	quiet, err := measure(o, "quiet", client, base, auth, dataset, key, 0, tx)
	if err != nil {
		return err
	}
	flood, err := measure(o, "flood", client, base, auth, dataset, key, o.flooders, tx)
	if err != nil {
		return err
	}
	return report(o, quiet, flood)
}

// setup creates a private dataset with tiles and an API key; it returns their id and token.
func setup(c *http.Client, base, auth, tmp string) (dataset, key string, err error) {
	var d struct{ ID string }
	if err := loadgen.Call(c, "POST", base+"/api/datasets/", auth, "application/json",
		`{"name":"flood","kind":"vector","visibility":"private"}`, 201, &d); err != nil {
		return "", "", err
	}
	file := filepath.Join(tmp, "flood.mbtiles")
	tiles := map[[3]int][]byte{}
	for x := range 4 {
		for y := range 4 {
			tiles[[3]int{2, x, y}] = []byte(fmt.Sprintf("\x1a\x04t%d%d", x, y))
		}
	}
	if err := mbtiles.WriteTestFile(file, mbtiles.TestFile{Format: "pbf", MinZoom: 0, MaxZoom: 4, Tiles: tiles}); err != nil {
		return "", "", err
	}
	f, err := os.Open(file)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if err := loadgen.CallReader(c, "PUT", base+"/api/datasets/"+d.ID+"/tiles/", auth, "application/octet-stream", f, 200, nil); err != nil {
		return "", "", err
	}
	var k struct{ Token string }
	if err := loadgen.Call(c, "POST", base+"/v1/api_keys", auth, "application/json", `{"name":"tiles"}`, 200, &k); err != nil {
		return "", "", err
	}
	return d.ID, k.Token, nil
}

// measure runs the legitimate load (and flooders flood clients) for o.duration.
func measure(o options, name string, c *http.Client, base, auth, dataset, key string, flooders int, tx func() (int64, error)) (*phase, error) {
	p := &phase{name: name, flood: map[string]*latencies{}}
	kinds := []string{"random key, old form", "random key, bad checksum", "random dataset id"}
	for _, k := range kinds {
		p.flood[k] = &latencies{}
	}
	send := func(method, path, body string, withAuth bool) (int, time.Duration) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return -1, 0
		}
		if withAuth {
			req.Header.Set("Authorization", auth)
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
		}
		start := time.Now()
		res, err := c.Do(req)
		if err != nil {
			return -1, time.Since(start)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, time.Since(start)
	}
	var seq atomic.Int64
	tile := func(query string) string {
		i := seq.Add(1)
		return fmt.Sprintf("/api/tiles/%s/2/%d/%d.pbf%s", dataset, i%4, (i/4)%4, query)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(fn func()) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					fn()
				}
			}
		})
	}
	for range o.mgmt {
		loop(func() { p.mgmt.add(send("GET", "/v1/api_keys?limit=10", "", true)) })
		loop(func() {
			p.mgmt.add(send("POST", "/v1/api_keys", fmt.Sprintf(`{"name":"%s %d"}`, name, seq.Add(1)), true))
		})
	}
	loop(func() { p.tiles.add(send("GET", tile("?key="+key), "", false)) })
	for w := range flooders {
		kind := kinds[w%len(kinds)]
		l := p.flood[kind]
		loop(func() {
			var path string
			switch kind {
			case kinds[0]:
				path = tile("?key=" + oldFormKey())
			case kinds[1]:
				path = tile("?key=" + badChecksumKey())
			default:
				path = fmt.Sprintf("/api/tiles/%s/0/0/0.pbf?key=%s", uuid.NewString(), key)
			}
			l.add(send("GET", path, "", false))
		})
	}
	before, err := tx()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	time.Sleep(o.duration)
	after, err := tx()
	p.elapsed = time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	p.txPerSec = float64(after-before) / p.elapsed.Seconds()
	for _, l := range p.flood {
		p.floodRequests += l.count()
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, p.elapsed.Round(time.Millisecond))
	return p, nil
}

// oldFormKey is a random key of the form issued before the checksum (24 base64url characters).
func oldFormKey() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// badChecksumKey is a random key of the current form whose checksum does not match.
func badChecksumKey() string {
	k, err := keytoken.New()
	if err != nil {
		panic(err)
	}
	last := k[len(k)-1]
	repl := byte('a')
	if last == 'a' {
		repl = 'b'
	}
	return k[:len(k)-1] + string(repl)
}

// transactions is the scratch database's committed and rolled back transactions so far (read
// directly, not through the proxy). The statistics are flushed by backends at most once a
// second (stats_fetch_consistency aside), so phases should last several seconds.
func transactions(ctx context.Context, dbURL, name string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read transactions: %w", err)
	}
	return n, nil
}

func report(o options, quiet, flood *phase) error {
	fmt.Printf("tilegate on PostgreSQL %v away (each way, through a proxy), default settings; %v per phase; %d management clients per call kind, 1 tile client; flood: %d clients\n\n",
		o.dbDelay, o.duration, o.mgmt, o.flooders)
	fmt.Println("| phase | management calls | p50 | p99 | legitimate tiles | failed | flood requests | flood req/s | SQL tx/s |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, p := range []*phase{quiet, flood} {
		fmt.Printf("| %s | %d | %v | %v | %d | %d | %d | %.0f | %.0f |\n", p.name, p.mgmt.count(),
			p.mgmt.quantile(0.5).Round(100*time.Microsecond), p.mgmt.quantile(0.99).Round(100*time.Microsecond),
			p.tiles.count(), p.tiles.failed()+p.mgmt.failed(), p.floodRequests, float64(p.floodRequests)/p.elapsed.Seconds(), p.txPerSec)
	}
	fmt.Println()
	total500 := 0
	for _, p := range []*phase{quiet, flood} {
		total500 += p.mgmt.statuses[500] + p.tiles.statuses[500]
	}
	names := make([]string, 0, len(flood.flood))
	for k := range flood.flood {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		l := flood.flood[k]
		total500 += l.statuses[500]
		fmt.Printf("flood, %s: %s\n", k, statuses(l.statuses))
	}
	fmt.Printf("SQL tx/s the flood added: %.0f\n", flood.txPerSec-quiet.txPerSec)
	ratio := float64(flood.mgmt.quantile(0.99)) / float64(max(1, quiet.mgmt.quantile(0.99)))
	fmt.Printf("management p99 under the flood: %.2f× quiet; legitimate requests failed: %d; 500s: %d\n",
		ratio, quiet.mgmt.failed()+quiet.tiles.failed()+flood.mgmt.failed()+flood.tiles.failed(), total500)
	var errs []error
	if n := quiet.mgmt.failed() + quiet.tiles.failed() + flood.mgmt.failed() + flood.tiles.failed(); n > 0 {
		errs = append(errs, fmt.Errorf("%d legitimate requests failed (quiet: %s, %s; flood: %s, %s)", n,
			statuses(quiet.mgmt.statuses), statuses(quiet.tiles.statuses), statuses(flood.mgmt.statuses), statuses(flood.tiles.statuses)))
	}
	if total500 > 0 {
		errs = append(errs, fmt.Errorf("%d answers were 500", total500))
	}
	if ratio > 2 {
		errs = append(errs, fmt.Errorf("management p99 under the flood is %.2f× the quiet one (goal: within 2×)", ratio))
	}
	return errors.Join(errs...)
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
