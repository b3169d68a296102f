package pmtiles

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/tilegate/tilegate/mbtiles"
)

// Inspect checks an uploaded archive as hostile input, reading it whole but its tile data:
// the header (ParseHeader), every directory (decoded within bounds, leaves at most maxDepth
// deep, tile ids ascending across the archive and inside the header's zooms, leaves inside the
// leaf section, tiles inside the tile data and at most lim.MaxTileBytes) and the JSON metadata
// (bounded as MBTiles metadata is: lim.MaxMetadataBytes in all, lim.MaxMetadataRows keys,
// lim.MaxMetadataValueBytes a value, no NUL in any key or string). It returns what the archive
// says of itself in the shape mbtiles.Inspect gives, so uploads of either kind are handled alike.
//
// Problems with the content wrap ErrInvalid (a *FieldError when one value is to blame); I/O
// failures and an ended ctx are returned as they are.
func Inspect(ctx context.Context, src Storage, lim mbtiles.Limits) (*mbtiles.Metadata, Header, error) {
	lim = lim.WithDefaults()
	h, root, err := readRoot(ctx, src)
	if err != nil {
		return nil, h, err
	}
	w := walker{ctx: ctx, src: src, h: h, maxTile: lim.MaxTileBytes}
	if err := w.walk(root, firstID(h.MinZoom), firstID(h.MaxZoom+1), 1); err != nil {
		return nil, h, err
	}
	md, err := readMetadata(ctx, src, h, lim)
	if err != nil {
		return nil, h, err
	}
	return md, h, nil
}

type walker struct {
	ctx     context.Context
	src     Storage
	h       Header
	maxTile int64
	entries int
}

// walk checks the directory entries, whose tile ids must lie in [lo, hi), and the leaves they
// point to; depth is the directory's (the root is 1).
func (w *walker) walk(entries []Entry, lo, hi uint64, depth int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	for i, e := range entries {
		if w.entries++; w.entries%(1<<16) == 0 {
			if err := w.ctx.Err(); err != nil {
				return err
			}
		}
		end := hi // the first id after what e may cover
		if i+1 < len(entries) {
			end = min(end, entries[i+1].TileID)
		}
		if e.TileID < lo || e.TileID >= end {
			return w.outside(e.TileID, lo, hi)
		}
		if e.RunLength == 0 {
			if depth >= maxDepth {
				return invalidf("leaf directories nested deeper than %d levels", maxDepth)
			}
			leaf, err := readLeaf(w.ctx, w.src, w.h, e)
			if err != nil {
				return err
			}
			if err := w.walk(leaf, e.TileID, end, depth+1); err != nil {
				return err
			}
			continue
		}
		if uint64(e.RunLength) > end-e.TileID {
			return w.outside(e.TileID+uint64(e.RunLength)-1, lo, hi)
		}
		if e.Offset > w.h.DataLength || uint64(e.Length) > w.h.DataLength-e.Offset {
			return invalidf("a tile (offset %d, %d bytes) is outside the tile data (%d bytes)", e.Offset, e.Length, w.h.DataLength)
		}
		if int64(e.Length) > w.maxTile {
			z, x, y, _ := IDToZXY(e.TileID)
			return &FieldError{Loc: []any{"tiles"},
				Msg: fmt.Sprintf("the tile at z %d, x %d, y %d is %d bytes; the limit is %d", z, x, y, e.Length, w.maxTile)}
		}
	}
	return nil
}

// outside explains a tile id out of place: beyond the header's zooms, or out of order.
func (w *walker) outside(id, lo, hi uint64) error {
	if id < firstID(w.h.MinZoom) || id >= firstID(w.h.MaxZoom+1) {
		if z, _, _, ok := IDToZXY(id); ok {
			return invalidf("a tile at zoom %d, outside the header's zooms %d..%d", z, w.h.MinZoom, w.h.MaxZoom)
		}
		return invalidf("tile id %d beyond any zoom", id)
	}
	return invalidf("tile ids out of order across directories (tile id %d in a directory for %d..%d)", id, lo, hi-1)
}

// readMetadata reads, bounds and parses the JSON metadata into mbtiles.Metadata.
func readMetadata(ctx context.Context, src Storage, h Header, lim mbtiles.Limits) (*mbtiles.Metadata, error) {
	doc := map[string]json.RawMessage{}
	if h.MetadataLength > 0 {
		if h.MetadataLength > uint64(lim.MaxMetadataBytes) {
			return nil, &FieldError{Loc: []any{"metadata"},
				Msg: fmt.Sprintf("%d bytes; the limit is %d", h.MetadataLength, lim.MaxMetadataBytes)}
		}
		buf := make([]byte, h.MetadataLength)
		if err := readFull(ctx, src, buf, int64(h.MetadataOffset)); err != nil {
			return nil, err
		}
		raw, err := decompress(buf, h.InternalCompression, lim.MaxMetadataBytes)
		if err != nil {
			return nil, &FieldError{Loc: []any{"metadata"}, Msg: strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")}
		}
		// An empty document (some writers' "no metadata") is taken as {}.
		if len(bytes.TrimSpace(raw)) == 0 {
			raw = []byte("{}")
		}
		if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
			return nil, &FieldError{Loc: []any{"metadata"}, Msg: "not a JSON object"}
		}
	}
	if len(doc) > lim.MaxMetadataRows {
		return nil, &FieldError{Loc: []any{"metadata"}, Msg: fmt.Sprintf("more than %d keys", lim.MaxMetadataRows)}
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same archive always names the same place
	for _, k := range keys {
		if int64(len(k)) > lim.MaxMetadataValueBytes {
			return nil, &FieldError{Loc: []any{"metadata"},
				Msg: fmt.Sprintf("a key is %d bytes; the limit is %d", len(k), lim.MaxMetadataValueBytes)}
		}
		if strings.IndexByte(k, 0) >= 0 {
			return nil, &FieldError{Loc: []any{"metadata"}, Msg: "a key contains a NUL character"}
		}
		if v := doc[k]; int64(len(v)) > lim.MaxMetadataValueBytes {
			return nil, &FieldError{Loc: []any{"metadata", k},
				Msg: fmt.Sprintf("the value is %d bytes; the limit is %d", len(v), lim.MaxMetadataValueBytes)}
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(doc[k]))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, &FieldError{Loc: []any{"metadata", k}, Msg: "not JSON"}
		}
		if loc := mbtiles.FindNUL(v, []any{"metadata", k}); loc != nil {
			return nil, &FieldError{Loc: loc, Msg: "contains a NUL character"}
		}
	}

	md := &mbtiles.Metadata{
		Format:          h.TileType.Format(),
		Bounds:          h.Bounds(),
		Center:          h.Center(),
		VectorLayersLoc: []any{"metadata", "vector_layers"},
	}
	md.Kind = "raster"
	if md.Format == "pbf" {
		md.Kind = "vector"
	}
	minZ, maxZ := int(h.MinZoom), int(h.MaxZoom)
	md.MinZoom, md.MaxZoom = &minZ, &maxZ
	var err error
	if md.Name, err = metadataString(doc, "name"); err != nil {
		return nil, err
	}
	if md.Attribution, err = metadataString(doc, "attribution"); err != nil {
		return nil, err
	}
	if layers, ok := doc["vector_layers"]; ok && !bytes.Equal(bytes.TrimSpace(layers), []byte("null")) {
		if !bytes.HasPrefix(bytes.TrimSpace(layers), []byte("[")) {
			return nil, &FieldError{Loc: []any{"metadata", "vector_layers"}, Msg: "not an array"}
		}
		md.VectorLayers = layers
	}
	return md, nil
}

// metadataString is a string value of the metadata, "" when absent or null.
func metadataString(doc map[string]json.RawMessage, key string) (string, error) {
	raw, ok := doc[key]
	if !ok {
		return "", nil
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &FieldError{Loc: []any{"metadata", key}, Msg: "not a string"}
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}
