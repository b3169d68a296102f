package pmtiles

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// TestArchive describes a PMTiles fixture for WriteTestArchive. Like mbtiles.TestFile it lives
// outside _test files so other packages' tests (the HTTP server's) build fixtures with the code
// this package is tested with. It is a writer for tests, not for production archives: it holds
// everything in memory.
type TestArchive struct {
	TileType TileType
	// Tiles are keyed by XYZ z,x,y, stored as given (already compressed when TileCompression
	// says so; Gzip compresses them here).
	Tiles           map[[3]int][]byte
	Gzip            bool        // gzip every tile and set TileCompression to gzip
	TileCompression Compression // when not Gzip: none (the zero value means none here)
	// InternalCompression of directories and metadata: none or gzip (the zero value: gzip).
	InternalCompression Compression
	// Unclustered stores tile data in reverse tile id order rather than by tile id.
	Unclustered bool
	// LeafSize > 0 puts at most LeafSize entries in each leaf directory, Levels levels of them
	// (Levels 0 means 1); 0 puts every entry in the root.
	LeafSize, Levels int
	// MinZoom and MaxZoom default to the tiles' (when both are zero).
	MinZoom, MaxZoom int
	Bounds           [4]float64 // west, south, east, north; zero: none
	Center           [3]float64 // lon, lat, zoom; zero with Bounds set: the middle at MinZoom
	// Metadata is the JSON metadata document; nil writes {}. Raw, if set, is written instead.
	Metadata map[string]any
	Raw      []byte
}

// WriteTestArchive writes the archive described by a to path (via a temporary file renamed into
// place).
func WriteTestArchive(path string, a TestArchive) error {
	b, err := BuildTestArchive(a)
	if err != nil {
		return fmt.Errorf("write test archive %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pmtiles-test-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// BuildTestArchive returns the bytes of the archive described by a, laid out as the
// specification recommends: header, root, metadata, leaves, tile data. Identical tiles share
// their bytes, and consecutive identical tiles one run-length entry.
func BuildTestArchive(a TestArchive) ([]byte, error) {
	parts, err := buildTestParts(a)
	if err != nil {
		return nil, err
	}
	return parts.assemble(), nil
}

// testParts are an archive's sections before assembly, for tests that break one of them.
type testParts struct {
	h                        Header
	root, meta, leaves, data []byte
}

// assemble lays out the sections after the header, setting the header's offsets and lengths.
func (p testParts) assemble() []byte {
	h := p.h
	h.RootOffset, h.RootLength = HeaderLen, uint64(len(p.root))
	h.MetadataOffset, h.MetadataLength = h.RootOffset+h.RootLength, uint64(len(p.meta))
	h.LeafOffset, h.LeafLength = h.MetadataOffset+h.MetadataLength, uint64(len(p.leaves))
	h.DataOffset, h.DataLength = h.LeafOffset+h.LeafLength, uint64(len(p.data))
	return slices.Concat(encodeHeader(h), p.root, p.meta, p.leaves, p.data)
}

func buildTestParts(a TestArchive) (testParts, error) {
	var p testParts
	if a.InternalCompression == CompressionUnknown {
		a.InternalCompression = CompressionGzip
	}
	if a.TileCompression == CompressionUnknown {
		a.TileCompression = CompressionNone
	}
	if a.Gzip {
		a.TileCompression = CompressionGzip
	}
	compress := func(b []byte) ([]byte, error) {
		if a.InternalCompression == CompressionGzip {
			return gzipBytes(b)
		}
		return b, nil
	}

	type tile struct {
		id   uint64
		data []byte
	}
	var tiles []tile
	minZ, maxZ := 255, 0
	for zxy, data := range a.Tiles {
		if a.Gzip {
			var err error
			if data, err = gzipBytes(data); err != nil {
				return p, err
			}
		}
		tiles = append(tiles, tile{ZXYToID(uint8(zxy[0]), uint32(zxy[1]), uint32(zxy[2])), data})
		minZ, maxZ = min(minZ, zxy[0]), max(maxZ, zxy[0])
	}
	if len(tiles) == 0 {
		return p, fmt.Errorf("no tiles")
	}
	slices.SortFunc(tiles, func(x, y tile) int {
		switch {
		case x.id < y.id:
			return -1
		case x.id > y.id:
			return 1
		}
		return 0
	})
	if a.MinZoom == 0 && a.MaxZoom == 0 {
		a.MinZoom, a.MaxZoom = minZ, maxZ
	}

	// Tile data: each distinct content once, in tile id order (clustered) or reversed.
	order := tiles
	if a.Unclustered {
		order = slices.Clone(tiles)
		slices.Reverse(order)
	}
	offsets := map[string]uint64{}
	for _, t := range order {
		if _, ok := offsets[string(t.data)]; !ok {
			offsets[string(t.data)] = uint64(len(p.data))
			p.data = append(p.data, t.data...)
		}
	}
	var entries []Entry
	for _, t := range tiles {
		off := offsets[string(t.data)]
		if n := len(entries); n > 0 {
			last := &entries[n-1]
			if last.Offset == off && last.TileID+uint64(last.RunLength) == t.id {
				last.RunLength++
				continue
			}
		}
		entries = append(entries, Entry{TileID: t.id, Offset: off, Length: uint32(len(t.data)), RunLength: 1})
	}

	dirs := entries
	if a.LeafSize > 0 {
		levels := max(a.Levels, 1)
		for range levels {
			var parents []Entry
			for chunk := range slices.Chunk(dirs, a.LeafSize) {
				enc, err := compress(encodeDirectory(chunk))
				if err != nil {
					return p, err
				}
				parents = append(parents, Entry{TileID: chunk[0].TileID, Offset: uint64(len(p.leaves)), Length: uint32(len(enc))})
				p.leaves = append(p.leaves, enc...)
			}
			dirs = parents
		}
	}
	var err error
	if p.root, err = compress(encodeDirectory(dirs)); err != nil {
		return p, err
	}

	meta := a.Raw
	if meta == nil {
		doc := a.Metadata
		if doc == nil {
			doc = map[string]any{}
		}
		if meta, err = json.Marshal(doc); err != nil {
			return p, err
		}
	}
	if p.meta, err = compress(meta); err != nil {
		return p, err
	}

	var addressed uint64
	for _, e := range entries {
		addressed += uint64(e.RunLength)
	}
	p.h = Header{
		AddressedTiles: addressed, TileEntries: uint64(len(entries)), TileContents: uint64(len(offsets)),
		Clustered:           !a.Unclustered,
		InternalCompression: a.InternalCompression, TileCompression: a.TileCompression, TileType: a.TileType,
		MinZoom: uint8(a.MinZoom), MaxZoom: uint8(a.MaxZoom),
	}
	if a.Bounds != [4]float64{} {
		b := a.Bounds
		p.h.MinLonE7, p.h.MinLatE7, p.h.MaxLonE7, p.h.MaxLatE7 = toE7(b[0]), toE7(b[1]), toE7(b[2]), toE7(b[3])
		if a.Center == [3]float64{} {
			a.Center = [3]float64{(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, float64(a.MinZoom)}
		}
	}
	p.h.CenterLonE7, p.h.CenterLatE7, p.h.CenterZoom = toE7(a.Center[0]), toE7(a.Center[1]), uint8(a.Center[2])
	return p, nil
}

func toE7(v float64) int32 { return int32(math.Round(v * 1e7)) }

func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
