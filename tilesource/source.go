// Package tilesource is the one interface the tile path reads tiles through: a dataset's
// Source answers a tile by its coordinates, whether the bytes come from an MBTiles file, a
// PMTiles archive (on disk or in a bucket) or an upstream tile server. The tile path knows
// neither which kind it asks nor how that kind fails: failures are the sentinel errors below,
// which the server maps to HTTP statuses in one place.
package tilesource

import (
	"context"
	"errors"
)

// Tile is a tile's bytes as stored, and their content encoding ("gzip", or "" for none).
// Data is nil or empty when the source has no tile at those coordinates (answered 204, an
// empty tile for map clients). Data may be shared with other readers (a cache): never modify it.
type Tile struct {
	Data     []byte
	Encoding string
}

// Source is where one dataset's tiles come from, as of one version of its bytes.
//
// Implementations must be safe for concurrent use, must not do I/O when built (they are built
// when a dataset is loaded into the tile path's cache, which must stay cheap: open lazily on
// the first Tile), and must let reads in flight finish after Close.
type Source interface {
	// Tile returns the tile at XYZ z/x/y (coordinates valid for z: the tile path checks).
	Tile(ctx context.Context, z, x, y int) (Tile, error)
	// Version names the bytes the source serves: it changes whenever they may change (a new
	// upload), and is the ETag's stem. "" means no validator: no ETag, no 304.
	Version() string
	// Close says the dataset no longer uses this source: it may let its resources go.
	Close() error
}

// What a Tile may fail with, wrapped around the cause (errors.Is finds them).
var (
	// ErrNotFound: the source answers "no such tile" with a 404 rather than an empty tile
	// (an upstream whose dataset asks for that).
	ErrNotFound = errors.New("tilesource: no tile at these coordinates")
	// ErrDamaged: the bytes cannot be served and retrying will not help (a damaged file, a
	// tile over the size limit); the dataset's owner must upload again.
	ErrDamaged = errors.New("tilesource: the dataset's tiles are damaged")
	// ErrMissing: the bytes the source names are not in storage. The tile path looks at the
	// dataset again (it may have been replaced meanwhile); if it still names them, they are
	// lost, answered as damaged.
	ErrMissing = errors.New("tilesource: the dataset's tiles are missing from storage")
	// ErrUnavailable: the storage cannot be read right now (503; retry).
	ErrUnavailable = errors.New("tilesource: storage unavailable")
	// ErrBusy: the source refuses more work now (429 with Retry-After).
	ErrBusy = errors.New("tilesource: source busy")
	// ErrTimeout: the source did not answer in time (504).
	ErrTimeout = errors.New("tilesource: source timed out")
	// ErrSealed: a remote source's secrets (an upstream's headers, sealed with a signing key no
	// longer configured) do not open; it answers nothing until they are set again (502).
	ErrSealed = errors.New("tilesource: the source's sealed headers cannot be opened")
	// ErrBadGateway: a remote source answered wrongly or could not be reached (502).
	ErrBadGateway = errors.New("tilesource: remote source failed")
)
