// Package tilehttp is the tile path's HTTP side: it answers tile requests
// (/api/tiles/{dataset_id}/{z}/{x}/{y}.{format}) and forward-auth decisions for proxies, from a
// parsed tile URL (package tileurl), the one access decision (tileaccess), the usage meter and
// the dataset's tile source (tilesource), and maps what those return to statuses and headers in
// one place (errors.go). It knows no SQL and no storage kind; package server wires it into the
// router with the contract's validation and the management API.
package tilehttp

import (
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/problem"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/internal/usage"
)

// Handler answers tile requests. Its fields are set once, before it serves.
type Handler struct {
	Access *tileaccess.Access // cached keys and datasets, and the access decision
	Meter  *usage.Meter       // usage counts, rate limits and quotas
	Log    *slog.Logger
	Now    func() time.Time // the clock tokens' exp is read against
	// UpstreamRetryAfter is the Retry-After of a 429 for a saturated upstream.
	UpstreamRetryAfter func() time.Duration

	unservable unservableLog // sources that cannot serve, logged once each
}

// The X-Tilegate-Reason values (and metric reasons) the tile path adds to tileaccess's.
const (
	// ReasonNotFound counts a 404 refusal (no such dataset, not seen, the wrong format).
	ReasonNotFound = "not_found"
	// ReasonUpstreamBusy is a saturated upstream's X-Tilegate-Reason.
	ReasonUpstreamBusy = "upstream_busy"
	// ReasonAnonymousLimited is X-Tilegate-Reason of an anonymous token call over its address's rate.
	ReasonAnonymousLimited = "anonymous_rate_limited"
)

// DatasetNotFound is the detail of a 404 for a dataset the caller does not see.
const DatasetNotFound = "Dataset not found"

// detail answers an error with problem.Write, labelled for the request's Accept header.
func detail(c echo.Context, status int, msg any) error {
	return problem.Write(c.Response(), c.Request().Header.Get("Accept"), status, msg)
}
