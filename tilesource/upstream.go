package tilesource

import (
	"context"
	"errors"
	"fmt"

	"github.com/tilegate/tilegate/upstream"
)

// Upstream returns the source of an upstream dataset's tiles: fetched through f (its
// coalescing, cache, per-host admission control and deadlines) from src, asking for the
// media types accept. No version: the upstream's tiles change without tilegate knowing.
func Upstream(f *upstream.Fetcher, src *upstream.Source, accept []string) Source {
	return &upstreamSource{f: f, src: src, accept: accept}
}

type upstreamSource struct {
	f      *upstream.Fetcher
	src    *upstream.Source
	accept []string
}

func (s *upstreamSource) Tile(ctx context.Context, z, x, y int) (Tile, error) {
	t, err := s.f.Get(ctx, upstream.Request{
		Source: s.src.Key, Template: s.src.Template, Headers: s.src.Headers, Z: z, X: x, Y: y, Accept: s.accept,
	})
	switch {
	case err == nil:
		return Tile{Data: t.Data, Encoding: t.Encoding}, nil
	case errors.Is(err, upstream.ErrNoTile):
		if s.src.NotFound {
			return Tile{}, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return Tile{}, nil // an empty tile
	case errors.Is(err, upstream.ErrSaturated):
		return Tile{}, fmt.Errorf("%w: %w", ErrBusy, err)
	case errors.Is(err, upstream.ErrTimeout):
		return Tile{}, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return Tile{}, fmt.Errorf("%w: %w", ErrBadGateway, err)
}

func (s *upstreamSource) Version() string { return "" }
func (s *upstreamSource) Close() error    { return nil }
