package server

import (
	"errors"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// The tile URL grammar, in one place: /api/tiles/{dataset_id}/{z}/{x}/{y}.{format}, and one
// spelling per tile. Every other spelling that names the same tile — 00 or +0 for 0, an
// upper-case or brace-wrapped dataset id, %2E for the dot, any percent-escape at all — would be a
// separate cache key at every CDN and browser in front of the service (and a way around a
// cache's purge), so it is answered 404 rather than redirected: a 404 costs one short answer and
// teaches clients the one URL the service writes; a redirect would be cached under the odd key
// too. This file depends on nothing of HTTP or echo (it is to move to its own package).

// tilePathPrefix starts every tile URL.
const tilePathPrefix = "/api/tiles/"

// maxZoom is the highest zoom a tile URL may name.
const maxZoom = 30

// tileRequest is a tile URL's dataset, coordinates and format.
type tileRequest struct {
	dataset uuid.UUID
	z, x, y int
	format  string
}

// Why a path names no tile.
var (
	// errTileSpelling: another spelling of a tile (or of no tile: a percent-escape, a
	// non-canonical number or id), answered 404 before anything else looks at it.
	errTileSpelling = errors.New("not a canonical tile URL")
	// errTileSyntax: a z, x, y or dataset id that is no number or id at all, which the
	// contract's validation answers (422, naming the parameter).
	errTileSyntax = errors.New("not a tile URL")
	// errTileZoom, errTileXY: well spelt, outside the tile grid (400).
	errTileZoom = errors.New("z must be 0 to 30")
	errTileXY   = errors.New("x and y must be 0 to 2^z-1")
)

// parseTilePath parses a tile URL's path as sent (escaped: url.URL.EscapedPath).
func parseTilePath(escaped string) (tileRequest, error) {
	rest, ok := strings.CutPrefix(escaped, tilePathPrefix)
	if !ok || strings.IndexByte(rest, '%') >= 0 {
		return tileRequest{}, errTileSpelling
	}
	var segs [4]string
	for i := range segs {
		seg, after, found := strings.Cut(rest, "/")
		if found == (i == len(segs)-1) {
			return tileRequest{}, errTileSpelling
		}
		segs[i], rest = seg, after
	}
	return parseTileSegments(segs[0], segs[1], segs[2], segs[3])
}

// parseTileSegments parses the four segments of a tile URL's path, still escaped.
func parseTileSegments(datasetID, z, x, yFormat string) (tileRequest, error) {
	var t tileRequest
	y, format, ok := splitTileName(yFormat)
	if !ok || !lowerAlnum(format) {
		return t, errTileSpelling
	}
	var err error
	if t.dataset, err = uuid.Parse(datasetID); err != nil {
		return t, errTileSyntax
	}
	if !canonicalUUID(datasetID) {
		return t, errTileSpelling
	}
	t.format = format
	if t.z, err = coordinate(z, maxZoom); err != nil {
		if errors.Is(err, errTileRange) {
			err = errTileZoom
		}
		return t, err
	}
	last := 1<<t.z - 1
	if t.x, err = coordinate(x, last); err == nil {
		t.y, err = coordinate(y, last)
	}
	if errors.Is(err, errTileRange) {
		err = errTileXY
	}
	return t, err
}

// splitTileName splits the last segment, {y}.{format}, at its last dot (as the spec's router,
// gorilla/mux, does): both parts non-empty.
func splitTileName(seg string) (y, format string, ok bool) {
	dot := strings.LastIndexByte(seg, '.')
	if dot <= 0 || dot == len(seg)-1 {
		return "", "", false
	}
	return seg[:dot], seg[dot+1:], true
}

var errTileRange = errors.New("coordinate out of range")

// coordinate parses a canonical decimal (0, or no leading zero; no '+'; '-' only before a
// non-zero number, which is then out of range) within 0..max. Another spelling of an integer
// (what strconv.ParseInt takes: a sign, leading zeros) is errTileSpelling; no integer at all,
// errTileSyntax.
func coordinate(s string, max int) (int, error) {
	digits := s
	if s != "" && (s[0] == '-' || s[0] == '+') {
		digits = s[1:]
	}
	if digits == "" {
		return 0, errTileSyntax
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, errTileSyntax
		}
	}
	if s[0] == '+' || digits[0] == '0' && len(s) > 1 {
		return 0, errTileSpelling
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max {
		return 0, errTileRange // well spelt but too large for an int, negative, or past max
	}
	return n, nil
}

// canonicalUUID: the 36-character lower-case hyphenated form uuid.UUID.String writes.
func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// lowerAlnum: one or more of a-z and 0-9 (every tile format: pbf, png, jpg, webp).
func lowerAlnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
