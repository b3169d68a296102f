// Command scale measures how an account's size changes the cost of management calls (issue
// #20): accounts of 1,000, 100,000 and 1,000,000 keys (bulk inserted) in one real tilegate
// process, on PostgreSQL and on SQLite, side by side. Per account it reports key creation with
// 8 concurrent clients (p50, p99, creates/s), the first, a middle and the last page of 100 keys
// (p50 and the server's CPU per page, from /proc) and a walk over every page. Rounds interleave
// the accounts, so machine noise hits every size alike; the server runs on -server-cpu and this
// program should be started on another (make bench-scale pins both with taskset).
//
//	go run ./bench/scale [-sizes 1000,100000,1000000] [-rounds 3] [-dialects postgres,sqlite]
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/bench/loadgen"
	"github.com/tilegate/tilegate/internal/scratchdb"
	"github.com/tilegate/tilegate/store"
)

type config struct {
	sizes     []int
	rounds    int
	clients   int
	creates   int // per client per round
	pages     int // requests per page kind per round
	serverCPU string
	pgURL     string
	dialects  []string
}

func main() {
	var c config
	sizes := flag.String("sizes", "1000,100000,1000000", "account sizes (keys), comma separated")
	dialects := flag.String("dialects", "postgres,sqlite", "databases to measure")
	flag.IntVar(&c.rounds, "rounds", 3, "interleaved rounds")
	flag.IntVar(&c.clients, "clients", 8, "concurrent clients creating keys")
	flag.IntVar(&c.creates, "creates", 25, "keys each client creates per round")
	flag.IntVar(&c.pages, "pages", 200, "requests per page kind per round")
	flag.StringVar(&c.serverCPU, "server-cpu", "0", "CPU list the server is pinned to (taskset -c); empty: not pinned")
	flag.StringVar(&c.pgURL, "postgres", scratchdb.BaseURL(), "PostgreSQL server to create a scratch database on")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 200 {
			log.Fatalf("size %q: want an integer ≥ 200", s)
		}
		c.sizes = append(c.sizes, n)
	}
	c.dialects = strings.Split(*dialects, ",")
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

// account is one measured account: its token and the figures gathered over the rounds.
type account struct {
	keys        int
	token       string
	start       time.Time // the bulk keys were created at start + i µs
	createLat   []time.Duration
	createWall  time.Duration
	createN     int
	pageLat     map[string][]time.Duration
	pageCPU     map[string]time.Duration
	pageN       map[string]int
	walk        time.Duration
	walkPages   int
	walkCPU     time.Duration
	walkVisited int
}

func run(c config) error {
	tmp, err := os.MkdirTemp("", "tilegate-bench-scale-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "tilegate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tilegate").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	results := map[string][]*account{}
	for _, dialect := range c.dialects {
		accts, err := measure(c, bin, tmp, dialect)
		if err != nil {
			return fmt.Errorf("%s: %w", dialect, err)
		}
		results[dialect] = accts
	}
	report(os.Stdout, c, results)
	return nil
}

func measure(c config, bin, tmp, dialect string) ([]*account, error) {
	ctx := context.Background()
	var dbURL string
	switch dialect {
	case "postgres":
		db, err := scratchdb.Create(ctx, c.pgURL, "tilegate_bench_scale")
		if err != nil {
			return nil, err
		}
		defer db.Drop()
		dbURL = db.URL
	case "sqlite":
		dbURL = "sqlite://" + filepath.Join(tmp, "scale.db")
	default:
		return nil, fmt.Errorf("unknown dialect %q", dialect)
	}
	env := append(os.Environ(), "DATABASE_URL="+dbURL, "TILEGATE_DATA_DIR="+filepath.Join(tmp, "data-"+dialect))
	mig := exec.Command(bin, "migrate")
	mig.Env = env
	if out, err := mig.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("migrate: %v\n%s", err, out)
	}
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var accts []*account
	for _, n := range c.sizes {
		a, err := st.CreateAccount(ctx, fmt.Sprintf("scale-%d", n))
		if err != nil {
			return nil, err
		}
		start := store.Now().Add(-24 * time.Hour)
		t0 := time.Now()
		if err := st.BulkInsertKeys(ctx, a.AccountID, n, start); err != nil {
			return nil, err
		}
		log.Printf("%s: %d keys inserted in %s", dialect, n, time.Since(t0).Round(time.Millisecond))
		accts = append(accts, &account{keys: n, token: a.Token, start: start,
			pageLat: map[string][]time.Duration{}, pageCPU: map[string]time.Duration{}, pageN: map[string]int{}})
	}
	if dialect == "postgres" {
		if err := st.DB().Exec("ANALYZE").Error; err != nil {
			return nil, err
		}
	}

	addr, err := loadgen.FreeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{bin, "serve"}
	if c.serverCPU != "" {
		args = append([]string{"taskset", "-c", c.serverCPU}, args...)
	}
	srv := exec.Command(args[0], args[1:]...)
	srv.Env = append(env, "TILEGATE_ADDR="+addr, "TILEGATE_PUBLIC_URL=http://"+addr)
	srv.Stdout, srv.Stderr = io.Discard, io.Discard
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()
	base := "http://" + addr
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	if err := loadgen.WaitReady(hc, base); err != nil {
		return nil, err
	}
	pid := srv.Process.Pid

	// A warm-up pass, not recorded: connections, caches, the planner's statistics.
	for _, a := range accts {
		warm := *a
		warm.pageLat, warm.pageCPU, warm.pageN = map[string][]time.Duration{}, map[string]time.Duration{}, map[string]int{}
		wc := c
		wc.creates, wc.pages = 2, 5
		if err := createKeys(hc, base, &warm, wc); err != nil {
			return nil, err
		}
		if err := pages(hc, base, pid, &warm, wc); err != nil {
			return nil, err
		}
	}
	for round := range c.rounds {
		// Rotate the order each round as well as interleaving the sizes.
		for i := range accts {
			a := accts[(i+round)%len(accts)]
			if err := createKeys(hc, base, a, c); err != nil {
				return nil, err
			}
			if err := pages(hc, base, pid, a, c); err != nil {
				return nil, err
			}
		}
		log.Printf("%s: round %d done", dialect, round+1)
	}
	for _, a := range accts {
		if err := walk(hc, base, pid, a); err != nil {
			return nil, err
		}
		log.Printf("%s: walked %d keys in %d pages, %s", dialect, a.walkVisited, a.walkPages, a.walk.Round(time.Millisecond))
	}
	return accts, nil
}

func createKeys(hc *http.Client, base string, a *account, c config) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, c.clients)
	t0 := time.Now()
	for range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, c.creates)
			for range c.creates {
				s := time.Now()
				if err := loadgen.Call(hc, "POST", base+"/v1/api_keys", "Bearer "+a.token, "application/json", `{}`, http.StatusOK, nil); err != nil {
					errs <- err
					return
				}
				lat = append(lat, time.Since(s))
			}
			mu.Lock()
			a.createLat = append(a.createLat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	a.createWall += time.Since(t0)
	a.createN += c.clients * c.creates
	select {
	case err := <-errs:
		return fmt.Errorf("create key: %w", err)
	default:
		return nil
	}
}

// cursorAt is the cursor after the bulk key created i µs after start (ids sort after uuid.Nil).
func (a *account) cursorAt(i int) string {
	return store.Cursor{Created: a.start.Add(time.Duration(i) * time.Microsecond), ID: uuid.Nil}.Encode()
}

func pages(hc *http.Client, base string, pid int, a *account, c config) error {
	for _, p := range []struct{ name, query string }{
		{"first", ""},
		{"middle", "&cursor=" + a.cursorAt(a.keys/2)},
		{"last", "&cursor=" + a.cursorAt(a.keys-100)},
	} {
		cpu0, err := loadgen.ProcessCPUFine(pid)
		if err != nil {
			return err
		}
		for range c.pages {
			s := time.Now()
			var page struct{ Items []json.RawMessage }
			if err := loadgen.Call(hc, "GET", base+"/v1/api_keys?limit=100"+p.query, "Bearer "+a.token, "", "", http.StatusOK, &page); err != nil {
				return fmt.Errorf("%s page: %w", p.name, err)
			}
			if len(page.Items) != 100 {
				return fmt.Errorf("%s page of %d keys: %d items", p.name, a.keys, len(page.Items))
			}
			a.pageLat[p.name] = append(a.pageLat[p.name], time.Since(s))
		}
		cpu1, err := loadgen.ProcessCPUFine(pid)
		if err != nil {
			return err
		}
		a.pageCPU[p.name] += cpu1 - cpu0
		a.pageN[p.name] += c.pages
	}
	return nil
}

func walk(hc *http.Client, base string, pid int, a *account) error {
	cpu0, err := loadgen.ProcessCPUFine(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	cursor := ""
	for {
		var page struct {
			Items  []json.RawMessage
			Cursor *string
		}
		q := "/v1/api_keys?limit=100"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		if err := loadgen.Call(hc, "GET", base+q, "Bearer "+a.token, "", "", http.StatusOK, &page); err != nil {
			return fmt.Errorf("walk: %w", err)
		}
		a.walkPages++
		a.walkVisited += len(page.Items)
		if page.Cursor == nil {
			break
		}
		cursor = *page.Cursor
	}
	a.walk = time.Since(t0)
	cpu1, err := loadgen.ProcessCPUFine(pid)
	if err != nil {
		return err
	}
	a.walkCPU = cpu1 - cpu0
	return nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// report prints one table per dialect and the ratio of the largest account's figures to the
// smallest's (the goal: within 1.5× on PostgreSQL, 2× on SQLite).
func report(w io.Writer, c config, results map[string][]*account) {
	fmt.Fprintf(w, "\n%d rounds, %d clients × %d creates per round, %d requests per page kind per round, server on CPU %q\n",
		c.rounds, c.clients, c.creates, c.pages, c.serverCPU)
	for _, dialect := range c.dialects {
		accts := results[dialect]
		fmt.Fprintf(w, "\n%s\n", dialect)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "keys\tcreate p50 ms\tcreate p99 ms\tcreates/s\tfirst p50 ms\tfirst cpu ms\tmiddle p50 ms\tmiddle cpu ms\tlast p50 ms\tlast cpu ms\twalk s\twalk ms/page\t")
		row := func(a *account) []float64 {
			v := []float64{
				float64(pct(a.createLat, 0.5)) / 1e6, float64(pct(a.createLat, 0.99)) / 1e6,
				float64(a.createN) / a.createWall.Seconds(),
			}
			for _, p := range []string{"first", "middle", "last"} {
				v = append(v, float64(pct(a.pageLat[p], 0.5))/1e6, float64(a.pageCPU[p])/1e6/float64(a.pageN[p]))
			}
			return append(v, a.walk.Seconds(), float64(a.walk)/1e6/float64(a.walkPages))
		}
		for _, a := range accts {
			fmt.Fprintf(tw, "%d\t", a.keys)
			for i, v := range row(a) {
				if i == 2 {
					fmt.Fprintf(tw, "%.0f\t", v)
				} else {
					fmt.Fprintf(tw, "%.2f\t", v)
				}
			}
			fmt.Fprintln(tw)
		}
		if len(accts) > 1 {
			small, large := row(accts[0]), row(accts[len(accts)-1])
			fmt.Fprintf(tw, "ratio %d/%d\t", accts[len(accts)-1].keys, accts[0].keys)
			for i := range small {
				r := large[i] / small[i]
				if i == 2 { // a rate: smaller is worse
					r = small[i] / large[i]
				}
				if i == 9 { // the walk grows with the keys by nature: compare per page
					fmt.Fprintf(tw, "-\t")
					continue
				}
				fmt.Fprintf(tw, "%.2f×\t", r)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}
