// Command mkmbtiles writes the small vector MBTiles file the TypeScript SDK's tests upload: one
// tile at 0/0/0 whose bytes are "tile 0/0/0".
package main

import (
	"fmt"
	"os"

	"github.com/tilegate/tilegate/mbtiles"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkmbtiles FILE")
		os.Exit(2)
	}
	err := mbtiles.WriteTestFile(os.Args[1], mbtiles.TestFile{
		Format: "pbf", MinZoom: 0, MaxZoom: 1, Bounds: [4]float64{-180, -85, 180, 85},
		Tiles:        map[[3]int][]byte{{0, 0, 0}: []byte("tile 0/0/0")},
		VectorLayers: `[{"id":"roads","fields":{}}]`,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
