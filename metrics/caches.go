package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// CacheStats are the counters of a cache that keeps its own (read at scrape time, not counted
// per lookup here): the hot-tile cache counts under the lock it takes anyway.
type CacheStats struct {
	Hits, Misses, Evictions uint64
	Entries                 int
	// Bytes held against MaxBytes (0: not bounded by bytes).
	Bytes, MaxBytes int64
}

// caches collects the lookups and evictions families: the series the server counts (key and
// dataset caches) and those of caches read at scrape time, in the same families, so that
// sum by (cache) covers every cache. It also reports the size of the latter.
type caches struct {
	lookups, evictions *prometheus.CounterVec
	entries, bytes     *prometheus.Desc
	maxBytes           *prometheus.Desc

	mu      sync.Mutex
	sources map[string]func() CacheStats // by cache name; guarded by mu
	sizes   map[string]func() int        // caches counted here whose size is read at scrape; guarded by mu
}

func newCaches() *caches {
	return &caches{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "cache_lookups_total",
			Help: "Tile path cache lookups, by cache (key, dataset, tile) and outcome (hit, miss; key and dataset also stale, failed, invalid)."},
			[]string{"cache", "outcome"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "cache_evictions_total",
			Help: "Entries dropped from a tile path cache (invalidated, expired, over its bound, or dropped with their file), by cache."},
			[]string{"cache"}),
		entries: prometheus.NewDesc(namespace+"_cache_entries", "Entries held, by cache (caches that report their size).",
			[]string{"cache"}, nil),
		bytes: prometheus.NewDesc(namespace+"_cache_bytes", "Memory held (data plus per-entry overhead), by cache bounded in bytes.",
			[]string{"cache"}, nil),
		maxBytes: prometheus.NewDesc(namespace+"_cache_max_bytes", "The bound of cache_bytes (TILEGATE_HOT_TILE_CACHE_BYTES for the tile cache).",
			[]string{"cache"}, nil),
		sources: map[string]func() CacheStats{},
		sizes:   map[string]func() int{},
	}
}

func (c *caches) Describe(ch chan<- *prometheus.Desc) {
	c.lookups.Describe(ch)
	c.evictions.Describe(ch)
	ch <- c.entries
	ch <- c.bytes
	ch <- c.maxBytes
}

func (c *caches) Collect(ch chan<- prometheus.Metric) {
	c.lookups.Collect(ch)
	c.evictions.Collect(ch)
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, entries := range c.sizes {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(entries()), name)
	}
	lookups, evictions := desc(c.lookups), desc(c.evictions)
	for name, read := range c.sources {
		st := read()
		ch <- prometheus.MustNewConstMetric(lookups, prometheus.CounterValue, float64(st.Hits), name, "hit")
		ch <- prometheus.MustNewConstMetric(lookups, prometheus.CounterValue, float64(st.Misses), name, "miss")
		ch <- prometheus.MustNewConstMetric(evictions, prometheus.CounterValue, float64(st.Evictions), name)
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Entries), name)
		if st.MaxBytes > 0 {
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes), name)
			ch <- prometheus.MustNewConstMetric(c.maxBytes, prometheus.GaugeValue, float64(st.MaxBytes), name)
		}
	}
}

// desc is a vector's one descriptor.
func desc(v prometheus.Collector) *prometheus.Desc {
	ch := make(chan *prometheus.Desc, 1)
	v.Describe(ch)
	return <-ch
}

// CacheSource adds a cache that counts its own lookups and evictions, read at every scrape as
// cache=name. Its name must differ from the caches counted through CacheLookup.
func (m *Metrics) CacheSource(name string, read func() CacheStats) {
	m.caches.mu.Lock()
	defer m.caches.mu.Unlock()
	m.caches.sources[name] = read
}

// CacheSize adds the size of a cache counted through CacheLookup, read at every scrape as
// tilegate_cache_entries{cache=name}.
func (m *Metrics) CacheSize(name string, entries func() int) {
	m.caches.mu.Lock()
	defer m.caches.mu.Unlock()
	m.caches.sizes[name] = entries
}
