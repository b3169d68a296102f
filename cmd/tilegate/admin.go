package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/tilegate/tilegate/metrics"
	"github.com/tilegate/tilegate/server"
)

// adminHandler serves the admin listener: /metrics and the runtime profiles under
// /debug/pprof/. It is never part of the public handler (server.Handler, an echo router that
// does not consult http.DefaultServeMux, where importing net/http/pprof also registers them).
// /debug/pprof/cmdline is left out: the command line may carry a DATABASE_URL with its password.
func adminHandler(m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.Handle("/debug/pprof/cmdline", http.NotFoundHandler())
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return server.NoSniff(mux)
}

// adminServer is the running admin listener; a nil one (disabled) does nothing.
type adminServer struct {
	srv  *http.Server
	done chan struct{}
}

// startAdmin listens on addr ("" disables). A failure to listen is logged, not fatal: metrics
// and profiles are for watching the service, and must not keep it from serving tiles (two
// replicas on one host with the default address, say).
func startAdmin(addr string, m *metrics.Metrics) *adminServer {
	if addr == "" {
		slog.Info("admin listener disabled (TILEGATE_ADMIN_ADDR is empty)")
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		slog.Error("admin listener not started: /metrics and /debug/pprof/ are unavailable", "addr", addr, "err", err)
		return nil
	}
	a := &adminServer{
		srv: &http.Server{
			Handler:           adminHandler(m),
			ReadHeaderTimeout: 10 * time.Second,
			// CPU profiles and traces take ?seconds= (30 by default) to answer.
			WriteTimeout: 5 * time.Minute,
			IdleTimeout:  2 * time.Minute,
		},
		done: make(chan struct{}),
	}
	slog.Info("admin listening", "addr", ln.Addr().String(), "metrics", "http://"+ln.Addr().String()+"/metrics")
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("admin listener failed", "err", err)
		}
	}()
	return a
}

// close stops the admin listener; a profile being taken is cut short.
func (a *adminServer) close() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close()
	}
	<-a.done
}
