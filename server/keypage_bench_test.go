package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/server"
	"github.com/tilegate/tilegate/store"
)

// BenchmarkKeyPage measures GET /v1/api_keys?limit=100 through the server's handler, in
// process and without a network or a client (what tilegate itself spends), in accounts of 1,000
// and 100,000 keys (bulk inserted): the first, a middle and the last page. cpu-µs/op is the
// process's user+system CPU per page (getrusage, so it includes GC and background goroutines);
// on SQLite it includes the embedded engine's work.
func BenchmarkKeyPage(b *testing.B) {
	for _, db := range testenv.Databases() {
		env := testenv.Start(b, db, server.Config{})
		h := env.Server.Handler()
		for _, n := range []int{1000, 100000} {
			acct := env.NewAccount(b)
			start := store.Now().Add(-time.Hour)
			if err := db.Store.BulkInsertKeys(context.Background(), acct.ID, n, start); err != nil {
				b.Fatal(err)
			}
			// A cursor at the key created i µs after start (ids are after uuid.Nil).
			at := func(i int) string {
				return (store.Cursor{Created: start.Add(time.Duration(i) * time.Microsecond)}).Encode()
			}
			for _, c := range []struct{ name, query string }{
				{"first", "/v1/api_keys?limit=100"},
				{"middle", "/v1/api_keys?limit=100&cursor=" + at(n/2)},
				{"last", "/v1/api_keys?limit=100&cursor=" + at(n-100)},
			} {
				b.Run(fmt.Sprintf("%s/keys=%d/%s", db.Name, n, c.name), func(b *testing.B) {
					req := httptest.NewRequest("GET", c.query, nil)
					req.Header.Set("Authorization", "Bearer "+acct.Token)
					cpu0 := cpuTime()
					for b.Loop() {
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK {
							b.Fatalf("status %d: %s", rec.Code, rec.Body)
						}
					}
					b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
				})
			}
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
