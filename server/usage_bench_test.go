package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/tiletoken"
)

// BenchmarkTileUsage is BenchmarkTileRequest with usage counting and limits (the key has a rate
// limit and a quota that never bind) against the same server with UsageOff, mode by mode, one
// after the other: go test ./server -run '^$' -bench TileUsage -count 5 (compare on/off pairs).
func BenchmarkTileUsage(b *testing.B) {
	db := testenv.Databases()[len(testenv.Databases())-1] // the tile path runs no SQL: any will do
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	key, err := tiletoken.GenerateKey("b1")
	must(b, err)
	signer, err := tiletoken.New([]tiletoken.Key{key})
	must(b, err)
	on := tlStart(b, db, server.Config{Logger: logger, Signer: signer})
	// The same tiles and signing key, on the same database.
	off := tlStart(b, db, server.Config{Logger: logger, Signer: signer, DataDir: on.dataDir, UsageOff: true})
	pub := on.dataset(b, on.c, gen.DatasetKindVector, gen.Public)
	priv := on.dataset(b, on.c, gen.DatasetKindVector, gen.Private)
	for _, d := range []gen.Dataset{pub, priv} {
		on.uploadOK(b, d.Id, tlVectorFile())
	}
	k := on.key(b, on.c, []string{"https://maps.bench.example", "*.bench.example"}, "")
	quota := int64(1_000_000_000_000)
	r, err := on.c.ChangeAPIKeySettingsWithResponse(b.Context(), k.Id, gen.APIKeySettings{
		RateLimit:    nullable.NewNullableWithValue(gen.RateLimit{RequestsPerSecond: 100000, Burst: 1000000}),
		MonthlyQuota: nullable.NewNullableWithValue(quota),
	})
	must(b, err)
	wantStatus(b, r.StatusCode(), 200, r.Body)
	tok := on.token(b, on.c, priv.Id)
	modes := []struct {
		name, path, origin string
	}{
		{"public", tlTilePath(pub.Id, "1/1/1", "pbf", ""), ""},
		{"token", tlTilePath(priv.Id, "1/1/1", "pbf", tok), ""},
		{"key+limits", tlTilePath(priv.Id, "1/1/1", "pbf", "key="+k.Token), "https://www.bench.example"},
	}
	servers := []struct {
		name string
		h    http.Handler
	}{{"usage", on.Server.Handler()}, {"usage-off", off.Server.Handler()}}
	for _, m := range modes {
		for _, s := range servers {
			b.Run(m.name+"/"+s.name, func(b *testing.B) {
				req := httptest.NewRequest("GET", m.path, nil)
				req.Header.Set("Accept-Encoding", "gzip")
				if m.origin != "" {
					req.Header.Set("Origin", m.origin)
				}
				b.ReportAllocs()
				for b.Loop() {
					w := httptest.NewRecorder()
					s.h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("%s: %d %s", m.path, w.Code, w.Body)
					}
				}
			})
		}
	}
}
