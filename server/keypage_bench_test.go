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
// process and without a network or a client (what tilegate itself spends), on an account of
// 1,000 keys: the first page and a middle one. cpu-µs/op is the process's user+system CPU per
// page (getrusage); on SQLite it includes the embedded engine's work.
func BenchmarkKeyPage(b *testing.B) {
	for _, db := range testenv.Databases() {
		env := testenv.Start(b, db, server.Config{})
		acct := env.NewAccount(b)
		if err := db.Store.BulkInsertKeys(context.Background(), acct.ID, 1000, store.Now().Add(-time.Hour)); err != nil {
			b.Fatal(err)
		}
		h := env.Server.Handler()
		page, err := db.Store.ListAPIKeys(context.Background(), acct.ID, nil, 100)
		if err != nil || page.Next == nil {
			b.Fatalf("first page: %v", err)
		}
		for _, c := range []struct{ name, query string }{
			{"first", "/v1/api_keys?limit=100"},
			{"after", "/v1/api_keys?limit=100&cursor=" + page.Next.Encode()},
		} {
			b.Run(fmt.Sprintf("%s/%s", db.Name, c.name), func(b *testing.B) {
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

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
