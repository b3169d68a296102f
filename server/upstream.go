package server

import (
	"encoding/json"
	"strconv"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
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
