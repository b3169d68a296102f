// Package pmtiles reads PMTiles version 3 archives
// (https://github.com/protomaps/PMTiles/blob/main/spec/v3/spec.md): it validates an uploaded
// archive as hostile input (Inspect) and serves its tiles with range reads over a local file or
// an object in a bucket (Archive), keeping headers and directories in a bounded cache shared by
// all archives (Cache) so that a warm tile costs one read: its bytes.
//
// Why not github.com/protomaps/go-pmtiles: see README "PMTiles" (its build cost against this
// reader's, measured). This package is written from the specification alone.
package pmtiles

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrInvalid is wrapped by every error that blames the archive's content, so callers can tell a
// bad upload (a client error) from an I/O failure.
var ErrInvalid = errors.New("not a valid PMTiles archive")

// ErrDamaged is wrapped (around the ErrInvalid cause) by Archive reads that meet bytes breaking
// the format: the archive will not get better by retrying.
var ErrDamaged = errors.New("the PMTiles archive is damaged")

// ErrTileTooLarge: a tile above the size limit.
var ErrTileTooLarge = errors.New("tile larger than the limit")

// FieldError blames one value of the archive (a metadata key, part of it, a tile). Loc locates
// it as the MBTiles checks do, e.g. ["metadata", "attribution"] or ["tiles"]. It wraps ErrInvalid.
type FieldError struct {
	Loc []any
	Msg string
}

func (e *FieldError) Error() string {
	parts := make([]string, len(e.Loc))
	for i, l := range e.Loc {
		parts[i] = fmt.Sprint(l)
	}
	return fmt.Sprintf("%s: %s: %s", ErrInvalid, joinDots(parts), e.Msg)
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

func joinDots(parts []string) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// HeaderLen is the fixed size of a version 3 header.
const HeaderLen = 127

// rootReadLen is what the first read of an archive fetches: the specification keeps the header
// and the root directory within it, so one read gets both.
const rootReadLen = 16384

// Magic starts every PMTiles archive (followed by the version byte).
var Magic = []byte("PMTiles")

// Compression is a compression enum of the header (internal and tile compression).
type Compression uint8

// The compression values of the specification.
const (
	CompressionUnknown Compression = 0
	CompressionNone    Compression = 1
	CompressionGzip    Compression = 2
	CompressionBrotli  Compression = 3
	CompressionZstd    Compression = 4
)

func (c Compression) String() string {
	switch c {
	case CompressionUnknown:
		return "unknown"
	case CompressionNone:
		return "none"
	case CompressionGzip:
		return "gzip"
	case CompressionBrotli:
		return "brotli"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("%d", uint8(c))
}

// TileType is the header's tile type enum.
type TileType uint8

// The tile types of the specification.
const (
	TileTypeUnknown TileType = 0
	TileTypeMVT     TileType = 1
	TileTypePNG     TileType = 2
	TileTypeJPEG    TileType = 3
	TileTypeWebP    TileType = 4
	TileTypeAVIF    TileType = 5
)

// Format is the tile type as tilegate names formats (mbtiles.Metadata.Format), "" for none.
func (t TileType) Format() string {
	switch t {
	case TileTypeMVT:
		return "pbf"
	case TileTypePNG:
		return "png"
	case TileTypeJPEG:
		return "jpg"
	case TileTypeWebP:
		return "webp"
	case TileTypeAVIF:
		return "avif"
	}
	return ""
}

// Header is an archive's 127-byte header. Offsets are from the start of the archive, except
// entries' offsets, which are relative to their section.
type Header struct {
	RootOffset, RootLength         uint64
	MetadataOffset, MetadataLength uint64
	LeafOffset, LeafLength         uint64
	DataOffset, DataLength         uint64
	AddressedTiles                 uint64 // 0 when unknown
	TileEntries                    uint64 // 0 when unknown
	TileContents                   uint64 // 0 when unknown
	Clustered                      bool
	InternalCompression            Compression
	TileCompression                Compression
	TileType                       TileType
	MinZoom, MaxZoom               uint8
	// Bounds and center in degrees × 10,000,000.
	MinLonE7, MinLatE7, MaxLonE7, MaxLatE7 int32
	CenterZoom                             uint8
	CenterLonE7, CenterLatE7               int32
}

// maxZoom is the highest zoom an archive may hold: the MBTiles metadata rule (mbtiles'
// maxMetadataZoom), so both kinds of upload accept the same zooms.
const maxZoom = 24

// ParseHeader decodes and checks the header at the start of b against an archive of size
// bytes: magic and version, enums, zooms, bounds and center, and every section inside the
// archive (with no byte past the last one, which would be stored for nothing).
func ParseHeader(b []byte, size int64) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, invalidf("truncated header (%d bytes; a header is %d)", len(b), HeaderLen)
	}
	if !bytes.Equal(b[:7], Magic) {
		return h, invalidf("no PMTiles magic number")
	}
	if b[7] != 3 {
		return h, invalidf("PMTiles version %d; only version 3 is read", b[7])
	}
	le := binary.LittleEndian
	u64 := func(off int) uint64 { return le.Uint64(b[off:]) }
	i32 := func(off int) int32 { return int32(le.Uint32(b[off:])) }
	h = Header{
		RootOffset: u64(8), RootLength: u64(16),
		MetadataOffset: u64(24), MetadataLength: u64(32),
		LeafOffset: u64(40), LeafLength: u64(48),
		DataOffset: u64(56), DataLength: u64(64),
		AddressedTiles: u64(72), TileEntries: u64(80), TileContents: u64(88),
		Clustered:           b[96] == 1,
		InternalCompression: Compression(b[97]),
		TileCompression:     Compression(b[98]),
		TileType:            TileType(b[99]),
		MinZoom:             b[100], MaxZoom: b[101],
		MinLonE7: i32(102), MinLatE7: i32(106), MaxLonE7: i32(110), MaxLatE7: i32(114),
		CenterZoom:  b[118],
		CenterLonE7: i32(119), CenterLatE7: i32(123),
	}
	if b[96] > 1 {
		return h, invalidf("clustered flag %d (0 or 1)", b[96])
	}
	switch h.InternalCompression {
	case CompressionNone, CompressionGzip:
	case CompressionBrotli, CompressionZstd:
		return h, invalidf("directories and metadata are %s-compressed; tilegate reads only gzip or none (write the archive with gzip internal compression)", h.InternalCompression)
	default:
		return h, invalidf("internal compression %s (1 none, 2 gzip)", h.InternalCompression)
	}
	switch h.TileCompression {
	case CompressionUnknown, CompressionNone, CompressionGzip:
	case CompressionBrotli, CompressionZstd:
		return h, invalidf("tiles are %s-compressed; tilegate serves only gzip or uncompressed tiles", h.TileCompression)
	default:
		return h, invalidf("tile compression %s (0 unknown, 1 none, 2 gzip)", h.TileCompression)
	}
	if h.TileType.Format() == "" {
		return h, invalidf("tile type %d is not one tilegate serves (1 mvt, 2 png, 3 jpeg, 4 webp, 5 avif)", h.TileType)
	}
	if h.MaxZoom > maxZoom {
		return h, invalidf("max zoom %d out of range 0..%d", h.MaxZoom, maxZoom)
	}
	if h.MinZoom > h.MaxZoom {
		return h, invalidf("min zoom %d > max zoom %d", h.MinZoom, h.MaxZoom)
	}
	if b := h.Bounds(); b != nil && (!validLonLat(b[0], b[1]) || !validLonLat(b[2], b[3]) || b[1] > b[3]) {
		return h, invalidf("bounds %v out of range", *b)
	}
	if c := h.Center(); c != nil && (!validLonLat(c[0], c[1]) || c[2] > maxZoom) {
		return h, invalidf("center %v out of range", *c)
	}
	if err := h.checkSections(size); err != nil {
		return h, err
	}
	return h, nil
}

func validLonLat(lon, lat float64) bool {
	return lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90
}

// checkSections holds every section inside the archive, after the header, the root directory
// (header included) within the first 16,384 bytes as the specification requires, and no byte
// past the last section.
func (h Header) checkSections(size int64) error {
	if size < HeaderLen {
		return invalidf("truncated: %d bytes", size)
	}
	end := uint64(HeaderLen)
	for _, s := range []struct {
		name        string
		off, length uint64
	}{
		{"root directory", h.RootOffset, h.RootLength},
		{"metadata", h.MetadataOffset, h.MetadataLength},
		{"leaf directories", h.LeafOffset, h.LeafLength},
		{"tile data", h.DataOffset, h.DataLength},
	} {
		if s.length == 0 {
			continue
		}
		if s.off < HeaderLen || s.off > math.MaxInt64 || s.length > math.MaxInt64-s.off {
			return invalidf("the %s (offset %d, %d bytes) is not inside the archive", s.name, s.off, s.length)
		}
		if s.off+s.length > uint64(size) {
			return invalidf("truncated: the %s ends at byte %d but the archive has %d", s.name, s.off+s.length, size)
		}
		end = max(end, s.off+s.length)
	}
	if h.RootLength == 0 {
		return invalidf("empty root directory")
	}
	if h.DataLength == 0 {
		return invalidf("no tile data")
	}
	if h.RootOffset+h.RootLength > rootReadLen {
		return invalidf("the header and root directory end at byte %d; the specification keeps them within %d", h.RootOffset+h.RootLength, rootReadLen)
	}
	if end < uint64(size) {
		return invalidf("%d bytes follow the archive's last section (which ends at byte %d)", uint64(size)-end, end)
	}
	return nil
}

// Bounds are west, south, east, north in degrees, nil when the header leaves them all zero.
func (h Header) Bounds() *[4]float64 {
	if h.MinLonE7 == 0 && h.MinLatE7 == 0 && h.MaxLonE7 == 0 && h.MaxLatE7 == 0 {
		return nil
	}
	return &[4]float64{e7(h.MinLonE7), e7(h.MinLatE7), e7(h.MaxLonE7), e7(h.MaxLatE7)}
}

// Center is lon, lat, zoom, nil when the header leaves it all zero and has no bounds.
func (h Header) Center() *[3]float64 {
	if h.CenterLonE7 == 0 && h.CenterLatE7 == 0 && h.CenterZoom == 0 && h.Bounds() == nil {
		return nil
	}
	return &[3]float64{e7(h.CenterLonE7), e7(h.CenterLatE7), float64(h.CenterZoom)}
}

func e7(v int32) float64 { return float64(v) / 1e7 }

// encodeHeader writes h as its 127 bytes (the test writer's half of ParseHeader).
func encodeHeader(h Header) []byte {
	b := make([]byte, HeaderLen)
	copy(b, Magic)
	b[7] = 3
	le := binary.LittleEndian
	for i, v := range []uint64{h.RootOffset, h.RootLength, h.MetadataOffset, h.MetadataLength, h.LeafOffset,
		h.LeafLength, h.DataOffset, h.DataLength, h.AddressedTiles, h.TileEntries, h.TileContents} {
		le.PutUint64(b[8+8*i:], v)
	}
	if h.Clustered {
		b[96] = 1
	}
	b[97], b[98], b[99] = byte(h.InternalCompression), byte(h.TileCompression), byte(h.TileType)
	b[100], b[101] = h.MinZoom, h.MaxZoom
	for i, v := range []int32{h.MinLonE7, h.MinLatE7, h.MaxLonE7, h.MaxLatE7} {
		le.PutUint32(b[102+4*i:], uint32(v))
	}
	b[118] = h.CenterZoom
	le.PutUint32(b[119:], uint32(h.CenterLonE7))
	le.PutUint32(b[123:], uint32(h.CenterLatE7))
	return b
}
