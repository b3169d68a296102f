package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/internal/testnginx"
	"github.com/tilegate/tilegate/internal/testpeer"
	"github.com/tilegate/tilegate/mbtiles"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/upstream"
)

// BenchmarkUpstreamTiles compares, over loopback HTTP with one keep-alive client, the same tile
// served by tilegate from a local MBTiles file, by tilegate from an upstream tile server
// (mbtileserver, the peer in ../shared/peers, serving the same file; warm: from tilegate's cache;
// cold: cache off, one upstream request per tile), by the upstream alone, and a forward-auth
// decision. Sub-benchmarks interleave with -count; pin it to one core with taskset:
// taskset -c 1 go test ./server -run '^$' -bench BenchmarkUpstreamTiles -benchtime 3s -count 5
func BenchmarkUpstreamTiles(b *testing.B) {
	db := testenv.Databases()[len(testenv.Databases())-1]
	dir := b.TempDir()
	must(b, mbtiles.WriteTestFile(filepath.Join(dir, "roads.mbtiles"), tlVectorFile()))
	peer := testpeer.Start(b, dir)
	tpl := peer.URL + "/services/roads/tiles/{z}/{x}/{y}.pbf"
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	warm := tlStart(b, db, server.Config{Logger: quiet, UsageOff: true, Upstream: loopbackUpstreams(b, upstream.Config{CacheBytes: 64 << 20})})
	cold := tlStart(b, db, server.Config{Logger: quiet, UsageOff: true, Upstream: loopbackUpstreams(b, upstream.Config{})})
	file := warm.dataset(b, warm.c, gen.DatasetKindVector, gen.Public)
	warm.uploadOK(b, file.Id, tlVectorFile())
	wup := warm.upstreamDataset(b, gen.Public, upstreamSetting(tpl, nil, ""))
	cup := cold.upstreamDataset(b, gen.Public, upstreamSetting(tpl, nil, ""))
	priv := warm.dataset(b, warm.c, gen.DatasetKindVector, gen.Private)
	tok := warm.token(b, warm.c, priv.Id)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	get := func(b *testing.B, url string, header ...string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("%s: %d", url, res.StatusCode)
		}
	}
	for _, m := range []struct {
		name, url string
		header    []string
	}{
		{"file", warm.URL + tlTilePath(file.Id, "1/1/1", "pbf", ""), nil},
		{"upstream-warm", warm.URL + tlTilePath(wup.Id, "1/1/1", "pbf", ""), nil},
		{"upstream-cold", cold.URL + tlTilePath(cup.Id, "1/1/1", "pbf", ""), nil},
		{"upstream-alone", peer.URL + "/services/roads/tiles/1/1/1.pbf", nil},
		{"forward-auth-token", warm.URL + "/api/tiles/auth", []string{"X-Original-URI", tlTilePath(priv.Id, "1/1/1", "pbf", tok)}},
	} {
		b.Run(m.name, func(b *testing.B) {
			get(b, m.url, m.header...) // warm
			b.ReportAllocs()
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				get(b, m.url, m.header...)
				took = append(took, time.Since(start))
			}
			reportP50(b, took)
		})
	}
}

// BenchmarkNginxForwardAuth compares nginx in front of a real tile server (mbtileserver) alone
// with the same nginx asking tilegate for every request (examples/forward-auth/nginx.conf), over
// loopback: go test ./server -run '^$' -bench BenchmarkNginxForwardAuth -benchtime 3s
func BenchmarkNginxForwardAuth(b *testing.B) {
	db := testenv.Databases()[len(testenv.Databases())-1]
	e := tlStart(b, db, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), UsageOff: true})
	d := e.dataset(b, e.c, gen.DatasetKindVector, gen.Private)
	dir := b.TempDir()
	must(b, mbtiles.WriteTestFile(filepath.Join(dir, d.Id.String()+".mbtiles"), mbtiles.TestFile{
		Format: "pbf", MaxZoom: 5, Gzip: true, Tiles: tlVectorTiles}))
	peer := testpeer.Start(b, dir)
	conf, err := os.ReadFile("../examples/forward-auth/nginx.conf")
	must(b, err)
	// The same server, plus a location that skips tilegate: the baseline.
	direct := "\n  location /direct/ { proxy_pass http://tiles/services/; proxy_http_version 1.1; proxy_set_header Connection \"\"; }\n"
	c := strings.NewReplacer(
		"127.0.0.1:8090", strings.TrimPrefix(peer.URL, "http://"),
		"127.0.0.1:8080", strings.TrimPrefix(e.URL, "http://"),
		"listen 80;", "listen {{LISTEN}};"+direct,
	).Replace(string(conf))
	edge := testnginx.Start(b, c)
	tok := e.token(b, e.c, d.Id)
	k := e.key(b, e.c, nil, "")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for _, m := range []struct{ name, url string }{
		{"nginx-alone", edge.URL + "/direct/" + d.Id.String() + "/tiles/1/1/1.pbf"},
		{"nginx+auth-token", edge.URL + tlTilePath(d.Id, "1/1/1", "pbf", tok)},
		{"nginx+auth-key", edge.URL + tlTilePath(d.Id, "1/1/1", "pbf", "key="+k.Token)},
	} {
		b.Run(m.name, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				res, err := client.Get(m.url)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != 200 {
					b.Fatalf("%s: %d", m.url, res.StatusCode)
				}
				took = append(took, time.Since(start))
			}
			reportP50(b, took)
		})
	}
}

// reportP50 reports the median request time (µs) and the requests a second one client makes.
func reportP50(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
