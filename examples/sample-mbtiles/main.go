// Command sample-mbtiles writes a small raster MBTiles file (zooms 0-3, PNG checkerboard tiles
// covering the world) so that a newcomer can try an upload and a map without a tileset of their own.
package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"

	"github.com/tilegate/tilegate/mbtiles"
)

const maxZoom = 3

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sample-mbtiles FILE.mbtiles")
		os.Exit(2)
	}
	if err := write(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "sample-mbtiles:", err)
		os.Exit(1)
	}
}

func write(path string) error {
	tiles := map[[3]int][]byte{}
	for z := 0; z <= maxZoom; z++ {
		for x := 0; x < 1<<z; x++ {
			for y := 0; y < 1<<z; y++ {
				b, err := tile(z, x, y)
				if err != nil {
					return err
				}
				tiles[[3]int{z, x, y}] = b
			}
		}
	}
	return mbtiles.WriteTestFile(path, mbtiles.TestFile{
		Name: "tilegate sample", Format: "png", MinZoom: 0, MaxZoom: maxZoom,
		Bounds:      [4]float64{-180, -85.05112878, 180, 85.05112878},
		Tiles:       tiles,
		Attribution: "tilegate sample tiles",
		Description: "A checkerboard per zoom level, for trying tilegate out.",
	})
}

// tile draws a 256 px tile: a colour per zoom, lighter on alternate tiles, with a dark border
// so tile edges are visible on a map.
func tile(z, x, y int) ([]byte, error) {
	base := [...]color.RGBA{{0x1f, 0x77, 0xb4, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x94, 0x67, 0xbd, 0xff}}[z%4]
	fill := base
	if (x+y)%2 == 1 {
		fill = color.RGBA{base.R/2 + 0x80, base.G/2 + 0x80, base.B/2 + 0x80, 0xff}
	}
	border := color.RGBA{0x20, 0x20, 0x20, 0xff}
	img := image.NewPaletted(image.Rect(0, 0, 256, 256), color.Palette{fill, border})
	for i := 0; i < 256; i++ {
		for _, p := range [][2]int{{i, 0}, {i, 255}, {0, i}, {255, i}} {
			img.SetColorIndex(p[0], p[1], 1)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode tile %d/%d/%d: %w", z, x, y, err)
	}
	return buf.Bytes(), nil
}
