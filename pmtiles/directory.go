package pmtiles

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"sort"
)

// firstID is the tile id of z/0/0: tile ids count the tiles of every lower zoom first
// (4^0 + 4^1 + … + 4^(z-1)).
func firstID(z uint8) uint64 { return ((uint64(1) << (2 * uint64(z))) - 1) / 3 }

// ZXYToID is the tile id of z/x/y (XYZ scheme): the zoom's first id plus the tile's position
// on the zoom's Hilbert curve. z must be at most 31 and x, y below 2^z.
func ZXYToID(z uint8, x, y uint32) uint64 {
	n := uint64(1) << z
	tx, ty := uint64(x), uint64(y)
	var d uint64
	for s := n / 2; s > 0; s /= 2 {
		var rx, ry uint64
		if tx&s != 0 {
			rx = 1
		}
		if ty&s != 0 {
			ry = 1
		}
		d += s * s * ((3 * rx) ^ ry)
		tx, ty = hilbertRotate(s, tx, ty, rx, ry)
	}
	return firstID(z) + d
}

// IDToZXY is ZXYToID's inverse; ok is false for an id beyond zoom 31.
func IDToZXY(id uint64) (z uint8, x, y uint32, ok bool) {
	for z = 0; z < 32; z++ {
		if id < firstID(z+1) {
			break
		}
	}
	if z == 32 {
		return 0, 0, 0, false
	}
	d := id - firstID(z)
	n := uint64(1) << z
	var tx, ty uint64
	for s := uint64(1); s < n; s *= 2 {
		rx := 1 & (d / 2)
		ry := 1 & (d ^ rx)
		tx, ty = hilbertRotate(s, tx, ty, rx, ry)
		tx += s * rx
		ty += s * ry
		d /= 4
	}
	return z, uint32(tx), uint32(ty), true
}

// hilbertRotate turns the quadrant of side s so the curve's sub-square starts where the
// curve enters it.
func hilbertRotate(s, x, y, rx, ry uint64) (uint64, uint64) {
	if ry == 0 {
		if rx == 1 {
			x = s - 1 - x
			y = s - 1 - y
		}
		x, y = y, x
	}
	return x, y
}

// Entry is one directory entry. RunLength 0: Offset and Length locate a leaf directory in the
// leaf section whose entries start at TileID; otherwise the tile at TileID (and the RunLength-1
// ids after it) is Length bytes at Offset in the tile data section.
type Entry struct {
	TileID    uint64
	Offset    uint64
	Length    uint32
	RunLength uint32
}

// entryBytes is an Entry's memory, for the cache's bound.
const entryBytes = 24

// Bounds of one directory, whatever the archive: what decoding one may cost.
const (
	// maxDirectoryEntries: go-pmtiles grows leaves until the root fits its 16 KiB, which for
	// the largest archives in use (a planet) gives leaves of well under 100,000 entries.
	maxDirectoryEntries = 1 << 20
	// maxDirectoryBytes bounds a directory's stored and decompressed bytes (an entry encodes in
	// at most 4 varints of up to 10 bytes, typically 4-8 bytes in all).
	maxDirectoryBytes = 32 << 20
	// maxDepth is the most directories on a path from the root to a tile (root included): the
	// specification's root and leaves, and leaves of leaves; deeper is refused, which also ends
	// any cycle of leaves.
	maxDepth = 3
)

// decompress undoes the internal compression of a directory or the metadata, producing at most
// limit bytes (more is ErrInvalid: a gzip bomb stops there).
func decompress(b []byte, c Compression, limit int64) ([]byte, error) {
	switch c {
	case CompressionNone:
		if int64(len(b)) > limit {
			return nil, invalidf("%d bytes; the limit is %d", len(b), limit)
		}
		return b, nil
	case CompressionGzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, invalidf("gzip: %v", err)
		}
		zr.Multistream(false)
		out, err := io.ReadAll(io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, invalidf("gzip: %v", err)
		}
		if int64(len(out)) > limit {
			return nil, invalidf("more than %d bytes once decompressed", limit)
		}
		return out, nil
	}
	return nil, invalidf("internal compression %s", c)
}

// decodeDirectory decodes a directory's (decompressed) bytes and checks its entries: at least
// one, tile ids strictly ascending with runs that do not overlap, lengths above zero, at most
// maxDirectoryEntries, nothing after the last offset.
func decodeDirectory(b []byte) ([]Entry, error) {
	r := bytes.NewReader(b)
	next := func(what string) (uint64, error) {
		v, err := binary.ReadUvarint(r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, invalidf("directory truncated in its %s", what)
			}
			return 0, invalidf("directory: bad varint in its %s", what)
		}
		return v, nil
	}
	n, err := next("entry count")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, invalidf("empty directory")
	}
	// Every entry takes at least 4 bytes: refuse a count the bytes cannot hold before allocating.
	if n > maxDirectoryEntries || n > uint64(r.Len())/4 {
		return nil, invalidf("directory of %d entries in %d bytes (at most %d entries)", n, len(b), maxDirectoryEntries)
	}
	entries := make([]Entry, n)
	var id uint64
	for i := range entries {
		d, err := next("tile ids")
		if err != nil {
			return nil, err
		}
		if i > 0 && d == 0 {
			return nil, invalidf("directory: tile ids not ascending at entry %d", i)
		}
		if d > math.MaxUint64-id {
			return nil, invalidf("directory: tile id overflows at entry %d", i)
		}
		id += d
		entries[i].TileID = id
	}
	for i := range entries {
		v, err := next("run lengths")
		if err != nil {
			return nil, err
		}
		if v > math.MaxUint32 {
			return nil, invalidf("directory: run length %d at entry %d", v, i)
		}
		entries[i].RunLength = uint32(v)
	}
	for i := range entries {
		v, err := next("lengths")
		if err != nil {
			return nil, err
		}
		if v == 0 || v > math.MaxUint32 {
			return nil, invalidf("directory: length %d at entry %d", v, i)
		}
		entries[i].Length = uint32(v)
	}
	for i := range entries {
		v, err := next("offsets")
		if err != nil {
			return nil, err
		}
		switch {
		case v == 0 && i == 0:
			return nil, invalidf("directory: the first entry's offset says \"after the previous entry\"")
		case v == 0:
			p := entries[i-1]
			entries[i].Offset = p.Offset + uint64(p.Length)
		default:
			entries[i].Offset = v - 1
		}
		if entries[i].Offset > math.MaxInt64 {
			return nil, invalidf("directory: offset %d at entry %d", entries[i].Offset, i)
		}
	}
	if r.Len() != 0 {
		return nil, invalidf("directory: %d bytes after its last entry", r.Len())
	}
	for i := 0; i+1 < len(entries); i++ {
		e := entries[i]
		if e.RunLength > 0 && entries[i+1].TileID-e.TileID < uint64(e.RunLength) {
			return nil, invalidf("directory: the run of entry %d overlaps entry %d", i, i+1)
		}
	}
	if last := entries[n-1]; last.RunLength > 0 && uint64(last.RunLength)-1 > math.MaxUint64-last.TileID {
		return nil, invalidf("directory: the last run overflows tile ids")
	}
	return entries, nil
}

// findEntry returns the entry that covers id: the last one at or below it, when it is a leaf or
// its run reaches id.
func findEntry(entries []Entry, id uint64) (Entry, bool) {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].TileID > id }) - 1
	if i < 0 {
		return Entry{}, false
	}
	e := entries[i]
	if e.RunLength == 0 || id-e.TileID < uint64(e.RunLength) {
		return e, true
	}
	return Entry{}, false
}

// encodeDirectory serialises entries (before internal compression): the test writer's half of
// decodeDirectory.
func encodeDirectory(entries []Entry) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(entries)))
	var last uint64
	for _, e := range entries {
		b = binary.AppendUvarint(b, e.TileID-last)
		last = e.TileID
	}
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(e.RunLength))
	}
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(e.Length))
	}
	for i, e := range entries {
		if i > 0 && e.Offset == entries[i-1].Offset+uint64(entries[i-1].Length) {
			b = binary.AppendUvarint(b, 0)
		} else {
			b = binary.AppendUvarint(b, e.Offset+1)
		}
	}
	return b
}
