// Package tileurl owns the tile URL's grammar: /api/tiles/{dataset_id}/{z}/{x}/{y}.{format},
// read (Parse) and written (AppendTemplate) here and nowhere else, with one spelling per tile.
// It knows nothing of HTTP servers, routers or storage.
package tileurl

import (
	"errors"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// One spelling per tile. Every other spelling that names the same tile — 00 or +0 for 0, an
// upper-case or brace-wrapped dataset id, %2E for the dot, any percent-escape at all — would be a
// separate cache key at every CDN and browser in front of the service (and a way around a
// cache's purge), so it is answered 404 rather than redirected: a 404 costs one short answer and
// teaches clients the one URL the service writes; a redirect would be cached under the odd key
// too.

// Prefix starts every tile URL.
const Prefix = "/api/tiles/"

// MaxZoom is the highest zoom a tile URL may name.
const MaxZoom = 30

// Tile is a tile URL's dataset, coordinates and format.
type Tile struct {
	Dataset uuid.UUID
	Z, X, Y int
	Format  string
}

// Why a path names no tile.
var (
	// ErrSpelling: another spelling of a tile (or of no tile: a percent-escape, a
	// non-canonical number or id), answered 404 before anything else looks at it.
	ErrSpelling = errors.New("not a canonical tile URL")
	// ErrSyntax: a z, x, y or dataset id that is no number or id at all, which the
	// contract's validation answers (422, naming the parameter).
	ErrSyntax = errors.New("not a tile URL")
	// ErrZoom, ErrXY: well spelt, outside the tile grid (400).
	ErrZoom = errors.New("z must be 0 to 30")
	ErrXY   = errors.New("x and y must be 0 to 2^z-1")
)

// Parse parses a tile URL's path as sent (escaped: url.URL.EscapedPath).
func Parse(escaped string) (Tile, error) {
	rest, ok := strings.CutPrefix(escaped, Prefix)
	if !ok || strings.IndexByte(rest, '%') >= 0 {
		return Tile{}, ErrSpelling
	}
	var segs [4]string
	for i := range segs {
		seg, after, found := strings.Cut(rest, "/")
		if found == (i == len(segs)-1) {
			return Tile{}, ErrSpelling
		}
		segs[i], rest = seg, after
	}
	return ParseSegments(segs[0], segs[1], segs[2], segs[3])
}

// ParseSegments parses the four segments of a tile URL's path, still escaped.
func ParseSegments(datasetID, z, x, yFormat string) (Tile, error) {
	var t Tile
	y, format, ok := SplitName(yFormat)
	if !ok || !lowerAlnum(format) {
		return t, ErrSpelling
	}
	var err error
	if t.Dataset, err = uuid.Parse(datasetID); err != nil {
		return t, ErrSyntax
	}
	if !canonicalUUID(datasetID) {
		return t, ErrSpelling
	}
	t.Format = format
	if t.Z, err = coordinate(z, MaxZoom); err != nil {
		if errors.Is(err, errRange) {
			err = ErrZoom
		}
		return t, err
	}
	last := 1<<t.Z - 1
	if t.X, err = coordinate(x, last); err == nil {
		t.Y, err = coordinate(y, last)
	}
	if errors.Is(err, errRange) {
		err = ErrXY
	}
	return t, err
}

// SplitName splits the last segment, {y}.{format}, at its last dot (as the spec's router,
// gorilla/mux, does): both parts non-empty.
func SplitName(seg string) (y, format string, ok bool) {
	dot := strings.LastIndexByte(seg, '.')
	if dot <= 0 || dot == len(seg)-1 {
		return "", "", false
	}
	return seg[:dot], seg[dot+1:], true
}

var errRange = errors.New("coordinate out of range")

// coordinate parses a canonical decimal (0, or no leading zero; no '+'; '-' only before a
// non-zero number, which is then out of range) within 0..max. Another spelling of an integer
// (what strconv.ParseInt takes: a sign, leading zeros) is ErrSpelling; no integer at all,
// ErrSyntax.
func coordinate(s string, max int) (int, error) {
	digits := s
	if s != "" && (s[0] == '-' || s[0] == '+') {
		digits = s[1:]
	}
	if digits == "" {
		return 0, ErrSyntax
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, ErrSyntax
		}
	}
	if s[0] == '+' || digits[0] == '0' && len(s) > 1 {
		return 0, ErrSpelling
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max {
		return 0, errRange // well spelt but too large for an int, negative, or past max
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

// Segments splits /api/tiles/{dataset_id}/{z}/{x}/{y}.{format} into its four segments, still
// escaped, when they are non-empty and the first is not one of the token endpoints under
// /api/tiles/: the shape a router sends to the tile handler, before Parse reads it.
func Segments(p string) (segs [4]string, ok bool) {
	rest, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		return segs, false
	}
	for i := range segs {
		seg, after, found := strings.Cut(rest, "/")
		if seg == "" || found == (i == len(segs)-1) {
			return segs, false
		}
		segs[i], rest = seg, after
	}
	return segs, segs[0] != "token" && segs[0] != "tokens"
}

// IsTileFile reports whether p has a tile's shape: /api/tiles/ and four segments.
func IsTileFile(p string) bool {
	rest, ok := strings.CutPrefix(p, Prefix)
	return ok && strings.Count(rest, "/") == 3
}

// UnderTiles reports whether p is a dataset's path under /api/tiles/ (a tile, its TileJSON),
// not one of the token endpoints.
func UnderTiles(p string) bool {
	return strings.HasPrefix(p, Prefix) && !IsTokenEndpoint(p)
}

// IsTokenEndpoint reports whether p is one of the two token endpoints.
func IsTokenEndpoint(p string) bool {
	rest, ok := strings.CutPrefix(p, Prefix)
	return ok && (strings.HasPrefix(rest, "token/") || rest == "tokens/" || rest == "tokens")
}

// AppendTemplate appends base + the dataset's tile URL template, {z}/{x}/{y} left for the
// client: base/api/tiles/<id>/{z}/{x}/{y}.<format>, without a query.
func AppendTemplate(b []byte, base string, dataset uuid.UUID, format string) []byte {
	b = append(b, base...)
	b = append(b, Prefix...)
	b = append(b, dataset.String()...)
	b = append(b, "/{z}/{x}/{y}."...)
	return append(b, format...)
}

// Path is the canonical path of one tile.
func (t Tile) Path() string {
	b := make([]byte, 0, len(Prefix)+36+24+len(t.Format))
	b = append(b, Prefix...)
	b = append(b, t.Dataset.String()...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(t.Z), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(t.X), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(t.Y), 10)
	b = append(b, '.')
	return string(append(b, t.Format...))
}
