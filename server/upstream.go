package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/sealed"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
	"github.com/tilegate/tilegate/upstream"
)

// Upstream datasets: the tiles come from another tile server through s.upstream (package
// upstream), after the same access decision, limits and usage counting as a file's.

const (
	missingEmpty    = "empty"
	missingNotFound = "not_found"
	// maskedValue is what answers show for an upstream header's value; sent back, it keeps the
	// stored value.
	maskedValue = "***"
)

// setUpstream applies a create's or update's upstream field to d: validated (a 422 naming the
// field), header values sealed, masked values kept from what d had.
func (s *Server) setUpstream(d *store.Dataset, in nullable.Nullable[gen.Upstream]) error {
	if !in.IsSpecified() {
		return nil
	}
	v, err := in.Get()
	if err != nil { // null: a file dataset again
		d.UpstreamURL, d.UpstreamHeaders, d.UpstreamMissing, d.UpstreamTileJSON = nil, nil, nil, nil
		return nil
	}
	tpl, err := upstream.ParseTemplate(v.Url)
	if err != nil {
		return invalid([]any{"body", "upstream", "url"}, v.Url, reasonOf(err))
	}
	headers := map[string]string{}
	if v.Headers != nil {
		headers = *v.Headers
	}
	previous, _ := s.upstreamHeaders(*d) // a value sent back masked keeps the stored one
	for name, value := range headers {
		if value == maskedValue {
			old, ok := previous[name]
			if !ok {
				return invalid([]any{"body", "upstream", "headers", name}, value, "*** keeps a stored value, and this header has none")
			}
			headers[name] = old
		}
	}
	if err := upstream.ValidateHeaders(headers); err != nil {
		return invalid([]any{"body", "upstream", "headers"}, nil, reasonOf(err))
	}
	missing := missingEmpty
	if v.Missing != nil {
		missing = string(*v.Missing)
	}
	url := tpl.String()
	d.UpstreamURL, d.UpstreamMissing, d.UpstreamHeaders, d.UpstreamTileJSON = &url, &missing, nil, nil
	if tj, err := v.Tilejson.Get(); err == nil {
		d.UpstreamTileJSON = &tj
	}
	if len(headers) > 0 {
		raw, err := json.Marshal(headers)
		if err != nil {
			return err
		}
		sealedHeaders, err := s.box.Seal(raw, upstreamContext(*d))
		if err != nil {
			return err
		}
		d.UpstreamHeaders = &sealedHeaders
	}
	return nil
}

func reasonOf(err error) string {
	if ie, ok := upstream.IsInvalid(err); ok {
		return ie.Reason
	}
	return err.Error()
}

// upstreamContext binds a dataset's sealed headers to it: copied to another row, they do not open.
func upstreamContext(d store.Dataset) string { return "dataset:" + d.ID.String() + ":upstream_headers" }

// upstreamHeaders opens d's sealed headers.
func (s *Server) upstreamHeaders(d store.Dataset) (map[string]string, error) {
	if d.UpstreamHeaders == nil {
		return nil, nil
	}
	raw, err := s.box.Open(*d.UpstreamHeaders, upstreamContext(d))
	if err != nil {
		return nil, err
	}
	var h map[string]string
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, sealed.ErrCorrupt
	}
	return h, nil
}

// upstreamSource is the tile cache's view of d's upstream (tileaccess.Config.Upstream).
func (s *Server) upstreamSource(d store.Dataset) (*upstream.Source, error) {
	if d.UpstreamURL == nil {
		return nil, nil
	}
	tpl, err := upstream.ParseTemplate(*d.UpstreamURL)
	if err != nil {
		return nil, err
	}
	h, err := s.upstreamHeaders(d)
	if err != nil {
		return nil, err
	}
	src := &upstream.Source{
		Template: tpl, Headers: h, NotFound: d.UpstreamMissing != nil && *d.UpstreamMissing == missingNotFound,
		// A change of the setting (or the dataset) changes Changed: older cache entries never serve.
		Key: d.ID.String() + "@" + strconv.FormatInt(d.Changed.UnixMicro(), 10),
	}
	return src, nil
}

// upstreamOut is what answers show of d's upstream: header names, values masked.
func (s *Server) upstreamOut(d store.Dataset) nullable.Nullable[gen.Upstream] {
	if d.UpstreamURL == nil {
		return nullable.NewNullNullable[gen.Upstream]()
	}
	out := gen.Upstream{Url: *d.UpstreamURL}
	if d.UpstreamTileJSON != nil {
		out.Tilejson = nullable.NewNullableWithValue(*d.UpstreamTileJSON)
	}
	if d.UpstreamMissing != nil {
		m := gen.UpstreamMissing(*d.UpstreamMissing)
		out.Missing = &m
	}
	if h, err := s.upstreamHeaders(d); err == nil && len(h) > 0 {
		masked := upstream.Masked(h)
		out.Headers = &masked
	} else if err != nil {
		// Sealed with a key no longer configured: the names are gone with the values.
		masked := map[string]string{}
		out.Headers = &masked
	}
	return nullable.NewNullableWithValue(out)
}

// datasetOut is the API's form of d.
func (s *Server) datasetOut(d store.Dataset) gen.Dataset {
	out := datasetOut(d)
	out.Upstream = s.upstreamOut(d)
	return out
}

// mediaTypes are what an upstream may answer for each format.
var mediaTypes = map[string][]string{
	"pbf":  {"application/x-protobuf", "application/vnd.mapbox-vector-tile", "application/octet-stream"},
	"png":  {"image/png"},
	"jpg":  {"image/jpeg"},
	"webp": {"image/webp"},
}

// serveUpstream answers an admitted tile request of an upstream dataset.
func (s *Server) serveUpstream(c echo.Context, e *tileaccess.DatasetEntry, t tileRequest, u tileUse) error {
	if t.format != e.Dataset.Format {
		u.notServed()
		return tileError(c, http.StatusNotFound, "This dataset's tiles are ."+e.Dataset.Format)
	}
	src := e.Upstream
	if src == nil {
		u.notServed()
		s.files.logUnservable("upstream:"+e.Dataset.ID.String(), t.dataset, e.UpstreamErr)
		return tileError(c, http.StatusBadGateway, "This dataset's upstream headers cannot be opened (sealed with a signing key no longer configured); set them again")
	}
	tile, err := s.upstream.Get(c.Request().Context(), upstream.Request{
		Source: src.Key, Template: src.Template, Headers: src.Headers, Z: t.z, X: t.x, Y: t.y, Accept: mediaTypes[t.format],
	})
	switch {
	case errors.Is(err, upstream.ErrNoTile):
		if src.NotFound {
			u.notServed()
			return tileError(c, http.StatusNotFound, "The upstream has no tile at these coordinates")
		}
		u.served(0)
		return writeTile(c, e, t, nil)
	case errors.Is(err, upstream.ErrSaturated):
		u.notServed()
		h := c.Response().Header()
		h.Set("Retry-After", strconv.Itoa(int(s.upstream.RetryAfter().Seconds()+0.999)))
		h.Set("X-Tilegate-Reason", reasonUpstreamBusy)
		h.Set("Access-Control-Expose-Headers", "X-Tilegate-Reason, Retry-After")
		return tileError(c, http.StatusTooManyRequests, "The dataset's upstream is busy; retry after Retry-After seconds")
	case errors.Is(err, upstream.ErrTimeout):
		u.notServed()
		return tileError(c, http.StatusGatewayTimeout, "The dataset's upstream did not answer in time")
	case err != nil:
		u.notServed()
		s.log.Warn("upstream tile", "dataset", t.dataset, "err", err) // never the URL's headers
		return tileError(c, http.StatusBadGateway, "The dataset's upstream failed")
	}
	if c.Request().Method == http.MethodGet {
		u.served(len(tile.Data))
	} else {
		u.served(0)
	}
	if tile.Encoding != "" {
		c.Response().Header().Set("Content-Encoding", tile.Encoding)
	}
	return writeUpstreamTile(c, e, tile.Data)
}

const reasonUpstreamBusy = "upstream_busy"

// writeUpstreamTile answers an upstream's tile with the dataset's headers.
func writeUpstreamTile(c echo.Context, e *tileaccess.DatasetEntry, data []byte) error {
	w := c.Response()
	h := w.Header()
	if _, set := h["Cache-Control"]; !set { // a token tile's was set at admission
		h["Cache-Control"] = e.CacheControlValue
	}
	if len(data) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	h["Content-Type"] = e.ContentTypeValue
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(data)
	return err
}

// SecretKeys are the sealing keys of the signing keys (the same ids; sealed derives its own key
// from each): the first seals, all open, so rotating the signing keys keeps sealed values open as
// long as the previous key stays configured.
func SecretKeys(keys []tiletoken.Key) []sealed.Key {
	out := make([]sealed.Key, len(keys))
	for i, k := range keys {
		out[i] = sealed.Key{ID: k.ID, Secret: k.Secret}
	}
	return out
}
