// Package metrics provides tilegate's Prometheus metrics: one registry per server (never the
// global one, so tests and several servers in one process do not collide), the series the
// server updates, and the /metrics handler the admin listener serves.
//
// Labels are low cardinality by design: operationIds, statuses, tile formats, refusal reasons
// and cache kinds; never a key, a dataset or a raw path. The hot tile path resolves its series
// once (Operation, TileFormat, TileRefused return children to keep) instead of looking labels up
// per request.
package metrics

import (
	"database/sql"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "tilegate"

// Buckets. Tiles answer in tens of microseconds in process and management calls in
// milliseconds: the default buckets (from 5 ms) would put every tile in the first one.
var (
	durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	batchBuckets    = []float64{1, 2, 5, 10, 20, 30, 40, 50}
	uploadSeconds   = []float64{.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	uploadSizes     = prometheus.ExponentialBuckets(64<<10, 4, 11) // 64 KiB .. 64 GiB
)

// Metrics is one server's registry and series. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	tilesServed  *prometheus.CounterVec
	tileBytes    *prometheus.CounterVec
	tilesRefused *prometheus.CounterVec

	caches *caches

	tokenBatch prometheus.Histogram

	uploadBytes    *prometheus.HistogramVec
	uploadDuration *prometheus.HistogramVec

	usageFlushes      prometheus.Counter
	usageFlushedRows  prometheus.Counter
	usageFlushFails   prometheus.Counter
	usageLastFlush    prometheus.Gauge
	usageLastFlushRow prometheus.Gauge
}

// New builds a registry with tilegate's series, build info, and the Go runtime and process
// collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := factory{m.reg}
	m.httpRequests = f.counterVec("http_requests_total",
		"HTTP requests answered, by operationId (\"other\": no operation of the contract) and status.", "operation", "status")
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace,
		Name: "http_request_duration_seconds", Help: "Time to answer an HTTP request, by operationId and status.",
		Buckets: durationBuckets}, []string{"operation", "status"})
	m.reg.MustRegister(m.httpDuration)
	m.tilesServed = f.counterVec("tiles_served_total",
		"Tile requests answered with a tile (200), no tile (204) or not modified (304), by format.", "format")
	m.tileBytes = f.counterVec("tile_bytes_total", "Tile body bytes sent, by format.", "format")
	m.tilesRefused = f.counterVec("tiles_refused_total",
		"Tile requests refused, by reason (X-Tilegate-Reason; not_found and bad_request when it has none).", "reason")
	m.caches = newCaches()
	m.reg.MustRegister(m.caches)
	m.tokenBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace,
		Name: "token_batch_size", Help: "Distinct datasets asked for in one POST /api/tiles/tokens/.", Buckets: batchBuckets})
	m.uploadBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace,
		Name: "upload_bytes", Help: "Body bytes received per MBTiles upload, by outcome (stored, rejected, failed).",
		Buckets: uploadSizes}, []string{"outcome"})
	m.uploadDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace,
		Name: "upload_duration_seconds", Help: "Time to answer an MBTiles upload, by outcome (stored, rejected, failed).",
		Buckets: uploadSeconds}, []string{"outcome"})
	m.reg.MustRegister(m.tokenBatch, m.uploadBytes, m.uploadDuration)
	m.usageFlushes = f.counter("usage_flushes_total", "Usage counter flushes written.")
	m.usageFlushedRows = f.counter("usage_flushed_rows_total", "Usage rows written by all flushes.")
	m.usageFlushFails = f.counter("usage_flush_failures_total", "Usage flushes that failed (their counts are kept for the next).")
	m.usageLastFlush = f.gauge("usage_last_flush_timestamp_seconds", "When usage counts were last written (Unix time; 0: never).")
	m.usageLastFlushRow = f.gauge("usage_last_flush_rows", "Rows the last usage flush wrote.")
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	return m
}

// factory registers series under the tilegate namespace.
type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

// buildInfo is tilegate_build_info{version, revision, goversion} 1, from the binary's build
// information ("unknown" where the build recorded none, e.g. -buildvcs=false).
func buildInfo() prometheus.Collector {
	version, revision, goVersion := "unknown", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			version = v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion}})
	g.Set(1)
	return g
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the registry itself, for collectors of other parts.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// DB adds the pool statistics of db (go_sql_* with db_name="tilegate").
func (m *Metrics) DB(db *sql.DB) error {
	return m.reg.Register(collectors.NewDBStatsCollector(db, "tilegate"))
}

// Listener adds the cache invalidation listener's state: connected (1 or 0) and reconnects
// (connections established after the first), read at every scrape.
func (m *Metrics) Listener(connected func() bool, reconnects func() uint64) error {
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "cache_listener_connected",
		Help: "1 while the PostgreSQL LISTEN connection that invalidates the tile caches is up (always 0 on SQLite)."},
		func() float64 {
			if connected() {
				return 1
			}
			return 0
		})
	re := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "cache_listener_reconnects_total",
		Help: "Times the cache invalidation listener connected again after losing its connection (the caches are flushed each time)."},
		func() float64 { return float64(reconnects()) })
	if err := m.reg.Register(up); err != nil {
		return err
	}
	return m.reg.Register(re)
}

// Operation is one operationId's request series, each status's resolved on first use.
type Operation struct {
	m        *Metrics
	name     string
	byStatus [600]atomic.Pointer[opSeries]
}

type opSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// Operation returns the series of operationId id; keep it (resolving it is not cheap).
func (m *Metrics) Operation(id string) *Operation { return &Operation{m: m, name: id} }

// Observe counts one request answered with status after d.
func (o *Operation) Observe(status int, d time.Duration) {
	i := status
	if i < 0 || i >= len(o.byStatus) {
		i = 0
	}
	s := o.byStatus[i].Load()
	if s == nil {
		s = o.resolve(i)
	}
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
}

func (o *Operation) resolve(i int) *opSeries {
	status := "other"
	if i != 0 {
		status = strconv.Itoa(i)
	}
	s := &opSeries{
		requests: o.m.httpRequests.WithLabelValues(o.name, status),
		duration: o.m.httpDuration.WithLabelValues(o.name, status),
	}
	// Two first requests may both resolve: the children are the same either way.
	o.byStatus[i].Store(s)
	return s
}

// TileFormat is a tile format's served and bytes series.
type TileFormat struct {
	Served, Bytes prometheus.Counter
}

// TileFormat returns format's series; keep it.
func (m *Metrics) TileFormat(format string) TileFormat {
	return TileFormat{Served: m.tilesServed.WithLabelValues(format), Bytes: m.tileBytes.WithLabelValues(format)}
}

// TileRefused returns the refusals series of reason; keep it.
func (m *Metrics) TileRefused(reason string) prometheus.Counter {
	return m.tilesRefused.WithLabelValues(reason)
}

// CacheLookup returns the lookups series of a cache and outcome; keep it.
func (m *Metrics) CacheLookup(cache, outcome string) prometheus.Counter {
	return m.caches.lookups.WithLabelValues(cache, outcome)
}

// CacheEviction returns the evictions series of a cache; keep it.
func (m *Metrics) CacheEviction(cache string) prometheus.Counter {
	return m.caches.evictions.WithLabelValues(cache)
}

// TokenBatch records a token batch of n distinct datasets.
func (m *Metrics) TokenBatch(n int) { m.tokenBatch.Observe(float64(n)) }

// Upload outcomes.
const (
	UploadStored   = "stored"   // the file replaced the dataset's tiles
	UploadRejected = "rejected" // refused (4xx): bad file, too large, not allowed
	UploadFailed   = "failed"   // the server failed (5xx)
)

// Upload records an upload that received bytes of body and was answered after d.
func (m *Metrics) Upload(outcome string, bytes int64, d time.Duration) {
	m.uploadBytes.WithLabelValues(outcome).Observe(float64(bytes))
	m.uploadDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// UsageFlushed records a usage flush that wrote rows at t.
func (m *Metrics) UsageFlushed(rows int, t time.Time) {
	m.usageFlushes.Inc()
	m.usageFlushedRows.Add(float64(rows))
	m.usageLastFlushRow.Set(float64(rows))
	m.usageLastFlush.Set(float64(t.UnixNano()) / 1e9)
}

// UsageFlushFailed records a usage flush that failed.
func (m *Metrics) UsageFlushFailed() { m.usageFlushFails.Inc() }
