package main

import (
	"crypto/sha256"
	"database/sql"
	"fmt"
	mrand "math/rand/v2"

	"github.com/tilegate/tilegate/mbtiles"
)

// tileSet is one generated MBTiles file and what the harness needs to know of it.
type tileSet struct {
	name   string   // file name without .mbtiles (mbtileserver's tileset id)
	path   string   // the file
	coords [][3]int // every tile's XYZ z/x/y, in zoom order
	stored [][32]byte
	avg    int // mean stored (gzipped) size in bytes
}

// writeTileSet writes an MBTiles file of n vector tiles, filling zooms from 0 upwards, each
// tile rawSize bytes before gzip. Small tiles are three quarters random, the rest zeros so they
// compress the way real small vector tiles do; large ones are random (about rawSize gzipped).
// The content is seeded, so every run serves the same bytes.
func writeTileSet(path, name string, n, rawSize int, seed uint64) (*tileSet, error) {
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	tiles := make(map[[3]int][]byte, n)
	ts := &tileSet{name: name, path: path}
	maxZoom := 0
	for z := 0; len(ts.coords) < n; z++ {
		for x := 0; x < 1<<z && len(ts.coords) < n; x++ {
			for y := 0; y < 1<<z && len(ts.coords) < n; y++ {
				data := make([]byte, rawSize)
				random := rawSize
				if rawSize < 1024 {
					random = rawSize * 3 / 4
				}
				for i := range random {
					data[i] = byte(rng.Uint32())
				}
				data[0] = 0x1a // a vector tile's first field tag
				tiles[[3]int{z, x, y}] = data
				ts.coords = append(ts.coords, [3]int{z, x, y})
				maxZoom = z
			}
		}
	}
	if err := mbtiles.WriteTestFile(path, mbtiles.TestFile{
		Name: name, Format: "pbf", MinZoom: 0, MaxZoom: maxZoom, Gzip: true,
		Bounds:       [4]float64{-180, -85, 180, 85},
		VectorLayers: `[{"id":"bench","fields":{}}]`,
		Tiles:        tiles,
	}); err != nil {
		return nil, err
	}
	return ts, ts.loadStored()
}

// loadStored reads back the stored (gzipped) bytes of every tile: what both servers must send.
func (ts *tileSet) loadStored() error {
	db, err := sql.Open("sqlite", "file:"+ts.path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	ts.stored = make([][32]byte, len(ts.coords))
	total := 0
	for i, c := range ts.coords {
		var data []byte
		if err := db.QueryRow(`SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?`,
			c[0], c[1], (1<<c[0])-1-c[2]).Scan(&data); err != nil {
			return fmt.Errorf("read back tile %v: %w", c, err)
		}
		ts.stored[i] = sha256.Sum256(data)
		total += len(data)
	}
	ts.avg = total / len(ts.coords)
	return nil
}
