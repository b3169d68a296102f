// Command mktilesets writes the realistic tilesets the browser tests render (internal/testtiles)
// into DIR: vector.mbtiles (regions, labels, roads; zooms 0-4), raster.mbtiles (256 px PNG,
// zooms 0-4) and shapes.json (each region's interior point, a point outside them all and the
// raster's colours), so the tests know where filled pixels must be.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tilegate/tilegate/internal/testtiles"
	"github.com/tilegate/tilegate/mbtiles"
)

const maxZoom = 4

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mktilesets DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	vector, err := testtiles.Vector(maxZoom)
	if err != nil {
		return err
	}
	raster, err := testtiles.Raster(maxZoom)
	if err != nil {
		return err
	}
	if err := mbtiles.WriteTestFile(filepath.Join(dir, "vector.mbtiles"), vector); err != nil {
		return err
	}
	if err := mbtiles.WriteTestFile(filepath.Join(dir, "raster.mbtiles"), raster); err != nil {
		return err
	}
	colors := make([][3]uint8, maxZoom+1)
	for z := range colors {
		c := testtiles.ZoomColor(z)
		colors[z] = [3]uint8{c.R, c.G, c.B}
	}
	bg := testtiles.Background
	shapes, err := json.MarshalIndent(map[string]any{
		"regions": testtiles.Regions, "outside": testtiles.Outside, "bounds": testtiles.Bounds,
		"maxzoom": maxZoom, "zoomColors": colors, "background": [3]uint8{bg.R, bg.G, bg.B},
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "shapes.json"), shapes, 0o644)
}
