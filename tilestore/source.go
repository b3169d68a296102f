package tilestore

import (
	"github.com/tilegate/tilegate/tilesource"
)

// Source is the tile source of the published file name, and the one place where a file's kind
// and where it lives choose how it is read (no I/O until its first tile):
//
//   - an MBTiles file in the data directory: read in place (tilesource.MBTiles);
//   - an MBTiles file in a bucket: read from this replica's cached copy, fetched whole on the
//     first tile (SQLite reads only local files; cache.go);
//   - a PMTiles archive, in the data directory or a bucket: read in place with range reads,
//     its header and directories kept in the shared Config.PMTiles cache
//     (tilesource.PMTilesFile, tilesource.PMTilesObject).
func (s *Store) Source(name string) tilesource.Source {
	if KindOf(name) == PMTiles {
		if s.cfg.Bucket != nil {
			return tilesource.PMTilesObject(s.cfg.PMTiles, s.cfg.Bucket, name, Version(name), s.cfg.MaxTileBytes)
		}
		return tilesource.PMTilesFile(s.cfg.PMTiles, s.path(name), Version(name), s.cfg.MaxTileBytes)
	}
	if s.cache != nil {
		return &cachedSource{c: s.cache, name: name,
			mbtiles: tilesource.MBTiles(s.cfg.Pool, s.cache.path(name), Version(name))}
	}
	return tilesource.MBTiles(s.cfg.Pool, s.path(name), Version(name))
}
