package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// The outcomes of a fetch other than a tile, as values the tile path maps to HTTP status.
var (
	// ErrNoTile: the upstream answered 404 or 204 (the dataset decides between an empty tile and 404).
	ErrNoTile = errors.New("upstream has no such tile")
	// ErrSaturated: the upstream already has its bound of requests in flight; answer 429 with
	// Retry-After instead of queueing without end.
	ErrSaturated = errors.New("upstream saturated")
	// ErrBadGateway: the upstream answered an error, an unexpected content type, a body over the
	// size bound, or could not be reached (502).
	ErrBadGateway = errors.New("upstream failed")
	// ErrTimeout: the upstream did not answer within the deadline (504).
	ErrTimeout = errors.New("upstream timed out")
)

// Config sets a Fetcher's bounds. Zero values take the defaults in Defaults.
type Config struct {
	Timeout      time.Duration // whole request, dial to last byte
	DialTimeout  time.Duration
	MaxInFlight  int           // per upstream host
	QueueWait    time.Duration // how long a request may wait for a free slot before ErrSaturated
	MaxTileBytes int64
	CacheBytes   int64         // 0: no cache
	DefaultTTL   time.Duration // freshness of a tile whose answer has no max-age
	RetryAfter   time.Duration // what a saturated answer tells the client
	Guard        *Guard        // nil: no address checks (tests only)
	UserAgent    string
}

// Defaults are the bounds used where a Config leaves a field zero.
var Defaults = Config{
	Timeout:      5 * time.Second,
	DialTimeout:  2 * time.Second,
	MaxInFlight:  64,
	QueueWait:    50 * time.Millisecond,
	MaxTileBytes: 4 << 20,
	DefaultTTL:   time.Minute,
	RetryAfter:   time.Second,
	UserAgent:    "tilegate",
}

func (c Config) withDefaults() Config {
	d := Defaults
	if c.Timeout > 0 {
		d.Timeout = c.Timeout
	}
	if c.DialTimeout > 0 {
		d.DialTimeout = c.DialTimeout
	}
	if c.MaxInFlight > 0 {
		d.MaxInFlight = c.MaxInFlight
	}
	if c.QueueWait > 0 {
		d.QueueWait = c.QueueWait
	}
	if c.MaxTileBytes > 0 {
		d.MaxTileBytes = c.MaxTileBytes
	}
	if c.DefaultTTL > 0 {
		d.DefaultTTL = c.DefaultTTL
	}
	if c.RetryAfter > 0 {
		d.RetryAfter = c.RetryAfter
	}
	if c.UserAgent != "" {
		d.UserAgent = c.UserAgent
	}
	d.CacheBytes = c.CacheBytes
	d.Guard = c.Guard
	return d
}

// Request is one tile wanted from an upstream.
type Request struct {
	// Source identifies the dataset's upstream setting (for example its id and version): cache
	// entries of an older setting are never served after the setting changes.
	Source   string
	Template Template
	Headers  map[string]string
	Z, X, Y  int
	// Accept lists the media types the dataset's format allows; anything else is ErrBadGateway.
	Accept []string
}

// Tile is a fetched tile.
type Tile struct {
	Data        []byte
	ContentType string
	// Encoding is the upstream's Content-Encoding (gzip for many vector tile servers), passed on.
	Encoding string
}

// Stats counts what a Fetcher did; tests and metrics read it.
type Stats struct {
	Requests    uint64 // requests sent upstream (revalidations included)
	Revalidated uint64 // 304 answers
	CacheHits   uint64
	Saturated   uint64
}

// Fetcher fetches tiles from upstreams. It is safe for concurrent use.
type Fetcher struct {
	cfg    Config
	client *http.Client
	flight singleflight.Group
	cache  *cache

	mu    sync.Mutex
	slots map[string]chan struct{} // per host
	stats Stats
}

// New returns a Fetcher with its own connection pool.
func New(cfg Config) *Fetcher {
	cfg = cfg.withDefaults()
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	if cfg.Guard != nil {
		dialer = cfg.Guard.dialer(dialer)
	}
	tr := &http.Transport{
		// No proxy from the environment: an HTTP(S)_PROXY would bypass the dial-time guard.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   cfg.MaxInFlight,
		MaxConnsPerHost:       cfg.MaxInFlight,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
	}
	return &Fetcher{
		cfg: cfg,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// An upstream redirect could point anywhere; tiles are not followed across redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		cache: newCache(cfg.CacheBytes),
		slots: map[string]chan struct{}{},
	}
}

// Close releases idle connections.
func (f *Fetcher) Close() { f.client.CloseIdleConnections() }

// RetryAfter is what a saturated answer should tell the client.
func (f *Fetcher) RetryAfter() time.Duration { return f.cfg.RetryAfter }

// Stats returns a snapshot of the counters.
func (f *Fetcher) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.CacheHits = f.cache.hitCount()
	return s
}

// Get returns the tile, from the cache when it is fresh, otherwise from the upstream, with
// concurrent requests for one tile sharing one upstream request.
func (f *Fetcher) Get(ctx context.Context, r Request) (Tile, error) {
	target := r.Template.URL(r.Z, r.X, r.Y)
	key := r.Source + "\x00" + target
	now := time.Now()
	ent, ok := f.cache.get(key)
	if ok && now.Before(ent.expires) {
		return ent.tile, nil
	}
	ch := f.flight.DoChan(key, func() (any, error) {
		// The fetch outlives the caller that started it (others may wait on it) but not its deadline.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.Timeout)
		defer cancel()
		return f.fetch(fctx, key, target, r, ent, ok)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return Tile{}, res.Err
		}
		return res.Val.(Tile), nil
	case <-ctx.Done():
		return Tile{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

func (f *Fetcher) fetch(ctx context.Context, key, target string, r Request, stale entry, haveStale bool) (Tile, error) {
	u, err := url.Parse(target)
	if err != nil {
		return Tile{}, fmt.Errorf("%w: bad URL", ErrBadGateway)
	}
	release, err := f.acquire(ctx, u.Host)
	if err != nil {
		return Tile{}, err
	}
	defer release()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Tile{}, fmt.Errorf("%w: bad URL", ErrBadGateway)
	}
	for name, value := range r.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	if haveStale && stale.etag != "" {
		req.Header.Set("If-None-Match", stale.etag)
	}
	f.count(func(s *Stats) { s.Requests++ })
	resp, err := f.client.Do(req)
	if err != nil {
		return Tile{}, classifyTransport(err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusNotModified && haveStale:
		f.count(func(s *Stats) { s.Revalidated++ })
		ttl, store := freshness(resp.Header, f.cfg.DefaultTTL)
		if store {
			f.cache.put(key, entry{tile: stale.tile, etag: stale.etag, expires: time.Now().Add(ttl)})
		}
		return stale.tile, nil
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusNoContent:
		return Tile{}, ErrNoTile
	case resp.StatusCode != http.StatusOK:
		// The upstream's error body is never passed on: it may hold anything.
		return Tile{}, fmt.Errorf("%w: status %d", ErrBadGateway, resp.StatusCode)
	}
	ctype := resp.Header.Get("Content-Type")
	if !acceptable(ctype, r.Accept) {
		return Tile{}, fmt.Errorf("%w: unexpected content type %q", ErrBadGateway, truncate(ctype, 60))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxTileBytes+1))
	if err != nil {
		return Tile{}, classifyTransport(err)
	}
	if int64(len(data)) > f.cfg.MaxTileBytes {
		return Tile{}, fmt.Errorf("%w: tile larger than %d bytes", ErrBadGateway, f.cfg.MaxTileBytes)
	}
	mt, _, _ := mime.ParseMediaType(ctype)
	t := Tile{Data: data, ContentType: mt, Encoding: contentEncoding(resp.Header)}
	if ttl, store := freshness(resp.Header, f.cfg.DefaultTTL); store {
		f.cache.put(key, entry{tile: t, etag: resp.Header.Get("ETag"), expires: time.Now().Add(ttl)})
	}
	return t, nil
}

// acquire takes one of the host's request slots, waiting at most QueueWait.
func (f *Fetcher) acquire(ctx context.Context, host string) (func(), error) {
	f.mu.Lock()
	slots, ok := f.slots[host]
	if !ok {
		slots = make(chan struct{}, f.cfg.MaxInFlight)
		f.slots[host] = slots
	}
	f.mu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	default:
	}
	t := time.NewTimer(f.cfg.QueueWait)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-t.C:
	case <-ctx.Done():
	}
	f.count(func(s *Stats) { s.Saturated++ })
	return nil, ErrSaturated
}

func (f *Fetcher) count(fn func(*Stats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}

func classifyTransport(err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if errors.Is(err, ErrAddressDenied) {
		return fmt.Errorf("%w: %w", ErrBadGateway, err)
	}
	return fmt.Errorf("%w: %w", ErrBadGateway, err)
}

func acceptable(ctype string, accept []string) bool {
	if len(accept) == 0 {
		return true
	}
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil {
		return false
	}
	for _, a := range accept {
		if strings.EqualFold(mt, a) {
			return true
		}
	}
	return false
}

func contentEncoding(h http.Header) string {
	// Go's transport undoes the gzip it asked for itself; an encoding left here was the upstream's
	// own choice for the tile bytes (common for vector tiles) and travels with them.
	switch e := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); e {
	case "gzip", "br", "deflate", "zstd":
		return e
	}
	return ""
}

// freshness reads Cache-Control: how long the tile may be reused and whether it may be stored.
// no-store and private are not stored (tilegate is a shared cache); no-cache is stored but
// revalidated on every use; max-age (s-maxage first) sets the lifetime; otherwise def.
func freshness(h http.Header, def time.Duration) (time.Duration, bool) {
	cc := strings.ToLower(h.Get("Cache-Control"))
	if cc == "" {
		return def, true
	}
	var maxAge, sMaxAge = -1, -1
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(d)
		name, val, _ := strings.Cut(d, "=")
		switch name {
		case "no-store", "private":
			return 0, false
		case "no-cache":
			return 0, true
		case "max-age":
			if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n >= 0 {
				maxAge = n
			}
		case "s-maxage":
			if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n >= 0 {
				sMaxAge = n
			}
		}
	}
	switch {
	case sMaxAge >= 0:
		return time.Duration(sMaxAge) * time.Second, true
	case maxAge >= 0:
		return time.Duration(maxAge) * time.Second, true
	}
	return def, true
}
