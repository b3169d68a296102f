package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// requestLog writes one structured line per request. It logs the route template, never the
// query string: tile URLs carry keys and signatures. Tiles served (2xx, 304) are logged at Debug:
// a map view loads dozens per second and an Info line each would drown everything else; refused
// and failed tiles stay at Info.
func (s *Server) requestLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		res := c.Response()
		level := slog.LevelInfo
		if c.Path() == tileRoute && res.Status < http.StatusBadRequest {
			level = slog.LevelDebug
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
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		)
		return nil
	}
}
