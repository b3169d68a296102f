package server_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
)

// BenchmarkTileRequest measures the server's work for one tile on a warm cache (handler called
// directly, no network): a public dataset, a private one with a tile token, and a private one
// with an API key that has origin rules, and the same with a key that has every rule (origins, a
// user agent, 10 datasets, 10 IP ranges, an expiry; issue #10). go run ./bench/tiles measures the
// same over loopback.
func BenchmarkTileRequest(b *testing.B) {
	db := testenv.Databases()[len(testenv.Databases())-1] // the tile path runs no SQL: any will do
	e := tlStart(b, db, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	h := e.Server.Handler()
	pub := e.dataset(b, e.c, gen.DatasetKindVector, gen.Public)
	priv := e.dataset(b, e.c, gen.DatasetKindVector, gen.Private)
	for _, d := range []gen.Dataset{pub, priv} {
		e.uploadOK(b, d.Id, tlVectorFile())
	}
	key := e.key(b, e.c, []string{"https://maps.bench.example", "*.bench.example"}, "").Token
	tok := e.token(b, e.c, priv.Id)
	all := e.key(b, e.c, []string{"https://maps.bench.example", "*.bench.example"}, "bench-map/")
	ids := []uuid.UUID{}
	for range 9 {
		ids = append(ids, e.dataset(b, e.c, gen.DatasetKindVector, gen.Private).Id)
	}
	var ranges []string
	for i := range 9 {
		ranges = append(ranges, fmt.Sprintf("10.%d.0.0/16", i))
	}
	e.change(b, all.Id, gen.APIKeySettings{
		DatasetIds: nullable.NewNullableWithValue(append(ids, priv.Id)),
		IpRanges:   tlList(append(ranges, "192.0.2.0/24")), // httptest's RemoteAddr, listed last
		ExpiresAt:  nullable.NewNullableWithValue(time.Now().Add(24 * time.Hour)),
	})
	modes := []struct {
		name, path, origin string
	}{
		{"public", tlTilePath(pub.Id, "1/1/1", "pbf", ""), ""},
		{"token", tlTilePath(priv.Id, "1/1/1", "pbf", tok), ""},
		{"key+origin", tlTilePath(priv.Id, "1/1/1", "pbf", "key="+key), "https://www.bench.example"},
		{"key+all-rules", tlTilePath(priv.Id, "1/1/1", "pbf", "key="+all.Token), "https://www.bench.example"},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", m.path, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			if m.origin != "" {
				req.Header.Set("Origin", m.origin)
			}
			req.Header.Set("User-Agent", "bench-map/1.0")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", m.path, w.Code, w.Body)
				}
			}
		})
	}
}
