package main_test

// Two real `tilegate serve` processes on one PostgreSQL database share a key's rate limit (each
// admits 1/N of it, N from the replicas' heartbeats) and its monthly quota (within the traffic
// of a flush interval); their usage counts add up.

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// limitedKey creates a key with the given settings (JSON) and returns its id and token.
func limitedKey(t *testing.T, p *serverProc, token, settings string) (id, tok string) {
	t.Helper()
	status, body := p.do(t, validatingClient(t), "POST", "/v1/api_keys", token, settings)
	if status != 200 {
		t.Fatalf("create key: %d %s", status, body)
	}
	var k struct{ ID, Token string }
	must(t, json.Unmarshal(body, &k))
	return k.ID, k.Token
}

// The total admitted rate of two replicas stays within ±20% of the key's limit, with load spread
// over both. Generous bounds: the figure is logged, the load is checked to exceed the limit.
func TestReplicasShareRateLimit(t *testing.T) {
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	env := []string{"TILEGATE_DATA_DIR=" + t.TempDir(), "TILEGATE_REPLICA_HEARTBEAT=200ms", "TILEGATE_USAGE_FLUSH_INTERVAL=200ms"}
	a := startServer(t, dbURL, env...)
	b := startServer(t, dbURL, env...)
	dataset := repCreateDataset(t, a, acct.Token)
	if up := repUploadCLI(t, a.url, acct.Token, dataset, repTilesFile(t, "t.mbtiles", [3]int{0, 0, 0}, "\x1a\x05tile")); up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}
	const rps, burst = 40, 10
	_, key := limitedKey(t, a, acct.Token, fmt.Sprintf(`{"rate_limit":{"requests_per_second":%d,"burst":%d}}`, rps, burst))
	path := "/api/tiles/" + dataset + "/0/0/0.pbf?key=" + key
	hc := validatingClient(t)
	// The first limited request on each starts its heartbeat; after a few beats both see 2.
	for _, p := range []*serverProc{a, b} {
		if s, body := p.do(t, hc, "GET", path, "", ""); s != 200 {
			t.Fatalf("first tile: %d %s", s, body)
		}
	}
	time.Sleep(1500 * time.Millisecond)

	const workers, run = 4, 3 * time.Second
	var ok, limited [2]atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, i := a, 0
			if w%2 == 1 {
				p, i = b, 1
			}
			for time.Since(start) < run {
				switch s, body := p.do(t, hc, "GET", path, "", ""); s {
				case 200:
					ok[i].Add(1)
				case 429:
					limited[i].Add(1)
				default:
					t.Errorf("tile: %d %s", s, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	admitted := ok[0].Load() + ok[1].Load()
	want := rps*elapsed.Seconds() + burst // the buckets start full: burst/2 each
	t.Logf("two replicas, %d rps burst %d, %v: admitted %d (A %d, B %d), refused %d (A %d, B %d); limit allows %.0f; ratio %.3f",
		rps, burst, elapsed.Round(time.Millisecond), admitted, ok[0].Load(), ok[1].Load(),
		limited[0].Load()+limited[1].Load(), limited[0].Load(), limited[1].Load(), want, float64(admitted)/want)
	if limited[0].Load() == 0 || limited[1].Load() == 0 {
		t.Fatalf("the load did not exceed the limit on both replicas (refused A %d, B %d)", limited[0].Load(), limited[1].Load())
	}
	if r := float64(admitted) / want; r < 0.8 || r > 1.2 {
		t.Errorf("admitted %d, want %.0f ±20%%", admitted, want)
	}
}

// A key's monthly quota holds across two replicas to within a flush interval's traffic, and
// usage_this_month and the usage endpoint add both replicas' counts up.
func TestReplicasShareQuota(t *testing.T) {
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	const flush = 200 * time.Millisecond
	env := []string{"TILEGATE_DATA_DIR=" + t.TempDir(), "TILEGATE_USAGE_FLUSH_INTERVAL=" + flush.String()}
	a := startServer(t, dbURL, env...)
	b := startServer(t, dbURL, env...)
	dataset := repCreateDataset(t, a, acct.Token)
	if up := repUploadCLI(t, a.url, acct.Token, dataset, repTilesFile(t, "t.mbtiles", [3]int{0, 0, 0}, "\x1a\x05tile")); up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}
	const quota = 60
	id, key := limitedKey(t, a, acct.Token, fmt.Sprintf(`{"monthly_quota":%d}`, quota))
	path := "/api/tiles/" + dataset + "/0/0/0.pbf?key=" + key
	hc := validatingClient(t)
	// Alternate between the replicas at about 50 requests a second (10 per flush interval)
	// until both refuse.
	var admitted, refused int
	refusedBy := [2]bool{}
	for i := 0; !(refusedBy[0] && refusedBy[1]) && i < 1000; i++ {
		p := []*serverProc{a, b}[i%2]
		switch s, body := p.do(t, hc, "GET", path, "", ""); s {
		case 200:
			admitted++
		case 429:
			refused++
			refusedBy[i%2] = true
		default:
			t.Fatalf("tile: %d %s", s, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	perInterval := int(flush / (20 * time.Millisecond))
	t.Logf("quota %d over two replicas: admitted %d, refused %d (traffic of a flush interval: about %d)", quota, admitted, refused, perInterval)
	if admitted < quota || admitted > quota+2*perInterval {
		t.Errorf("admitted %d, want %d to %d", admitted, quota, quota+2*perInterval)
	}

	time.Sleep(3 * flush) // both have written their counts
	for _, p := range []*serverProc{a, b} {
		status, body := p.do(t, hc, "GET", "/v1/api_keys/"+id, acct.Token, "")
		var k struct {
			UsageThisMonth int `json:"usage_this_month"`
		}
		if status != 200 || json.Unmarshal(body, &k) != nil || k.UsageThisMonth != admitted {
			t.Errorf("usage_this_month on %s: %d %s, want %d", p.url, status, body, admitted)
		}
	}
	status, body := b.do(t, hc, "GET", "/v1/api_keys/"+id+"/usage?granularity=day", acct.Token, "")
	var u struct {
		Items []struct {
			Served  int            `json:"served"`
			Refused map[string]int `json:"refused"`
		} `json:"items"`
	}
	must(t, json.Unmarshal(body, &u))
	served, quotaRefused := 0, 0
	for _, it := range u.Items {
		served += it.Served
		quotaRefused += it.Refused["quota_exceeded"]
	}
	if status != 200 || served != admitted || quotaRefused != refused {
		t.Errorf("usage: %d %s; want served %d, quota_exceeded %d", status, body, admitted, refused)
	}
}

// Usage counted since the last flush is written on a graceful shutdown (SIGTERM), however long
// the flush interval.
func TestUsageWrittenOnShutdown(t *testing.T) {
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	srv := startServer(t, dbURL, "TILEGATE_DATA_DIR="+t.TempDir(), "TILEGATE_USAGE_FLUSH_INTERVAL=1h")
	dataset := repCreateDataset(t, srv, acct.Token)
	if up := repUploadCLI(t, srv.url, acct.Token, dataset, repTilesFile(t, "t.mbtiles", [3]int{0, 0, 0}, "\x1a\x05tile")); up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}
	id, key := limitedKey(t, srv, acct.Token, `{}`)
	hc := validatingClient(t)
	for range 7 {
		if s, body := srv.do(t, hc, "GET", "/api/tiles/"+dataset+"/0/0/0.pbf?key="+key, "", ""); s != 200 {
			t.Fatalf("tile: %d %s", s, body)
		}
	}
	must(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-srv.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not stop")
	}
	conn, ctx, closeConn := pgConnectTo(t, dbURL)
	defer closeConn()
	var served int64
	must(t, conn.QueryRow(ctx, "SELECT COALESCE(SUM(served), 0) FROM usage_hours WHERE key_id = $1", id).Scan(&served))
	if served != 7 {
		t.Errorf("after shutdown the key has %d tiles written, want 7", served)
	}
}

// pgConnectTo connects to the database at dbURL.
func pgConnectTo(t *testing.T, dbURL string) (*pgx.Conn, context.Context, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		cancel()
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	return conn, ctx, func() { _ = conn.Close(ctx); cancel() }
}
