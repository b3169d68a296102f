package tilestore

import (
	"github.com/tilegate/tilegate/tilesource"
)

// Source is the tile source of the published file name, and the one place where a file's kind
// and where it lives choose how it is read (no I/O until its first tile):
//
//   - an MBTiles file in the data directory: read in place (tilesource.MBTiles);
//   - an MBTiles file in a bucket: read from this replica's cached copy, fetched whole on the
//     first tile (SQLite reads only local files; cache.go).
//
// A kind read by ranges (a PMTiles archive) needs no local copy: in a bucket it reads the
// object itself (blobstore.Object.ReadAt); its case goes here, before the cache's, and
// Upload.Keep need not adopt its upload into the cache.
func (s *Store) Source(name string) tilesource.Source {
	if s.cache != nil {
		return &cachedSource{c: s.cache, name: name,
			mbtiles: tilesource.MBTiles(s.cfg.Pool, s.cache.path(name), Version(name))}
	}
	return tilesource.MBTiles(s.cfg.Pool, s.path(name), Version(name))
}
