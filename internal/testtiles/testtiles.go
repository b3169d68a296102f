// Package testtiles builds realistic tilesets for tests, in memory, from shapes defined here:
// a multi-layer vector tileset (regions as polygons, one with a hole; their labels as points; a
// road as a line) encoded as Mapbox Vector Tiles with orb's encoder, and a 256 px PNG raster
// tileset drawn from the same polygons. Renders then have something to check: a pixel inside a
// region is filled, one outside is not, and the raster's fill colour says which zoom level's
// tile is on screen.
package testtiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/encoding/mvt"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/maptile"
	"github.com/paulmach/orb/planar"

	"github.com/tilegate/tilegate/mbtiles"
)

// Region is a named polygon (lon/lat degrees; the first ring the outline, later ones holes)
// with a point well inside it, away from its edges and holes.
type Region struct {
	Name     string      `json:"name"`
	Polygon  orb.Polygon `json:"-"`
	Interior orb.Point   `json:"interior"`
}

// Regions are the shapes of both tilesets. They are large enough to cover many pixels at zoom
// 0-3 and placed apart so that a point between them is outside every one.
var Regions = []Region{
	{Name: "Borealia", Polygon: orb.Polygon{{{-120, 30}, {-60, 30}, {-55, 50}, {-90, 65}, {-125, 50}, {-120, 30}}}, Interior: orb.Point{-90, 45}},
	{Name: "Australis", Polygon: orb.Polygon{{{-75, -45}, {-40, -5}, {-80, 5}, {-75, -45}}}, Interior: orb.Point{-65, -10}},
	{Name: "Mediterra", Polygon: hexagon(20, 10, 22), Interior: orb.Point{20, 10}},
	{Name: "Anulus", Polygon: orb.Polygon{
		{{60, 15}, {110, 15}, {110, 50}, {60, 50}, {60, 15}},
		{{75, 25}, {75, 40}, {95, 40}, {95, 25}, {75, 25}}, // a hole: its middle is outside
	}, Interior: orb.Point{67, 45}},
	{Name: "Insula", Polygon: orb.Polygon{{{130, -35}, {155, -35}, {155, -15}, {130, -15}, {130, -35}}}, Interior: orb.Point{142, -25}},
}

// Outside is a point in none of the regions (the middle of Anulus' hole).
var Outside = orb.Point{85, 32}

// Bounds covers every region: west, south, east, north.
var Bounds = [4]float64{-130, -50, 160, 70}

func hexagon(lon, lat, r float64) orb.Polygon {
	ring := make(orb.Ring, 0, 7)
	for i := 0; i <= 6; i++ {
		a := float64(i%6) * math.Pi / 3
		ring = append(ring, orb.Point{lon + r*math.Cos(a), lat + r*math.Sin(a)})
	}
	return orb.Polygon{ring}
}

// regionBounds are the regions' bounding boxes: most pixels of a raster tile are in none, and
// the box test spares them the polygon test.
var regionBounds = func() []orb.Bound {
	out := make([]orb.Bound, len(Regions))
	for i, r := range Regions {
		out[i] = r.Polygon.Bound()
	}
	return out
}()

// Contains reports the region a point lies in.
func Contains(p orb.Point) (Region, bool) {
	for i, r := range Regions {
		if regionBounds[i].Contains(p) && planar.PolygonContains(r.Polygon, p) {
			return r, true
		}
	}
	return Region{}, false
}

// Layers of the vector tileset, as TileJSON's vector_layers.
const VectorLayers = `[{"id":"regions","fields":{"name":"String"}},{"id":"labels","fields":{"name":"String"}},{"id":"roads","fields":{"kind":"String"}}]`

// Attribution of both tilesets.
const Attribution = "Generated test shapes"

func features() map[string]*geojson.FeatureCollection {
	regions, labels, roads := geojson.NewFeatureCollection(), geojson.NewFeatureCollection(), geojson.NewFeatureCollection()
	for _, r := range Regions {
		f := geojson.NewFeature(r.Polygon)
		f.Properties["name"] = r.Name
		regions.Append(f)
		l := geojson.NewFeature(r.Interior)
		l.Properties["name"] = r.Name
		labels.Append(l)
	}
	road := geojson.NewFeature(orb.LineString{Regions[0].Interior, Regions[2].Interior, Regions[4].Interior})
	road.Properties["kind"] = "highway"
	roads.Append(road)
	return map[string]*geojson.FeatureCollection{"regions": regions, "labels": labels, "roads": roads}
}

// Vector is the vector tileset for zooms 0 to maxZoom (every tile, gzipped as MBTiles files
// usually store them).
func Vector(maxZoom int) (mbtiles.TestFile, error) {
	tiles := map[[3]int][]byte{}
	fcs := features()
	for z := 0; z <= maxZoom; z++ {
		n := 1 << z
		for x := 0; x < n; x++ {
			for y := 0; y < n; y++ {
				layers := mvt.NewLayers(clone(fcs))
				for _, l := range layers {
					l.Version = 2 // orb defaults to 1; the geometry follows 2's winding rules (holes render)
				}
				layers.ProjectToTile(maptile.New(uint32(x), uint32(y), maptile.Zoom(z)))
				layers.Clip(mvt.MapboxGLDefaultExtentBound)
				data, err := mvt.Marshal(layers)
				if err != nil {
					return mbtiles.TestFile{}, fmt.Errorf("encode tile %d/%d/%d: %w", z, x, y, err)
				}
				tiles[[3]int{z, x, y}] = data
			}
		}
	}
	return mbtiles.TestFile{
		Name: "regions", Format: "pbf", MinZoom: 0, MaxZoom: maxZoom, Bounds: Bounds, Tiles: tiles,
		VectorLayers: VectorLayers, Attribution: Attribution, Description: "Generated regions, labels and a road", Gzip: true,
	}, nil
}

// clone deep-copies the features (projecting a layer rewrites its geometry in place).
func clone(in map[string]*geojson.FeatureCollection) map[string]*geojson.FeatureCollection {
	out := make(map[string]*geojson.FeatureCollection, len(in))
	for name, fc := range in {
		b, _ := json.Marshal(fc)
		c, err := geojson.UnmarshalFeatureCollection(b)
		if err != nil {
			panic(err) // our own features always round-trip
		}
		out[name] = c
	}
	return out
}

// Background is the raster's colour outside every region.
var Background = color.RGBA{235, 235, 235, 255}

// ZoomColor is the raster's fill colour of regions in tiles of zoom z, so a render shows which
// zoom level's tiles it drew.
func ZoomColor(z int) color.RGBA {
	palette := []color.RGBA{{200, 30, 30, 255}, {30, 150, 30, 255}, {30, 30, 200, 255}, {220, 140, 0, 255}, {140, 30, 160, 255}, {0, 150, 150, 255}}
	return palette[z%len(palette)]
}

// TileSize is the raster tileset's tile edge in pixels.
const TileSize = 256

// Raster is the 256 px PNG tileset for zooms 0 to maxZoom: regions filled with ZoomColor(z)
// on Background.
func Raster(maxZoom int) (mbtiles.TestFile, error) {
	tiles := map[[3]int][]byte{}
	for z := 0; z <= maxZoom; z++ {
		n := 1 << z
		for x := 0; x < n; x++ {
			for y := 0; y < n; y++ {
				b, err := drawTile(z, x, y)
				if err != nil {
					return mbtiles.TestFile{}, err
				}
				tiles[[3]int{z, x, y}] = b
			}
		}
	}
	return mbtiles.TestFile{
		Name: "regions raster", Format: "png", MinZoom: 0, MaxZoom: maxZoom, Bounds: Bounds, Tiles: tiles,
		Attribution: Attribution,
	}, nil
}

func drawTile(z, x, y int) ([]byte, error) {
	img := image.NewPaletted(image.Rect(0, 0, TileSize, TileSize), color.Palette{Background, ZoomColor(z)})
	n := float64(int(1) << z)
	for py := 0; py < TileSize; py++ {
		lat := tileLat((float64(y) + (float64(py)+0.5)/TileSize) / n)
		for px := 0; px < TileSize; px++ {
			lon := (float64(x)+(float64(px)+0.5)/TileSize)/n*360 - 180
			if _, in := Contains(orb.Point{lon, lat}); in {
				img.SetColorIndex(px, py, 1)
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode tile %d/%d/%d: %w", z, x, y, err)
	}
	return buf.Bytes(), nil
}

// tileLat is the latitude at fraction f (0 north, 1 south) of the Web Mercator square.
func tileLat(f float64) float64 {
	return math.Atan(math.Sinh(math.Pi*(1-2*f))) * 180 / math.Pi
}
