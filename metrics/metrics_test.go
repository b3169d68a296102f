package metrics_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/metrics"
)

func scrape(t *testing.T, m *metrics.Metrics) testenv.Scrape {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	return testenv.ScrapeMetrics(t, srv.URL)
}

// TestUsageFlushed: the usage flusher's figures, as a scrape reads them.
func TestUsageFlushed(t *testing.T) {
	m := metrics.New()
	if s := scrape(t, m); s.Value("tilegate_usage_last_flush_timestamp_seconds") != 0 || s.Value("tilegate_usage_flushes_total") != 0 {
		t.Fatalf("fresh registry reports a flush")
	}
	at := time.Date(2026, 11, 24, 15, 0, 0, 500_000_000, time.UTC)
	m.UsageFlushed(7, at.Add(-10*time.Second))
	m.UsageFlushed(3, at)
	m.UsageFlushFailed()
	s := scrape(t, m)
	for name, want := range map[string]float64{
		"tilegate_usage_last_flush_timestamp_seconds": float64(at.UnixNano()) / 1e9,
		"tilegate_usage_last_flush_rows":              3,
		"tilegate_usage_flushed_rows_total":           10,
		"tilegate_usage_flushes_total":                2,
		"tilegate_usage_flush_failures_total":         1,
	} {
		if got := s.Value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestOperationStatuses: each status of an operation is its own series; out-of-range ones are
// "other".
func TestOperationStatuses(t *testing.T) {
	m := metrics.New()
	op := m.Operation("getTile")
	op.Observe(200, time.Millisecond)
	op.Observe(200, 3*time.Millisecond)
	op.Observe(404, time.Microsecond)
	op.Observe(999, time.Microsecond)
	s := scrape(t, m)
	for _, c := range []struct {
		status string
		n      float64
	}{{"200", 2}, {"404", 1}, {"other", 1}} {
		if got := s.Value("tilegate_http_requests_total", "operation", "getTile", "status", c.status); got != c.n {
			t.Errorf("requests{%s} = %v, want %v", c.status, got, c.n)
		}
		if got := s.Value("tilegate_http_request_duration_seconds", "operation", "getTile", "status", c.status); got != c.n {
			t.Errorf("durations{%s} = %v, want %v", c.status, got, c.n)
		}
	}
	if got := s.Sum("tilegate_http_request_duration_seconds", "operation", "getTile", "status", "200"); got != 0.004 {
		t.Errorf("duration sum{200} = %v, want 0.004", got)
	}
}

// TestRegistriesAreSeparate: two servers' registries in one process do not share series.
func TestRegistriesAreSeparate(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.TokenBatch(5)
	if got := scrape(t, b).Value("tilegate_token_batch_size"); got != 0 {
		t.Errorf("b saw a's batch: %v", got)
	}
	if got := scrape(t, a).Sum("tilegate_token_batch_size"); got != 5 {
		t.Errorf("a's batch sum = %v, want 5", got)
	}
}
