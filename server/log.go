package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// requestLog records every request in the metrics and writes one structured line for it. It
// logs the route template, never the query string: tile URLs carry keys and signatures. Tiles
// served (2xx, 304) are logged at Debug: a map view loads dozens per second and an Info line
// each would drown everything else. Refused tiles are logged by refusalLog (reason, dataset, key
// id, client, request id; one line per reason per second), their request line at Debug too;
// failed tiles (5xx) stay at Info.
func (s *Server) requestLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		upload := countUpload(c)
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		res := c.Response()
		elapsed := time.Since(start)
		s.metrics.observe(c, res.Status, res.Size, elapsed)
		if upload != nil {
			s.metrics.upload(upload, res.Status, elapsed)
		}
		level := slog.LevelInfo
		if isTileDecision(c.Path()) {
			// Served tiles, and refused ones: those have their own line, rate-limited.
			if reason, refused := tileRefusal(c, res.Status); refused {
				s.refusals.refused(c, s.access, reason, res.Status)
				level = slog.LevelDebug
			} else if res.Status < http.StatusBadRequest {
				level = slog.LevelDebug
			}
		}
		r := c.Request()
		if !s.log.Enabled(r.Context(), level) {
			return nil
		}
		s.log.LogAttrs(r.Context(), level, "request",
			slog.String("method", r.Method),
			slog.String("route", c.Path()),
			slog.Int("status", res.Status),
			slog.Int64("bytes", res.Size),
			slog.Duration("duration", elapsed),
			slog.String("request_id", res.Header().Get(RequestIDHeader)),
		)
		return nil
	}
}

// outageLog keeps an outage from flooding the log: the first failure of each kind is logged
// with its details, then only a count every `every` while failures continue, and one line when
// the database answers again (a probe, run only while an outage is open, checks every second).
// Kinds are error classes (store.UnavailableReason), so a new kind of failure is still seen.
type outageLog struct {
	log        *slog.Logger
	every      time.Duration
	probe      func(context.Context) error
	probeEvery time.Duration
	msgs       outageMessages

	mu   sync.Mutex
	open map[string]*outage // guarded by mu
	// recovered is when the last outage ended; failures of operations that began before it
	// were in flight during that outage and do not open a new one. Guarded by mu.
	recovered time.Time
	running   bool // a watcher goroutine runs; guarded by mu
	stop      chan struct{}
	stopped   sync.Once
	wg        sync.WaitGroup
}

// outageMessages are the log lines' msg: the first failure of a kind, the periodic count, and
// the recovery.
type outageMessages struct{ first, still, recovered string }

type outage struct {
	began                 time.Time
	total, sinceLastCount int
}

const outageProbeInterval = time.Second

func newOutageLog(log *slog.Logger, every time.Duration, probe func(context.Context) error, msgs outageMessages) *outageLog {
	return &outageLog{log: log, every: every, probe: probe, probeEvery: outageProbeInterval, msgs: msgs,
		open: map[string]*outage{}, stop: make(chan struct{})}
}

// failure records one failure of kind, of an operation that began at began; only the first of
// an outage is logged (with attrs).
func (o *outageLog) failure(kind string, began time.Time, attrs ...slog.Attr) {
	o.mu.Lock()
	if began.Before(o.recovered) {
		o.mu.Unlock()
		return
	}
	if e := o.open[kind]; e != nil {
		e.total++
		e.sinceLastCount++
		o.mu.Unlock()
		return
	}
	o.open[kind] = &outage{began: time.Now(), total: 1}
	if !o.running {
		select {
		case <-o.stop:
		default:
			o.running = true
			o.wg.Add(1)
			go o.watch()
		}
	}
	o.mu.Unlock()
	o.log.LogAttrs(context.Background(), slog.LevelWarn, o.msgs.first, attrs...)
}

// watch probes the database until it answers, logging counts meanwhile, then the recovery.
func (o *outageLog) watch() {
	defer o.wg.Done()
	probe := time.NewTicker(o.probeEvery)
	defer probe.Stop()
	lastCount := time.Now()
	for {
		select {
		case <-o.stop:
			return
		case <-probe.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.probeEvery)
		err := o.probe(ctx)
		cancel()
		if err == nil {
			o.recover()
			return
		}
		if time.Since(lastCount) >= o.every {
			lastCount = time.Now()
			o.count()
		}
	}
}

func (o *outageLog) count() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for kind, e := range o.open {
		if e.sinceLastCount == 0 {
			continue
		}
		o.log.LogAttrs(context.Background(), slog.LevelWarn, o.msgs.still, slog.String("kind", kind),
			slog.Int("failures", e.sinceLastCount), slog.Duration("since", time.Since(e.began).Round(time.Millisecond)))
		e.sinceLastCount = 0
	}
}

func (o *outageLog) recover() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for kind, e := range o.open {
		o.log.LogAttrs(context.Background(), slog.LevelInfo, o.msgs.recovered, slog.String("kind", kind),
			slog.Int("failures", e.total), slog.Duration("lasted", time.Since(e.began).Round(time.Millisecond)))
	}
	clear(o.open)
	o.running = false
	o.recovered = time.Now()
}

// close stops the watcher (at shutdown).
func (o *outageLog) close() {
	o.mu.Lock() // no watcher starts after this
	o.stopped.Do(func() { close(o.stop) })
	o.mu.Unlock()
	o.wg.Wait()
}
