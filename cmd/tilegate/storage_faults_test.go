package main_test

// Bucket faults met by the real binary: a TCP fault proxy (internal/faultproxy) between replica B
// and MinIO black-holes or cuts the bucket; tiles of datasets B has not fetched yet answer 503
// with Retry-After within the fetch wait, datasets it has keep serving, /readyz and uploads say
// the bucket is unavailable, and everything recovers when the bucket is back. An upload whose
// Put the cut interrupts leaves nothing in the bucket once the bucket is back.

import (
	"bytes"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/internal/faultproxy"
)

func TestBucketFaults(t *testing.T) {
	t.Parallel()
	bf := newBucketFixture(t)
	u, err := url.Parse(bf.srv.Endpoint)
	must(t, err)
	proxy, err := faultproxy.Start(u.Host)
	must(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	dbURL, _ := freshPostgres(t)
	acct := createAccount(t, dbURL)
	a := startServer(t, dbURL, bf.env(t, bf.srv.Endpoint)...)
	// No hot-tile cache on B: its warm tiles come from its copy of the file, not from memory.
	b := startServer(t, dbURL, bf.env(t, "http://"+proxy.Addr(), "TILEGATE_STORAGE_FETCH_WAIT=1s", "TILEGATE_HOT_TILE_CACHE_BYTES=0")...)
	hc := faultClient(t)

	// Three datasets uploaded through A; B fetches the first (warm), not the others (cold).
	warm, cold1, cold2 := createPublicDataset(t, a, acct.Token), createPublicDataset(t, a, acct.Token), createPublicDataset(t, a, acct.Token)
	sets := map[string]tileSet{}
	for i, d := range []string{warm, cold1, cold2} {
		sets[d] = bucketTiles(t, 2, 1000, "set"+strconv.Itoa(i))
		repUploadCLI(t, a.url, acct.Token, d, sets[d].path).wantOK(t)
	}
	wantTiles(t, hc, b, warm, sets[warm])
	zero := [3]int{0, 0, 0}

	// wantOutage checks B during a fault: the warm dataset serves, the cold one is a quick 503
	// with Retry-After, /readyz names the bucket, an upload is refused with 503.
	wantOutage := func(what, cold string) {
		t.Helper()
		start := time.Now()
		if ans := getTile(t, hc, b, warm, zero); ans.status != 200 || !bytes.Equal(ans.body, sets[warm].tiles[zero]) {
			t.Errorf("%s: warm tile %d", what, ans.status)
		} else if took := time.Since(start); took > time.Second {
			t.Errorf("%s: warm tile took %v", what, took)
		}
		for range 3 {
			start = time.Now()
			ans := getTile(t, hc, b, cold, zero)
			wantUnavailable(t, what+": cold tile", ans.status, ans.body, time.Since(start), 4*time.Second)
			if n, err := strconv.Atoi(ans.retry); err != nil || n < 1 {
				t.Errorf("%s: cold tile's Retry-After %q", what, ans.retry)
			}
		}
		start = time.Now()
		status, body := b.do(t, hc, "GET", "/readyz", "", "")
		wantUnavailable(t, what+": /readyz", status, body, time.Since(start), 8*time.Second)
		if !strings.Contains(string(body), "bucket") {
			t.Errorf("%s: /readyz says %s, want the bucket named", what, body)
		}
		file, err := os.ReadFile(bucketTiles(t, 1, 100, "refused").path)
		must(t, err)
		r := <-goDo(t, b, hc, "PUT", "/api/datasets/"+cold+"/tiles/", acct.Token, string(file))
		wantUnavailable(t, what+": upload", r.status, r.body, r.took, 15*time.Second)
	}
	// wantRecovered checks B once the bucket is back: the cold dataset serves, /readyz is 200.
	wantRecovered := func(what, cold string) {
		t.Helper()
		waitFor(t, 30*time.Second, what+": the cold dataset to serve", func() (bool, string) {
			ans := getTile(t, hc, b, cold, zero)
			return ans.status == 200 && bytes.Equal(ans.body, sets[cold].tiles[zero]), strconv.Itoa(ans.status)
		})
		wantTiles(t, hc, b, cold, sets[cold])
		waitFor(t, 10*time.Second, what+": /readyz", func() (bool, string) {
			status, body := b.do(t, hc, "GET", "/readyz", "", "")
			return status == 200, string(body)
		})
	}

	proxy.SetMode(faultproxy.BlackHole)
	wantOutage("black hole", cold1)
	proxy.SetMode(faultproxy.Pass)
	wantRecovered("after the black hole", cold1)

	proxy.SetMode(faultproxy.Refuse)
	proxy.Cut()
	wantOutage("cut", cold2)
	proxy.SetMode(faultproxy.Pass)
	wantRecovered("after the cut", cold2)
	if n := len(b.logsWith("tile file fetched from the bucket")); n != 3 {
		t.Errorf("B fetched %d times, want 3 (each dataset once)", n)
	}

	// A Put cut mid-stream (a multipart upload, slowed down by the proxy so the cut falls in
	// its middle) is refused with 503, and what the failed abort left is gone once the bucket
	// is back: the sweep aborts the dead upload's parts.
	objects := bf.objects(t)
	file, err := os.ReadFile(bucketTiles(t, 6, 3<<20, "cut-put").path)
	must(t, err)
	proxy.SetDelay(5 * time.Millisecond)
	res := goDo(t, b, hc, "PUT", "/api/datasets/"+cold1+"/tiles/", acct.Token, string(file))
	waitFor(t, 30*time.Second, "the multipart upload to start", func() (bool, string) {
		return bf.incomplete(t) == 1, ""
	})
	proxy.SetMode(faultproxy.Refuse)
	proxy.Cut()
	r := <-res
	wantUnavailable(t, "upload cut mid-Put", r.status, r.body, r.took, 60*time.Second)
	left := bf.incomplete(t)
	proxy.SetDelay(0)
	proxy.SetMode(faultproxy.Pass)
	waitFor(t, 15*time.Second, "the cut upload's parts to go", func() (bool, string) {
		n := bf.incomplete(t)
		return n == 0, strconv.Itoa(n) + " incomplete uploads"
	})
	if got := bf.objects(t); strings.Join(got, " ") != strings.Join(objects, " ") {
		t.Errorf("bucket after the cut upload: %v, want %v", got, objects)
	}
	wantTiles(t, hc, b, cold1, sets[cold1]) // the previous tiles still serve
	t.Logf("the cut Put left %d incomplete uploads, swept once the bucket was back", left)
}
