package tilehttp

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/tilesource"
	"github.com/tilegate/tilegate/tileurl"
)

// sourceFailed answers a tile request whose tile source failed: the one place where tile
// sources' errors (tilesource's sentinels, whatever the source's kind) become statuses.
func (h *Handler) sourceFailed(c echo.Context, e *tileaccess.DatasetEntry, t tileurl.Tile, err error) error {
	switch {
	case errors.Is(err, tilesource.ErrDamaged), errors.Is(err, tilesource.ErrMissing):
		// Bytes that will not get better by retrying (ErrMissing reaches here only once the
		// dataset, looked at again, still names them): 410, logged once per source.
		h.unservable.log(h.Log, e.SourceKey, t.Dataset, err)
		return WriteError(c, http.StatusGone, unservableDetail)
	case errors.Is(err, tilesource.ErrNotFound):
		return WriteError(c, http.StatusNotFound, "The dataset's source has no tile at these coordinates")
	case errors.Is(err, tilesource.ErrBusy):
		// Only upstreams refuse work today: their admission control's Retry-After.
		hdr := c.Response().Header()
		hdr.Set("Retry-After", strconv.Itoa(int(h.UpstreamRetryAfter().Seconds()+0.999)))
		hdr.Set("X-Tilegate-Reason", ReasonUpstreamBusy)
		hdr.Set("Access-Control-Expose-Headers", "X-Tilegate-Reason, Retry-After")
		return WriteError(c, http.StatusTooManyRequests, "The dataset's upstream is busy; retry after Retry-After seconds")
	case errors.Is(err, tilesource.ErrTimeout):
		return WriteError(c, http.StatusGatewayTimeout, "The dataset's tile source did not answer in time")
	case errors.Is(err, tilesource.ErrSealed):
		h.unservable.log(h.Log, e.SourceKey, t.Dataset, err)
		return WriteError(c, http.StatusBadGateway, "This dataset's upstream headers cannot be opened (sealed with a signing key no longer configured); set them again")
	case errors.Is(err, tilesource.ErrBadGateway):
		h.Log.Warn("upstream tile", "dataset", t.Dataset, "err", err) // never the URL's headers
		return WriteError(c, http.StatusBadGateway, "The dataset's upstream failed")
	}
	// ErrUnavailable, or the request's own end.
	if c.Request().Context().Err() == nil { // (else the client has gone)
		h.Log.Error("read tile", "dataset", t.Dataset, "err", err)
	}
	// Storage that cannot be read now (a bucket outage, a file still being fetched): the
	// client may retry soon.
	c.Response().Header().Set("Retry-After", "5")
	return WriteError(c, http.StatusServiceUnavailable, "The tiles cannot be read right now; retry shortly")
}

// unservableLog logs that a source cannot serve (damaged, missing, a tile over the size limit,
// headers that do not open) once per source and process, however many requests find out.
type unservableLog struct{ logged sync.Map } // source key → struct{}

func (u *unservableLog) log(l *slog.Logger, key string, dataset any, err error) {
	if _, seen := u.logged.LoadOrStore(key, struct{}{}); seen {
		return
	}
	l.Error("tile file cannot be served; upload it again", "dataset", dataset, "file", key, "err", err)
}

const unservableDetail = "This tile cannot be served: the dataset's file is damaged or missing, or the tile is over the size limit; the dataset's owner must upload the file again"

// refusedTile is what the tile path knows of a refusal beyond the answer: the dataset and the
// API key it named (the key's id; never the key's token or a tile token's signature).
type refusedTile struct {
	dataset, key uuid.UUID
}

const refusedTileKey = "tilegate.refused"

// noteRefusal records, for the refusal log, the dataset and key of a refused tile request.
func noteRefusal(c echo.Context, dataset, key uuid.UUID) {
	c.Set(refusedTileKey, refusedTile{dataset: dataset, key: key})
}

// Refused returns what the tile path noted of a refused request it answered (for the refusal
// log): the dataset and the API key's id, ok false when it noted nothing.
func Refused(c echo.Context) (dataset, key uuid.UUID, ok bool) {
	rt, ok := c.Get(refusedTileKey).(refusedTile)
	return rt.dataset, rt.key, ok
}
