package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/gen"
)

type requestKey struct{}

// requestFrom returns the HTTP request of handlers that need more of it than the generated
// request object carries (headers); nil elsewhere.
func requestFrom(ctx context.Context) *http.Request {
	r, _ := ctx.Value(requestKey{}).(*http.Request)
	return r
}

// strictHooks wraps the generated handlers: it hands UploadTiles, GetTileJSON and the token
// endpoints (API keys, client addresses) their request.
// (Tile cache entries are evicted by the store's changes, see Server.New.)
func (s *Server) strictHooks(f gen.StrictHandlerFunc, operationID string) gen.StrictHandlerFunc {
	switch operationID {
	case "UploadTiles", "GetTileJSON", "GetTileToken", "GetTileTokensBatch":
		return func(c echo.Context, req any) (any, error) {
			r := c.Request()
			if operationID == "UploadTiles" {
				extendUploadDeadline(c.Response().Writer)
			}
			c.SetRequest(r.WithContext(context.WithValue(r.Context(), requestKey{}, r)))
			return f(c, req)
		}
	}
	return f
}

// Close stops the cache invalidation listener and the last-used flusher, writes the pending
// last-used times and usage counts, removes replaced tile files still kept for in-flight reads, and closes the
// tile files. Call it after the HTTP server has shut down; it
// may be called more than once.
func (s *Server) Close() error {
	s.unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.access.Close(ctx)
	err = errors.Join(err, s.meter.Close(ctx))
	s.outages.close()
	s.cacheOutage.close()
	s.tilestore.Close()
	s.auditPruner.close()
	s.upstream.Close()
	s.closeOnce.Do(func() { err = errors.Join(err, s.tiles.Close()) })
	return err
}

// Listening reports whether the PostgreSQL cache invalidation listener is connected (always
// false on SQLite, which needs none, and before the first tile request has cached anything).
func (s *Server) Listening() bool { return s.access != nil && s.access.Listening() }

// FlushUsage writes the tile usage counted so far now, rather than at the next flush interval
// (tests, and operators' tools).
func (s *Server) FlushUsage(ctx context.Context) error { return s.meter.Flush(ctx) }

// PurgeUsage runs the usage retention job now; it returns the rows deleted.
func (s *Server) PurgeUsage(ctx context.Context) (int64, error) { return s.meter.Purge(ctx) }

// LiveReplicas is the number of replicas this one shares keys' rate limits with.
func (s *Server) LiveReplicas() int { return s.meter.Replicas() }
