package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/testenv"
	"github.com/tilegate/tilegate/pmtiles"
	"github.com/tilegate/tilegate/server"
)

// tlVectorArchive is tlVectorFile as a PMTiles archive: the same tiles (gzipped) and metadata.
func tlVectorArchive() pmtiles.TestArchive {
	return pmtiles.TestArchive{
		TileType: pmtiles.TileTypeMVT, Tiles: tlVectorTiles, Gzip: true, MinZoom: 0, MaxZoom: 5,
		Bounds: [4]float64{-10, -20, 30, 40},
		Metadata: map[string]any{"name": "roads", "attribution": "© tile tests",
			"vector_layers": []any{map[string]any{"id": "roads", "fields": map[string]any{"name": "String"}, "minzoom": 0, "maxzoom": 5}}},
	}
}

// tlArchive returns a PMTiles fixture's bytes.
func tlArchive(t testing.TB, a pmtiles.TestArchive) []byte {
	t.Helper()
	b, err := pmtiles.BuildTestArchive(a)
	must(t, err)
	return b
}

// tlFileOf is the data directory's one file of the dataset.
func (e *tlEnv) tlFileOf(t *testing.T, id uuid.UUID) string {
	t.Helper()
	var found []string
	for _, n := range e.tlFiles(t) {
		if strings.HasPrefix(n, id.String()+"-") {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		t.Fatalf("data directory holds %v for %s, want one file", found, id)
	}
	return found[0]
}

// A PMTiles archive is accepted where an MBTiles file is, told by its content; the dataset takes
// the same metadata from it, and its tiles answer exactly as the MBTiles file's do (bytes,
// encoding, type, missing tiles); either kind replaces the other.
func TestUploadPMTiles(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{ReplacedTilesGrace: -1})
		key := "key=" + e.key(t, e.c, nil, "").Token
		mb := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		pm := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		want := e.uploadOK(t, mb.Id, tlVectorFile())
		r := e.upload(t, e.c, pm.Id, tlArchive(t, tlVectorArchive()))
		wantStatus(t, r.StatusCode(), 200, r.Body)
		got := *r.JSON200
		if !got.HasTiles || got.Format != want.Format || got.Minzoom != want.Minzoom || got.Maxzoom != want.Maxzoom {
			t.Errorf("PMTiles upload: %+v, MBTiles upload: %+v", got, want)
		}
		for name, pair := range map[string][2]any{
			"bounds": {got.Bounds, want.Bounds}, "center": {got.Center, want.Center},
			"attribution": {got.Attribution, want.Attribution}, "vector_layers": {got.VectorLayers, want.VectorLayers},
		} {
			g, _ := json.Marshal(pair[0])
			w, _ := json.Marshal(pair[1])
			if !bytes.Equal(g, w) {
				t.Errorf("%s: PMTiles %s, MBTiles %s", name, g, w)
			}
		}
		if f := e.tlFileOf(t, pm.Id); !strings.HasSuffix(f, ".pmtiles") {
			t.Errorf("the archive is kept as %s", f)
		}
		if f := e.tlFileOf(t, mb.Id); !strings.HasSuffix(f, ".mbtiles") {
			t.Errorf("the MBTiles file is kept as %s", f)
		}

		compare := func(what string) {
			t.Helper()
			for z := range 4 {
				for x := range 1 << z {
					for y := range 1 << z {
						zxy := fmt.Sprintf("%d/%d/%d", z, x, y)
						a := e.get(t, "GET", tlTilePath(pm.Id, zxy, "pbf", key))
						b := e.get(t, "GET", tlTilePath(mb.Id, zxy, "pbf", key))
						if a.status != b.status || !bytes.Equal(a.body, b.body) {
							t.Fatalf("%s %s: PMTiles %d %q, MBTiles %d %q", what, zxy, a.status, a.body, b.status, b.body)
						}
						for _, h := range []string{"Content-Type", "Content-Encoding", "Cache-Control"} {
							if a.header.Get(h) != b.header.Get(h) {
								t.Fatalf("%s %s: %s %q, MBTiles %q", what, zxy, h, a.header.Get(h), b.header.Get(h))
							}
						}
					}
				}
			}
		}
		compare("first upload")
		ok := e.get(t, "GET", tlTilePath(pm.Id, "1/1/1", "pbf", key))
		tlCheck(t, "a tile", ok, 200, "")
		if ok.header.Get("Content-Encoding") != "gzip" || ok.header.Get("ETag") == "" {
			t.Errorf("tile headers %v", ok.header)
		}
		tlCheck(t, "revalidated", e.get(t, "GET", tlTilePath(pm.Id, "1/1/1", "pbf", key), "If-None-Match:"+ok.header.Get("ETag")), 304, "")

		// Kinds replace each other; the replaced file goes (no grace here).
		e.uploadOK(t, pm.Id, tlVectorFile())
		if f := e.tlFileOf(t, pm.Id); !strings.HasSuffix(f, ".mbtiles") {
			t.Errorf("after an MBTiles upload: %s", f)
		}
		compare("replaced by MBTiles")
		again := tlVectorArchive()
		again.LeafSize, again.Unclustered = 1, true // another layout, the same tiles
		wantStatus(t, e.upload(t, e.c, pm.Id, tlArchive(t, again)).StatusCode(), 200, nil)
		if f := e.tlFileOf(t, pm.Id); !strings.HasSuffix(f, ".pmtiles") {
			t.Errorf("after a PMTiles upload: %s", f)
		}
		compare("replaced by PMTiles with leaves")
		if etag := e.get(t, "GET", tlTilePath(pm.Id, "1/1/1", "pbf", key)).header.Get("ETag"); etag == ok.header.Get("ETag") {
			t.Error("the ETag survived a new upload")
		}

		// Raster archives on raster datasets.
		rd := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Private)
		rr := e.upload(t, e.c, rd.Id, tlArchive(t, pmtiles.TestArchive{TileType: pmtiles.TileTypePNG, Tiles: tlRasterTiles, MaxZoom: 3}))
		wantStatus(t, rr.StatusCode(), 200, rr.Body)
		if rr.JSON200.Format != "png" || !rr.JSON200.VectorLayers.IsNull() || rr.JSON200.Maxzoom != 3 {
			t.Errorf("raster archive: %+v", rr.JSON200)
		}
		pt := e.get(t, "GET", tlTilePath(rd.Id, "2/1/3", "png", key))
		tlCheck(t, "raster tile", pt, 200, "")
		if !bytes.Equal(pt.body, tlPNG) || pt.header.Get("Content-Type") != "image/png" || pt.header.Get("Content-Encoding") != "" {
			t.Errorf("raster tile %q %v", pt.body, pt.header)
		}
	})
}

// An archive breaking a rule is refused as an MBTiles file is: 422 at the value to blame,
// nothing changes.
func TestUploadRefusesHostileArchives(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{MaxTileBytes: 8 << 10})
		vec := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		ras := e.dataset(t, e.c, gen.DatasetKindRaster, gen.Private)
		wantStatus(t, e.upload(t, e.c, vec.Id, tlArchive(t, tlVectorArchive())).StatusCode(), 200, nil)
		before := e.tlFiles(t)
		key := "key=" + e.key(t, e.c, nil, "").Token

		with := func(f func(a *pmtiles.TestArchive)) []byte {
			a := tlVectorArchive()
			f(&a)
			return tlArchive(t, a)
		}
		meta := func(k string, v any) []byte {
			return with(func(a *pmtiles.TestArchive) { a.Metadata[k] = v })
		}
		good := tlArchive(t, tlVectorArchive())
		brotli := bytes.Clone(good)
		brotli[97] = 3
		cases := []struct {
			name string
			id   uuid.UUID
			body []byte
			loc  string
			msg  string
		}{
			{"vector archive on a raster dataset", ras.Id, good, "[body]", "holds vector tiles"},
			{"truncated", vec.Id, good[:len(good)-3], "[body]", "truncated"},
			{"trailing bytes", vec.Id, append(bytes.Clone(good), 0), "[body]", "follow the archive's last section"},
			{"brotli directories", vec.Id, brotli, "[body]", "brotli"},
			{"version 2", vec.Id, append([]byte("PMTiles\x02"), good[8:]...), "[body]", "version 2"},
			{"tile over the limit", vec.Id, with(func(a *pmtiles.TestArchive) {
				a.Gzip, a.Tiles = false, map[[3]int][]byte{{0, 0, 0}: bytes.Repeat([]byte{0x1a}, 9<<10)}
			}), "[body tiles]", "the limit is 8192"},
			{"vector layer without id", vec.Id, meta("vector_layers", []any{map[string]any{"fields": map[string]any{}}}), "[body metadata vector_layers 0 id]", ""},
			{"vector layers not an array", vec.Id, meta("vector_layers", "roads"), "[body metadata vector_layers]", "not an array"},
			{"attribution over the API's limit", vec.Id, meta("attribution", strings.Repeat("a", 1001)), "[body metadata attribution]", ""},
			{"unsafe attribution", vec.Id, meta("attribution", `<script>alert(1)</script>`), "[body metadata attribution]", ""},
			{"NUL in the name", vec.Id, meta("name", "a\x00b"), "[body metadata name]", "NUL"},
			{"unserved format", ras.Id, tlArchive(t, pmtiles.TestArchive{TileType: pmtiles.TileTypeAVIF, Tiles: tlRasterTiles}), "[body]", "avif"},
		}
		for _, tc := range cases {
			r := e.upload(t, e.c, tc.id, tc.body)
			if r.StatusCode() != 422 {
				t.Errorf("%s: %d %s", tc.name, r.StatusCode(), r.Body)
				continue
			}
			var v struct {
				Detail []struct {
					Loc []any
					Msg string
				} `json:"detail"`
			}
			if json.Unmarshal(r.Body, &v) != nil || len(v.Detail) != 1 || fmt.Sprint(v.Detail[0].Loc) != tc.loc ||
				!strings.Contains(v.Detail[0].Msg, tc.msg) || strings.Contains(string(r.Body), e.dataDir) {
				t.Errorf("%s: %s, want loc %s and %q", tc.name, r.Body, tc.loc, tc.msg)
			}
		}
		wantJSON(t, e.tlFiles(t), before)
		tlCheck(t, "tiles still served", e.get(t, "GET", tlTilePath(vec.Id, "1/1/1", "pbf", key)), 200, "")
	})
}

// An archive damaged on disk after its upload answers 410 for the tiles it can no longer serve,
// as a damaged MBTiles file does.
func TestTileOfDamagedArchive(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, db *testenv.Database) {
		e := tlStart(t, db, server.Config{})
		d := e.dataset(t, e.c, gen.DatasetKindVector, gen.Private)
		a := tlVectorArchive()
		a.Tiles = tlManyTiles(300)
		a.Gzip, a.MaxZoom, a.LeafSize = false, 9, 50
		wantStatus(t, e.upload(t, e.c, d.Id, tlArchive(t, a)).StatusCode(), 200, nil)
		path := filepath.Join(e.dataDir, e.tlFileOf(t, d.Id))
		fi, err := os.Stat(path)
		must(t, err)
		must(t, os.Truncate(path, fi.Size()-fi.Size()/3))
		key := "key=" + e.key(t, e.c, nil, "").Token
		statuses := map[int]int{}
		for zxy := range a.Tiles {
			r := e.get(t, "GET", tlTilePath(d.Id, fmt.Sprintf("%d/%d/%d", zxy[0], zxy[1], zxy[2]), "pbf", key))
			statuses[r.status]++
			if r.status == 410 && r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("410 with Cache-Control %q", r.header.Get("Cache-Control"))
			}
		}
		if statuses[410] == 0 || statuses[200]+statuses[410] != len(a.Tiles) {
			t.Errorf("statuses %v: want 200 and 410 only, some 410", statuses)
		}
	})
}
