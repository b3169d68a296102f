package server

import (
	"fmt"
	"strconv"

	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tilesource"
)

// tileSources opens datasets' tile sources for the tile path (tileaccess.Sources): an upstream
// dataset's through the upstream fetcher, a tile file's through the MBTiles pool behind the
// hot-tile cache. The tile path asks them for tiles without knowing their kind.
type tileSources struct{ s *Server }

func (t tileSources) Key(d store.Dataset) string {
	switch {
	case d.UpstreamURL != nil:
		// A change of the setting (or the dataset) changes Changed: a new source.
		return "upstream:" + d.ID.String() + "@" + strconv.FormatInt(d.Changed.UnixMicro(), 10)
	case d.TileFile != nil:
		return *d.TileFile
	}
	return ""
}

func (t tileSources) Open(d store.Dataset) (tilesource.Source, error) {
	s := t.s
	if d.UpstreamURL != nil {
		src, err := s.upstreamSource(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: %w", tilesource.ErrBadGateway, tilesource.ErrSealed, err)
		}
		return tilesource.Upstream(s.upstream, src, mediaTypes[d.Format]), nil
	}
	return s.hot.Wrap(s.tilestore.Source(*d.TileFile)), nil
}
