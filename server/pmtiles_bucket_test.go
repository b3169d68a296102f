package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/blobstore"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/internal/testminio"
	"github.com/tilegate/tilegate/pmtiles"
	"github.com/tilegate/tilegate/server"
)

// bucketRequests counts the HTTP requests a bucket store makes.
type bucketRequests struct {
	n atomic.Int64
	http.RoundTripper
}

func (c *bucketRequests) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

// tlBucket opens a bucket of the shared MinIO fixture, counting its requests in n.
func tlBucket(t testing.TB, srv *testminio.Server, bucket string, n *bucketRequests) blobstore.Store {
	t.Helper()
	env := map[string]string{"AWS_ACCESS_KEY_ID": testminio.AccessKey, "AWS_SECRET_ACCESS_KEY": testminio.SecretKey}
	raw := fmt.Sprintf("s3://%s/tiles?endpoint=%s&region=%s&use_path_style=true", bucket, srv.Endpoint, testminio.Region)
	s, err := blobstore.Open(context.Background(), raw, blobstore.Options{Getenv: func(k string) string { return env[k] }, Transport: n})
	must(t, err)
	return s
}

// tlLeafArchive is an archive of n tiles at zoom 9 in leaf directories of 256 entries: a cold
// tile needs the header, the root directory, a leaf and the tile.
func tlLeafArchive(t testing.TB, n int) ([]byte, [][3]int) {
	// Tiles of 1.5 KB that do not compress (a PCG stream), so the archive (6 MB for 4,096) reaches
	// far past what one request of the header reads.
	rng := rand.New(rand.NewPCG(1, 2))
	tiles := map[[3]int][]byte{}
	for i := range n {
		b := make([]byte, 1536)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		b[0] = 0x1a
		tiles[[3]int{9, i % 512, i / 512}] = b
	}
	coords := make([][3]int, 0, len(tiles))
	for c := range tiles {
		coords = append(coords, c)
	}
	slices.SortFunc(coords, func(a, b [3]int) int { return a[1]*1000 + a[2] - (b[1]*1000 + b[2]) })
	return tlArchive(t, pmtiles.TestArchive{TileType: pmtiles.TileTypeMVT, Tiles: tiles, Gzip: true, LeafSize: 256,
		Metadata: map[string]any{"vector_layers": []any{map[string]any{"id": "roads"}}}}), coords
}

func tlUploadPublic(t testing.TB, e *tlEnv, archive []byte) uuid.UUID {
	t.Helper()
	d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Public)
	r := e.upload(t, e.c, d.Id, archive)
	wantStatus(t, r.StatusCode(), 200, r.Body)
	return d.Id
}

// A replica that has never read a bucket-backed PMTiles dataset answers its first tile with at
// most 3 bucket requests (issue #18's figure), a tile of another leaf with at most 2, and any tile
// whose directory it has read with at most 1 (the tile's bytes) — none when the hot-tile cache
// has it.
func TestPMTilesColdTileBucketRequests(t *testing.T) {
	srv := testminio.Shared(t)
	bucket := srv.Bucket(t)
	db := testenv.Databases()[0]
	var upA, upB bucketRequests
	upA.RoundTripper, upB.RoundTripper = http.DefaultTransport, http.DefaultTransport
	a := tlStart(t, db, server.Config{Bucket: tlBucket(t, srv, bucket, &upA)})
	archive, coords := tlLeafArchive(t, 4096)
	id := tlUploadPublic(t, a, archive)

	// Replica B: the same database and bucket, nothing read yet; no hot-tile cache, so every
	// tile is read from the source.
	b := tlStart(t, db, server.Config{Bucket: tlBucket(t, srv, bucket, &upB), HotTileBytes: -1})
	get := func(c [3]int) int64 {
		t.Helper()
		before := upB.n.Load()
		r := b.get(t, "GET", tlTilePath(id, fmt.Sprintf("%d/%d/%d", c[0], c[1], c[2]), "pbf", ""))
		if r.status != 200 || len(r.body) == 0 {
			t.Fatalf("tile %v: %d", c, r.status)
		}
		return upB.n.Load() - before
	}
	first := get(coords[0])
	sameLeaf := get(coords[1])
	otherLeaf := get(coords[len(coords)-1])
	again := get(coords[0])
	t.Logf("bucket requests: first tile %d, same leaf %d, another leaf %d, a tile read before (no hot cache) %d", first, sameLeaf, otherLeaf, again)
	if first > 3 || sameLeaf > 1 || otherLeaf > 2 || again > 1 {
		t.Errorf("bucket requests: first %d (want ≤ 3), same leaf %d (≤ 1), another leaf %d (≤ 2), again %d (≤ 1)", first, sameLeaf, otherLeaf, again)
	}
}

// BenchmarkPMTilesBucket compares the same PMTiles archive (4,096 tiles in leaf directories)
// served by tilegate from the data directory and from a MinIO bucket, with the hot-tile cache
// (the default) and without (every tile a range read: a pread, or a ranged GET). One keep-alive
// client walks every tile in turn. pmtiles-serve is go-pmtiles v1.31.2's `pmtiles serve` on the
// same archive in a directory, when its binary is in TILEGATE_PMTILES_SERVE (built outside the
// repository, never shipped). Rounds interleave when the benchmark binary runs several times:
// go test -c -o /tmp/server.test ./server && cd server && for i in 1 2 3 4 5; do taskset -c 1
// /tmp/server.test -test.run '^$' -test.bench BenchmarkPMTilesBucket -test.benchtime 2s; done
func BenchmarkPMTilesBucket(b *testing.B) {
	srv := testminio.Shared(b)
	bucket := srv.Bucket(b)
	db := testenv.Databases()[len(testenv.Databases())-1]
	archive, coords := tlLeafArchive(b, 4096)
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	type mode struct {
		name   string
		url    func(c [3]int) string
		reqs   *bucketRequests
		origin string
	}
	var modes []mode
	for _, m := range []struct {
		name   string
		bucket bool
		hot    int64
	}{{"disk", false, 0}, {"bucket", true, 0}, {"disk-no-hot-cache", false, -1}, {"bucket-no-hot-cache", true, -1}} {
		var reqs *bucketRequests
		cfg := server.Config{Logger: quiet, UsageOff: true, HotTileBytes: m.hot}
		if m.bucket {
			reqs = &bucketRequests{RoundTripper: http.DefaultTransport}
			cfg.Bucket = tlBucket(b, srv, bucket, reqs)
		}
		e := tlStart(b, db, cfg)
		id := tlUploadPublic(b, e, archive)
		modes = append(modes, mode{m.name, func(c [3]int) string {
			return e.URL + tlTilePath(id, fmt.Sprintf("%d/%d/%d", c[0], c[1], c[2]), "pbf", "")
		}, reqs, ""})
		if m.name == "disk" { // the same archive, private: by API key with an origin rule, by token
			d := e.dataset(b, e.c, gen.DatasetKindVector, gen.Private)
			r := e.upload(b, e.c, d.Id, archive)
			wantStatus(b, r.StatusCode(), 200, r.Body)
			key := "key=" + e.key(b, e.c, []string{"https://maps.example.com"}, "").Token
			tok := e.token(b, e.c, d.Id)
			for _, q := range []struct{ name, query, origin string }{{"disk-key+origin", key, "https://maps.example.com"}, {"disk-token", tok, ""}} {
				modes = append(modes, mode{q.name, func(c [3]int) string {
					return e.URL + tlTilePath(d.Id, fmt.Sprintf("%d/%d/%d", c[0], c[1], c[2]), "pbf", q.query)
				}, nil, q.origin})
			}
		}
	}
	if bin := os.Getenv("TILEGATE_PMTILES_SERVE"); bin != "" {
		dir := b.TempDir()
		must(b, os.WriteFile(filepath.Join(dir, "roads.pmtiles"), archive, 0o644))
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(b, err)
		port := l.Addr().(*net.TCPAddr).Port
		must(b, l.Close())
		cmd := exec.Command(bin, "serve", dir, "--port", fmt.Sprint(port), "--interface", "127.0.0.1")
		must(b, cmd.Start())
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		base := fmt.Sprintf("http://127.0.0.1:%d/roads/", port)
		tlWaitFor(b, 10*time.Second, "pmtiles serve", func() bool {
			res, err := http.Get(base + "9/0/0.mvt")
			if err == nil {
				res.Body.Close()
			}
			return err == nil
		})
		modes = append(modes, mode{"pmtiles-serve", func(c [3]int) string {
			return fmt.Sprintf("%s%d/%d/%d.mvt", base, c[0], c[1], c[2])
		}, nil, ""})
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(b *testing.B, url, origin string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		if origin != "" {
			req.Header.Set("Origin", origin)
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
	for _, m := range modes {
		for _, c := range coords { // warm: every directory read once, the hot cache filled
			get(b, m.url(c), m.origin)
		}
		b.Run(m.name, func(b *testing.B) {
			var before int64
			if m.reqs != nil {
				before = m.reqs.n.Load()
			}
			took := make([]time.Duration, 0, 1<<16)
			i := 0
			for b.Loop() {
				start := time.Now()
				get(b, m.url(coords[i%len(coords)]), m.origin)
				took = append(took, time.Since(start))
				i++
			}
			reportP50(b, took)
			if m.reqs != nil {
				b.ReportMetric(float64(m.reqs.n.Load()-before)/float64(b.N), "bucket-req/op")
			}
		})
	}
}
