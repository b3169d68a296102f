package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/problem"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilehttp"
)

// detail answers an error: every error body is built by problem.Write, labelled for the
// request's Accept header.
func detail(c echo.Context, status int, msg any) error {
	return problem.Write(c.Response(), c.Request().Header.Get("Accept"), status, msg)
}

// failure is an error answer a handler decided on (a 404, 403, 409 or 413): handlers return it
// as their error, and handleError answers it like every other error.
type failure struct {
	status     int
	detail     string
	retryAfter int // seconds, sent as Retry-After when set
}

func (f *failure) Error() string { return strconv.Itoa(f.status) + " " + f.detail }

func fail(status int, detail string) error { return &failure{status: status, detail: detail} }

// refused is a tile refusal (TileJSON's) returned as a handler's error: answered as a refused
// tile is, with its reason header.
type refused struct{ *tileaccess.Refusal }

func (r refused) Error() string { return strconv.Itoa(r.Status) + " " + r.Detail }

// handleError answers every error a handler or middleware returned: never a stack trace, and
// never a 500 for something the client did.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var vf *validationFailure
	var he *echo.HTTPError
	var f *failure
	var ref refused
	var lim limited
	switch {
	case errors.As(err, &f):
		if f.retryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		}
		_ = detail(c, f.status, f.detail)
	case errors.As(err, &ref):
		_ = tilehttp.WriteRefusal(c, ref.Refusal)
	case errors.As(err, &lim):
		_ = tilehttp.WriteLimited(c, lim.Verdict)
	case errors.As(err, &vf):
		_ = detail(c, http.StatusUnprocessableEntity, vf.fields)
	case errors.Is(err, store.ErrConflict):
		_ = detail(c, http.StatusConflict, "The change conflicts with the current state; retry")
	case errors.Is(err, tileaccess.ErrBusy):
		// Not an outage: the tile path's bound on concurrent loads (made-up keys or ids at
		// full speed, or a cold cache under load). Nothing to log per request.
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Retry-After", "1")
		_ = detail(c, http.StatusServiceUnavailable, "Too many tile requests are waiting for the database; retry shortly")
	case store.IsUnavailable(err):
		// Once per outage and error class, then counts: an outage fails every request.
		reason := store.UnavailableReason(err)
		s.outages.failure(reason, s.requestBegan(c), slog.String("reason", reason), slog.String("path", c.Path()), slog.String("err", err.Error()))
		c.Response().Header().Set("Cache-Control", "no-store")
		_ = detail(c, http.StatusServiceUnavailable, "The database is unavailable; retry shortly")
	case storageFault(err):
		// The data directory, not the database: no outage probe, and what it is in the answer.
		s.log.Error("storage failed", "path", c.Path(), "err", err)
		c.Response().Header().Set("Cache-Control", "no-store")
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			_ = detail(c, http.StatusInsufficientStorage, "The server's storage is full; the file was not stored")
			return
		}
		c.Response().Header().Set("Retry-After", "30")
		_ = detail(c, http.StatusServiceUnavailable, "The server's storage cannot be read or written right now; retry later")
	case errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil:
		// The client went away (during an outage, often by its own timeout): nobody reads
		// this answer, and it is no server error to log.
		_ = detail(c, http.StatusServiceUnavailable, "The request was cancelled")
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			_ = detail(c, http.StatusNotFound, "Not Found")
		case http.StatusMethodNotAllowed:
			_ = s.methodNotAllowed(c)
		case http.StatusRequestEntityTooLarge:
			_ = detail(c, http.StatusRequestEntityTooLarge, "Request body too large")
		case http.StatusBadRequest:
			// Binding failures: the validator lets nothing through that cannot bind, but if it
			// ever does, the client hears it in the contract's validation shape.
			_ = detail(c, http.StatusUnprocessableEntity, []fieldError{{
				Loc: []any{"body"}, Type: "value_error", Msg: "Value error, the request could not be decoded",
			}})
		default:
			s.log.Error("request failed", "path", c.Path(), "status", he.Code, "err", err)
			_ = detail(c, he.Code, http.StatusText(he.Code))
		}
	default:
		s.log.Error("request failed", "path", c.Path(), "err", err)
		_ = detail(c, http.StatusInternalServerError, "Internal Server Error")
	}
}

// storageFault reports whether err is a failure of the server's own files (the data directory):
// an errno the os package wrapped in an *fs.PathError, *os.LinkError or *os.SyscallError.
// Database errors are classified before (store.IsUnavailable), and network errors are not
// local I/O even though they carry an errno too.
func storageFault(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	var ne *net.OpError
	var errno syscall.Errno
	return (errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &se)) &&
		errors.As(err, &errno) && !errors.As(err, &ne)
}

// requestBegan is about when the request's database work began: its deadline less DBTimeout
// (tiles, which have no deadline, waited at most TileLoadWait).
func (s *Server) requestBegan(c echo.Context) time.Time {
	if dl, ok := c.Request().Context().Deadline(); ok {
		return dl.Add(-s.cfg.DBTimeout)
	}
	return time.Now().Add(-s.cfg.TileLoadWait)
}
