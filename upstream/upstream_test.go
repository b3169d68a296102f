package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tilegate/tilegate/internal/faultproxy"
)

func TestParseTemplate(t *testing.T) {
	good := []string{
		"https://tiles.internal/roads/{z}/{x}/{y}.pbf",
		"http://10.0.0.5:8080/services/roads/tiles/{z}/{x}/{y}.pbf?layer=a",
		"https://example.com/{y}/{x}/{z}",
	}
	for _, s := range good {
		if _, err := ParseTemplate(s); err != nil {
			t.Errorf("ParseTemplate(%q) = %v, want ok", s, err)
		}
	}
	bad := map[string]string{
		"":                              "empty",
		"ftp://h/{z}/{x}/{y}":           "scheme",
		"file:///etc/{z}/{x}/{y}":       "scheme",
		"https://h/{z}/{x}.pbf":         "{y}",
		"https://h/{z}/{x}/{y}/{y}":     "{y}",
		"https://user:pw@h/{z}/{x}/{y}": "credentials",
		"https://user@h/{z}/{x}/{y}":    "credentials",
		"https:///{z}/{x}/{y}":          "host",
		"https://h/{z}/{x}/{y}#frag":    "fragment",
		"https://h/{z}/{x}/{y} ":        "control",
		"https://h/{z}/{x}/{y}\n":       "control",
		"https://h:99999/{z}/{x}/{y}":   "port",
		"https://h/" + strings.Repeat("a", MaxURLLength) + "/{z}/{x}/{y}": "longer",
		"javascript:alert(1)//{z}/{x}/{y}":                                "scheme",
	}
	for s, want := range bad {
		_, err := ParseTemplate(s)
		ie, ok := IsInvalid(err)
		if !ok || ie.Field != "url" || !strings.Contains(ie.Reason+ie.Error(), want) && !strings.Contains(strings.ToLower(ie.Reason), want) {
			t.Errorf("ParseTemplate(%q) = %v, want an InvalidError on url mentioning %q", s, err, want)
		}
	}
	tpl, _ := ParseTemplate("https://h/t/{z}/{x}/{y}.png")
	if got := tpl.URL(3, 4, 5); got != "https://h/t/3/4/5.png" {
		t.Errorf("URL = %q", got)
	}
}

func TestValidateHeaders(t *testing.T) {
	if err := ValidateHeaders(map[string]string{"Authorization": "Bearer x", "X-Api-Key": "k"}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []map[string]string{
		{"Bad Name": "v"},
		{"X-A": "a\r\nX-Injected: 1"},
		{"X-A": "a\x00"},
		{"Host": "evil"},
		{"transfer-encoding": "chunked"},
		{"X-A": strings.Repeat("v", MaxHeaderValue+1)},
	} {
		if _, ok := IsInvalid(ValidateHeaders(h)); !ok {
			t.Errorf("ValidateHeaders(%q) accepted", h)
		}
	}
	many := map[string]string{}
	for i := 0; i <= MaxHeaders; i++ {
		many[fmt.Sprintf("X-%d", i)] = "v"
	}
	if _, ok := IsInvalid(ValidateHeaders(many)); !ok {
		t.Error("too many headers accepted")
	}
	m := Masked(map[string]string{"Authorization": "Bearer secret"})
	if m["Authorization"] == "" || strings.Contains(fmt.Sprint(m), "secret") {
		t.Errorf("Masked = %v", m)
	}
}

func TestGuard(t *testing.T) {
	own := netip.MustParseAddrPort("127.0.0.1:9464")
	g := NewGuard(nil, []netip.AddrPort{own})
	denied := []string{"127.0.0.1:80", "[::1]:80", "169.254.169.254:80", "[fe80::1]:80", "0.0.0.0:80", "224.0.0.1:80", "[fd00:ec2::254]:80", "[::ffff:127.0.0.1]:80"}
	for _, a := range denied {
		if err := g.Check(netip.MustParseAddrPort(a)); !errors.Is(err, ErrAddressDenied) {
			t.Errorf("Check(%s) = %v, want denied", a, err)
		}
	}
	for _, a := range []string{"10.1.2.3:80", "192.168.1.1:443", "93.184.216.34:443", "[2606:4700::1]:443"} {
		if err := g.Check(netip.MustParseAddrPort(a)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", a, err)
		}
	}
	allow, err := ParsePrefixes("127.0.0.0/8, ::1")
	if err != nil {
		t.Fatal(err)
	}
	g = NewGuard(allow, []netip.AddrPort{own})
	if err := g.Check(netip.MustParseAddrPort("127.0.0.1:8080")); err != nil {
		t.Errorf("allowed range refused: %v", err)
	}
	if err := g.Check(own); !errors.Is(err, ErrAddressDenied) {
		t.Errorf("own admin listener allowed by range: %v", err)
	}
	if ap := ListenerAddrs("127.0.0.1:9464"); len(ap) != 1 || ap[0] != own {
		t.Errorf("ListenerAddrs(127.0.0.1:9464) = %v", ap)
	}
	all := ListenerAddrs(":8080")
	if len(all) == 0 {
		t.Fatal("ListenerAddrs(:8080) found no interface address")
	}
	g = NewGuard(allow, all)
	if err := g.Check(netip.MustParseAddrPort("127.0.0.1:8080")); !errors.Is(err, ErrAddressDenied) {
		t.Errorf("a listener on every interface is reachable on loopback: %v", err)
	}
	if err := g.Check(netip.MustParseAddrPort("93.184.216.34:8080")); err != nil {
		t.Errorf("another host on the same port refused: %v", err)
	}
	if _, err := ParsePrefixes("10.0.0.0/8,nonsense"); err == nil {
		t.Error("ParsePrefixes accepted nonsense")
	}
}

// tileServer is a real HTTP server standing in for an upstream; it counts requests.
type tileServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newTileServer(t *testing.T, h http.HandlerFunc) *tileServer {
	ts := &tileServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func loopbackGuard(t *testing.T) *Guard {
	allow, err := ParsePrefixes("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	return NewGuard(allow, nil)
}

func request(t *testing.T, base string, z, x, y int) Request {
	tpl, err := ParseTemplate(base + "/{z}/{x}/{y}.pbf")
	if err != nil {
		t.Fatal(err)
	}
	return Request{Source: "ds1:v1", Template: tpl, Z: z, X: x, Y: y, Accept: []string{"application/x-protobuf", "application/vnd.mapbox-vector-tile"}}
}

func pbf(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write([]byte(body))
}

func TestDefaultGuardRefusesLoopbackBeforeSending(t *testing.T) {
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) { pbf(w, "tile") })
	f := New(Config{Guard: NewGuard(nil, nil)})
	defer f.Close()
	_, err := f.Get(context.Background(), request(t, ts.URL, 0, 0, 0))
	if !errors.Is(err, ErrBadGateway) || !errors.Is(err, ErrAddressDenied) {
		t.Fatalf("err = %v, want bad gateway from a denied address", err)
	}
	if n := ts.hits.Load(); n != 0 {
		t.Fatalf("upstream got %d requests, want 0", n)
	}
}

func TestHeadersSentAndCache(t *testing.T) {
	var gotAuth atomic.Value
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		w.Header().Set("Cache-Control", "max-age=60")
		pbf(w, "tile-"+r.URL.Path)
	})
	f := New(Config{Guard: loopbackGuard(t), CacheBytes: 1 << 20})
	defer f.Close()
	r := request(t, ts.URL, 1, 0, 1)
	r.Headers = map[string]string{"Authorization": "Bearer upstream-secret"}
	for i := 0; i < 3; i++ {
		tile, err := f.Get(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if string(tile.Data) != "tile-/1/0/1.pbf" || tile.ContentType != "application/x-protobuf" {
			t.Fatalf("tile = %q %q", tile.Data, tile.ContentType)
		}
	}
	if gotAuth.Load() != "Bearer upstream-secret" {
		t.Errorf("Authorization upstream = %v", gotAuth.Load())
	}
	if n := ts.hits.Load(); n != 1 {
		t.Errorf("upstream requests = %d, want 1 (two cache hits)", n)
	}
	// Another source (the dataset's setting changed) never gets the old entry.
	r.Source = "ds1:v2"
	if _, err := f.Get(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if n := ts.hits.Load(); n != 2 {
		t.Errorf("upstream requests = %d after a source change, want 2", n)
	}
}

func TestRevalidateWithETag(t *testing.T) {
	var sawINM atomic.Int64
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=0")
		if r.Header.Get("If-None-Match") == `"v1"` {
			sawINM.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		pbf(w, "body-v1")
	})
	f := New(Config{Guard: loopbackGuard(t), CacheBytes: 1 << 20})
	defer f.Close()
	r := request(t, ts.URL, 2, 1, 1)
	for i := 0; i < 3; i++ {
		tile, err := f.Get(context.Background(), r)
		if err != nil || string(tile.Data) != "body-v1" {
			t.Fatalf("get %d: %q, %v", i, tile.Data, err)
		}
	}
	if sawINM.Load() != 2 || f.Stats().Revalidated != 2 {
		t.Errorf("revalidations = %d (stats %d), want 2", sawINM.Load(), f.Stats().Revalidated)
	}
}

func TestNoStoreNotCached(t *testing.T) {
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		pbf(w, "x")
	})
	f := New(Config{Guard: loopbackGuard(t), CacheBytes: 1 << 20})
	defer f.Close()
	r := request(t, ts.URL, 0, 0, 0)
	for i := 0; i < 2; i++ {
		if _, err := f.Get(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.hits.Load(); n != 2 {
		t.Errorf("upstream requests = %d, want 2", n)
	}
}

func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		pbf(w, "shared")
	})
	f := New(Config{Guard: loopbackGuard(t), CacheBytes: 1 << 20})
	defer f.Close()
	r := request(t, ts.URL, 5, 5, 5)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tile, err := f.Get(context.Background(), r)
			if err == nil && string(tile.Data) != "shared" {
				err = fmt.Errorf("tile %q", tile.Data)
			}
			errs <- err
		}()
	}
	// Let every caller join the flight before the upstream answers.
	deadline := time.Now().Add(5 * time.Second)
	for ts.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := ts.hits.Load(); got != 1 {
		t.Fatalf("upstream requests = %d for %d concurrent callers, want 1", got, n)
	}
}

func TestStatusMapping(t *testing.T) {
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/0/0/0.pbf":
			http.Error(w, "nope", http.StatusNotFound)
		case "/1/0/0.pbf":
			w.WriteHeader(http.StatusNoContent)
		case "/2/0/0.pbf":
			http.Error(w, "<script>secret stack trace</script>", http.StatusInternalServerError)
		case "/3/0/0.pbf":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>login page</html>"))
		case "/4/0/0.pbf":
			pbf(w, strings.Repeat("x", 2048))
		case "/5/0/0.pbf":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
		}
	})
	f := New(Config{Guard: loopbackGuard(t), MaxTileBytes: 1024})
	defer f.Close()
	want := []error{ErrNoTile, ErrNoTile, ErrBadGateway, ErrBadGateway, ErrBadGateway, ErrBadGateway}
	for z, w := range want {
		_, err := f.Get(context.Background(), request(t, ts.URL, z, 0, 0))
		if !errors.Is(err, w) {
			t.Errorf("z=%d: err = %v, want %v", z, err, w)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("z=%d: the upstream's error body leaked into %q", z, err)
		}
	}
}

func TestBlackHoleTimesOutWithinDeadline(t *testing.T) {
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) { pbf(w, "ok") })
	proxy, err := faultproxy.Start(strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetMode(faultproxy.BlackHole)
	f := New(Config{Guard: loopbackGuard(t), Timeout: 300 * time.Millisecond})
	defer f.Close()
	start := time.Now()
	_, err = f.Get(context.Background(), request(t, "http://"+proxy.Addr(), 0, 0, 0))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want timeout", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %v, want about the 300 ms deadline", took)
	}
}

func TestSaturationAnswersAtOnce(t *testing.T) {
	release := make(chan struct{})
	ts := newTileServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		pbf(w, "slow")
	})
	defer close(release)
	f := New(Config{Guard: loopbackGuard(t), MaxInFlight: 2, QueueWait: 20 * time.Millisecond})
	defer f.Close()
	for i := 0; i < 2; i++ {
		go func(i int) { _, _ = f.Get(context.Background(), request(t, ts.URL, 9, i, 0)) }(i)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ts.hits.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_, err := f.Get(context.Background(), request(t, ts.URL, 9, 7, 0))
	if !errors.Is(err, ErrSaturated) {
		t.Fatalf("third distinct tile: err = %v, want saturated", err)
	}
	if f.Stats().Saturated != 1 {
		t.Errorf("saturated count = %d", f.Stats().Saturated)
	}
}

func TestSlowUpstreamDoesNotSlowAnother(t *testing.T) {
	release := make(chan struct{})
	slow := newTileServer(t, func(w http.ResponseWriter, r *http.Request) { <-release; pbf(w, "slow") })
	defer close(release)
	fast := newTileServer(t, func(w http.ResponseWriter, r *http.Request) { pbf(w, "fast") })
	f := New(Config{Guard: loopbackGuard(t), MaxInFlight: 4, QueueWait: 10 * time.Millisecond})
	defer f.Close()
	for i := 0; i < 8; i++ {
		go func(i int) { _, _ = f.Get(context.Background(), request(t, slow.URL, 10, i, 0)) }(i)
	}
	deadline := time.Now().Add(5 * time.Second)
	for slow.hits.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	tile, err := f.Get(context.Background(), request(t, fast.URL, 0, 0, 0))
	if err != nil || string(tile.Data) != "fast" {
		t.Fatalf("fast upstream while the slow one is saturated: %q, %v", tile.Data, err)
	}
}

func TestFreshness(t *testing.T) {
	cases := map[string]struct {
		ttl   time.Duration
		store bool
	}{
		"":                                {time.Minute, true},
		"max-age=30":                      {30 * time.Second, true},
		"public, max-age=30, s-maxage=90": {90 * time.Second, true},
		"no-store":                        {0, false},
		"private, max-age=600":            {0, false},
		"no-cache":                        {0, true},
	}
	for cc, want := range cases {
		h := http.Header{}
		if cc != "" {
			h.Set("Cache-Control", cc)
		}
		ttl, store := freshness(h, time.Minute)
		if ttl != want.ttl || store != want.store {
			t.Errorf("freshness(%q) = %v, %v; want %v, %v", cc, ttl, store, want.ttl, want.store)
		}
	}
}

func TestCacheBound(t *testing.T) {
	c := newCache(16 << 10)
	for i := 0; i < 1000; i++ {
		c.put(fmt.Sprint(i), entry{tile: Tile{Data: make([]byte, 500)}, expires: time.Now().Add(time.Hour)})
	}
	if c.size > c.max {
		t.Fatalf("size %d over bound %d", c.size, c.max)
	}
	if _, ok := c.get("999"); !ok {
		t.Error("most recent entry evicted")
	}
	if _, ok := c.get("0"); ok {
		t.Error("oldest entry kept past the bound")
	}
}
