package main_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue #15 item 14: a key with a fresh quota, hit at full speed through two replicas at once
// (as after a deploy or at the start of a month), is admitted at most quota + N - 1 times in
// total (N = 2), not N × quota: each replica takes its share of what is left until a read of the
// count a flush interval later (here an hour: never during the test).
func TestReplicasFreshQuotaBurst(t *testing.T) {
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	const heartbeat = 200 * time.Millisecond
	env := []string{"TILEGATE_DATA_DIR=" + t.TempDir(), "TILEGATE_REPLICA_HEARTBEAT=" + heartbeat.String(),
		"TILEGATE_USAGE_FLUSH_INTERVAL=1h"}
	a := startServer(t, dbURL, env...)
	b := startServer(t, dbURL, env...)
	dataset := repCreateDataset(t, a, acct.Token)
	if up := repUploadCLI(t, a.url, acct.Token, dataset, repTilesFile(t, "t.mbtiles", [3]int{0, 0, 0}, "\x1a\x05tile")); up.code != 0 {
		t.Fatalf("upload: exit %d\n%s", up.code, up.stderr)
	}
	time.Sleep(5 * heartbeat) // both replicas have heard of each other
	const quota = 100
	_, key := limitedKey(t, a, acct.Token, fmt.Sprintf(`{"monthly_quota":%d}`, quota))
	path := "/api/tiles/" + dataset + "/0/0/0.pbf?key=" + key
	hc := validatingClient(t)
	const workers, each = 8, 40 // 160 requests per replica
	var ok, limited [2]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			p, i := a, 0
			if w%2 == 1 {
				p, i = b, 1
			}
			for range each {
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
		})
	}
	wg.Wait()
	admitted := ok[0].Load() + ok[1].Load()
	t.Logf("quota %d, %d requests through each of two replicas at once: admitted %d (A %d, B %d), refused %d",
		quota, workers/2*each, admitted, ok[0].Load(), ok[1].Load(), limited[0].Load()+limited[1].Load())
	if admitted > quota+1 {
		t.Errorf("admitted %d, want at most %d (quota + N - 1)", admitted, quota+1)
	}
	if ok[0].Load() == 0 || ok[1].Load() == 0 {
		t.Errorf("a replica admitted nothing (A %d, B %d)", ok[0].Load(), ok[1].Load())
	}
}
