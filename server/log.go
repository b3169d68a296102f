package server

import (
	"time"

	"github.com/labstack/echo/v4"
)

// requestLog writes one structured line per request. It logs the route template, never the
// query string: tile URLs carry keys and signatures.
func (s *Server) requestLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		res := c.Response()
		s.log.Info("request",
			"method", c.Request().Method,
			"route", c.Path(),
			"status", res.Status,
			"bytes", res.Size,
			"duration_ms", float64(time.Since(start).Microseconds())/1000,
		)
		return nil
	}
}
