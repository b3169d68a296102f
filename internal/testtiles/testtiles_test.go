package testtiles

import (
	"bytes"
	"image/png"
	"math"
	"testing"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/maptile"
)

func TestRegionsAndOutside(t *testing.T) {
	for _, r := range Regions {
		if got, ok := Contains(r.Interior); !ok || got.Name != r.Name {
			t.Errorf("%s: interior %v lies in %q", r.Name, r.Interior, got.Name)
		}
	}
	if r, ok := Contains(Outside); ok {
		t.Errorf("Outside lies in %s", r.Name)
	}
}

// Every vector tile decodes to its layers; the tile holding a region's interior has that region.
func TestVector(t *testing.T) {
	f, err := Vector(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tiles) != 1+4+16 {
		t.Fatalf("%d tiles", len(f.Tiles))
	}
	for _, r := range Regions {
		tile := maptile.At(r.Interior, 2)
		layers := decode(t, f.Tiles[[3]int{2, int(tile.X), int(tile.Y)}])
		layers.ProjectToWGS84(tile)
		found := false
		for _, l := range layers {
			if l.Name != "regions" {
				continue
			}
			for _, feat := range l.Features {
				if feat.Properties["name"] == r.Name {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("tile 2/%d/%d lacks region %s", tile.X, tile.Y, r.Name)
		}
	}
	names := map[string]bool{}
	for _, l := range decode(t, f.Tiles[[3]int{0, 0, 0}]) {
		names[l.Name] = len(l.Features) > 0
	}
	if !names["regions"] || !names["labels"] || !names["roads"] {
		t.Errorf("tile 0/0/0 layers: %v", names)
	}
}

// decode reads a tile as Vector returns it (WriteTestFile gzips it into the file).
func decode(t *testing.T, raw []byte) mvt.Layers {
	t.Helper()
	layers, err := mvt.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return layers
}

// The raster's pixel at a region's interior has the zoom's colour; the one at Outside is
// background.
func TestRaster(t *testing.T) {
	f, err := Raster(3)
	if err != nil {
		t.Fatal(err)
	}
	for z := 0; z <= 3; z++ {
		for _, c := range []struct {
			p    orb.Point
			want [3]uint8
		}{{Regions[2].Interior, rgb(ZoomColor(z).R, ZoomColor(z).G, ZoomColor(z).B)}, {Outside, rgb(Background.R, Background.G, Background.B)}} {
			x, y, px, py := pixelOf(c.p, z)
			img, err := png.Decode(bytes.NewReader(f.Tiles[[3]int{z, x, y}]))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != TileSize || b.Dy() != TileSize {
				t.Fatalf("tile %dx%d", b.Dx(), b.Dy())
			}
			r, g, b, _ := img.At(px, py).RGBA()
			if got := rgb(uint8(r>>8), uint8(g>>8), uint8(b>>8)); got != c.want {
				t.Errorf("z%d %v: pixel %v, want %v", z, c.p, got, c.want)
			}
		}
	}
}

func rgb(r, g, b uint8) [3]uint8 { return [3]uint8{r, g, b} }

// pixelOf is the tile and pixel of a point at zoom z.
func pixelOf(p orb.Point, z int) (x, y, px, py int) {
	n := float64(int(1) << z)
	fx := (p.Lon() + 180) / 360 * n
	lat := p.Lat() * math.Pi / 180
	fy := (1 - math.Log(math.Tan(lat)+1/math.Cos(lat))/math.Pi) / 2 * n
	return int(fx), int(fy), int((fx - math.Floor(fx)) * TileSize), int((fy - math.Floor(fy)) * TileSize)
}
