package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/metrics"
)

// BenchmarkObserveTile is what the metrics add to a tile request: the HTTP series, the served
// tile and its bytes (run with -benchmem: 0 allocs).
func BenchmarkObserveTile(b *testing.B) {
	spec, err := LoadSpec()
	if err != nil {
		b.Fatal(err)
	}
	rm := newRequestMetrics(metrics.New(), spec)
	c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/api/tiles/x/1/1/1.pbf", nil), httptest.NewRecorder())
	c.SetPath(tileRoute)
	c.SetParamNames("dataset_id", "z", "x", "tile")
	c.SetParamValues("00000000-0000-0000-0000-000000000000", "1", "1", "1.pbf")
	b.ReportAllocs()
	for b.Loop() {
		rm.observe(c, http.StatusOK, 1234, 20*time.Microsecond)
	}
}
