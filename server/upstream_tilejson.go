package server

import (
	"context"
	"fmt"

	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/upstream"
)

// tileJSONLoc is where a write's upstream TileJSON problems are reported.
var tileJSONLoc = []any{"body", "upstream", "tilejson"}

// upstreamMetadata reads the TileJSON that a write's upstream names (nil when it names none).
// It runs before the write's transaction: the fetch may take the upstream's whole timeout, and
// no row or SQLite writer waits on it. current is the dataset as stored (zero on create), whose
// headers a masked value keeps.
func (s *Server) upstreamMetadata(ctx context.Context, current store.Dataset, in nullable.Nullable[gen.Upstream]) (*upstream.Metadata, error) {
	if !in.IsSpecified() || in.IsNull() {
		return nil, nil
	}
	v := in.MustGet()
	if !v.Tilejson.IsSpecified() || v.Tilejson.IsNull() {
		return nil, nil
	}
	raw := v.Tilejson.MustGet()
	target, err := upstream.ParseTileJSONURL(raw)
	if err != nil {
		return nil, invalid(tileJSONLoc, raw, reasonOf(err))
	}
	headers := map[string]string{}
	if v.Headers != nil {
		previous, _ := s.upstreamHeaders(current)
		for name, value := range *v.Headers {
			if value == maskedValue {
				value = previous[name] // none: setUpstream refuses the write
			}
			headers[name] = value
		}
	}
	if upstream.ValidateHeaders(headers) != nil {
		return nil, nil // setUpstream refuses the write, naming the headers
	}
	m, err := s.upstream.TileJSON(ctx, target, headers)
	if err != nil {
		return nil, invalid(tileJSONLoc, raw, "the upstream's TileJSON could not be read: "+err.Error())
	}
	return &m, nil
}

// given tells which of the metadata fields a write sets itself (those the TileJSON leaves alone).
type given struct{ minzoom, maxzoom, bounds, center, attribution, vectorLayers bool }

// applyUpstreamMetadata fills d's fields that the write does not set from its upstream's TileJSON.
// Zooms above what a dataset may have are refused rather than cut: the upstream's range is the
// editor's to decide, in the request.
func applyUpstreamMetadata(d *store.Dataset, m *upstream.Metadata, g given) error {
	if m == nil {
		return nil
	}
	for _, z := range []struct {
		name  string
		v     *int
		given bool
		dst   *int
	}{{"minzoom", m.MinZoom, g.minzoom, &d.MinZoom}, {"maxzoom", m.MaxZoom, g.maxzoom, &d.MaxZoom}} {
		if z.v == nil || z.given {
			continue
		}
		if *z.v > maxDatasetZoom {
			return invalid(tileJSONLoc, nil, fmt.Sprintf("its %s %d is above %d, the highest a dataset has; set %s in the request", z.name, *z.v, maxDatasetZoom, z.name))
		}
		*z.dst = *z.v
	}
	if m.Bounds != nil && !g.bounds {
		d.Bounds = mustJSON(m.Bounds)
	}
	if m.Center != nil && !g.center {
		d.Center = mustJSON(m.Center)
	}
	if m.Attribution != nil && !g.attribution {
		if err := checkAttributionHint(tileJSONLoc, m.Attribution, " (in the upstream's TileJSON; set attribution in the request)"); err != nil {
			return err
		}
		a := *m.Attribution
		d.Attribution = &a
	}
	// A raster upstream's TileJSON has no vector_layers; a vector dataset takes them.
	if m.VectorLayers != nil && !g.vectorLayers && d.Kind == "vector" {
		d.VectorLayers = mustJSON(m.VectorLayers)
	}
	return nil
}

// maxDatasetZoom is the highest minzoom/maxzoom the API takes (openapi.yaml).
const maxDatasetZoom = 24
