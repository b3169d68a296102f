package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/tilehttp"
)

// RequestIDHeader carries every answer's request id, which its log lines carry too: a user
// who quotes it lets an operator find what happened to that request.
const RequestIDHeader = "X-Request-Id"

// requestIDs makes ids unique across replicas and restarts without a random read per request:
// a random prefix drawn at start, then a counter.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	var buf [32]byte
	out := append(buf[:0], g.prefix...)
	return string(strconv.AppendUint(out, g.n.Add(1), 36))
}

// requestID gives every request an id, set on the answer as X-Request-Id before anything else
// runs (so refusals, 404s and errors carry it too). An id sent by a trusted proxy
// (TILEGATE_TRUSTED_PROXIES) is kept, so the proxy's log and tilegate's share it; one sent by
// anybody else is replaced: a client could otherwise write what it likes into the log.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		id := r.Header.Get(RequestIDHeader)
		if id == "" || !validRequestID(id) || !s.access.TrustedPeer(r.RemoteAddr) {
			id = s.ids.next()
		}
		c.Response().Header()[RequestIDHeader] = []string{id}
		return next(c)
	}
}

// validRequestID accepts what proxies send (UUIDs, hex, nginx's $request_id, AWS's
// Root=1-…): at most 128 of letters, digits and - _ . : = ; nothing that could break a log line.
func validRequestID(id string) bool {
	if len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case b == '-' || b == '_' || b == '.' || b == ':' || b == '=':
		default:
			return false
		}
	}
	return true
}

// refusalLog writes refused tile requests at Info, at most one line per reason per second: a
// flood of bad keys or expired tokens is thousands a second, and the log must stay readable.
// Each line says how many refusals of its reason were left out since the previous one.
type refusalLog struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	reasons map[string]*refusalWindow // guarded by mu
}

type refusalWindow struct {
	last       time.Time
	suppressed int
}

func newRefusalLog(log *slog.Logger, every time.Duration) *refusalLog {
	return &refusalLog{log: log, every: every, reasons: map[string]*refusalWindow{}}
}

// refused logs (or counts) one refused tile request.
func (l *refusalLog) refused(c echo.Context, access *tileaccess.Access, reason string, status int) {
	now := time.Now()
	l.mu.Lock()
	w := l.reasons[reason]
	if w == nil {
		w = &refusalWindow{}
		l.reasons[reason] = w
	}
	if !w.last.IsZero() && now.Sub(w.last) < l.every {
		w.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := w.suppressed
	w.last, w.suppressed = now, 0
	l.mu.Unlock()

	r := c.Request()
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("reason", reason), slog.Int("status", status))
	dataset, key, ok := tilehttp.Refused(c)
	if !ok {
		if id, err := uuid.Parse(c.Param("dataset_id")); err == nil {
			dataset = id
		}
	}
	if dataset != uuid.Nil {
		attrs = append(attrs, slog.String("dataset_id", dataset.String()))
	}
	if key != uuid.Nil {
		attrs = append(attrs, slog.String("key_id", key.String()))
	}
	if ip := access.ClientIP(tileaccess.Client{Header: r.Header, RemoteAddr: r.RemoteAddr}); ip.IsValid() {
		attrs = append(attrs, slog.String("client", ip.String()))
	}
	attrs = append(attrs, slog.String("request_id", c.Response().Header().Get(RequestIDHeader)))
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	l.log.LogAttrs(context.Background(), slog.LevelInfo, "tile refused", attrs...)
}

// isTileDecision: the routes whose refusals are tile refusals (tiles, and forward auth's answer
// for a tile).
func isTileDecision(path string) bool { return path == tileRoute || path == tilehttp.AuthRoute }
