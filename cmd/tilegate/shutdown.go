package main

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"
)

// inFlight tracks the requests being served, so that a shutdown that runs out of time can say
// what it cut.
type inFlight struct {
	mu    sync.Mutex
	began map[*http.Request]time.Time
}

func newInFlight() *inFlight { return &inFlight{began: map[*http.Request]time.Time{}} }

func (f *inFlight) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.began[r] = time.Now()
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.began, r)
			f.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// list names the requests in flight, longest-running first: method, path (never the query,
// which may carry a key or token) and how long each has run.
func (f *inFlight) list() []string {
	f.mu.Lock()
	type req struct {
		name  string
		began time.Time
	}
	reqs := make([]req, 0, len(f.began))
	for r, t := range f.began {
		reqs = append(reqs, req{r.Method + " " + r.URL.Path, t})
	}
	f.mu.Unlock()
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].began.Before(reqs[j].began) })
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.name + " (running " + time.Since(r.began).Round(time.Millisecond).String() + ")"
	}
	return out
}

// shutdown stops srv: requests in flight may finish within timeout; what is still running
// then is cut (its connection closed, its context cancelled) and named in a WARN line. Running
// out of time is an orderly stop, not a failure: orchestrators count a non-zero exit as a crash.
func shutdown(srv *http.Server, flight *inFlight, timeout time.Duration) {
	slog.Info("shutting down: finishing in-flight requests", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err == nil {
		return
	}
	cut := flight.list()
	_ = srv.Close()
	slog.Warn("shutdown timeout reached: cut the requests still in flight", "timeout", timeout, "cut", len(cut), "requests", cut)
}
