package tileurl

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

const id = "0b6f3c1e-8d2a-4f5b-9c7d-1e2f3a4b5c6d"

func TestParse(t *testing.T) {
	for _, c := range []struct {
		path string
		want error
	}{
		{Prefix + id + "/0/0/0.pbf", nil},
		{Prefix + id + "/3/7/5.png", nil},
		{Prefix + id + "/30/1073741823/0.webp", nil},
		{Prefix + id + "/00/0/0.pbf", ErrSpelling},
		{Prefix + id + "/0/+0/0.pbf", ErrSpelling},
		{Prefix + id + "/0/0/0%2Epbf", ErrSpelling},
		{Prefix + strings.ToUpper(id) + "/0/0/0.pbf", ErrSpelling},
		{Prefix + id + "/0/0/0.PBF", ErrSpelling},
		{Prefix + id + "/0/0/0.pbf/", ErrSpelling},
		{Prefix + id + "/0/0/0", ErrSpelling},
		{Prefix + "nope/0/0/0.pbf", ErrSyntax},
		{Prefix + id + "/a/0/0.pbf", ErrSyntax},
		{Prefix + id + "/31/0/0.pbf", ErrZoom},
		{Prefix + id + "/1/2/0.pbf", ErrXY},
		{Prefix + id + "/1/-1/0.pbf", ErrXY},
		{"/api/other/" + id + "/0/0/0.pbf", ErrSpelling},
	} {
		tile, err := Parse(c.path)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("Parse(%q) = %v, want %v", c.path, err, c.want)
			continue
		}
		if err == nil && tile.Path() != c.path {
			t.Errorf("Parse(%q).Path() = %q", c.path, tile.Path())
		}
	}
}

func TestTemplateAndPredicates(t *testing.T) {
	d := uuid.MustParse(id)
	if got := string(AppendTemplate([]byte("x:"), "https://tiles.example", d, "pbf")); got != "x:https://tiles.example/api/tiles/"+id+"/{z}/{x}/{y}.pbf" {
		t.Errorf("AppendTemplate: %s", got)
	}
	tile := Tile{Dataset: d, Z: 2, X: 3, Y: 1, Format: "png"}
	if segs, ok := Segments(tile.Path()); !ok || segs != [4]string{id, "2", "3", "1.png"} || !IsTileFile(tile.Path()) || !UnderTiles(tile.Path()) {
		t.Errorf("Segments(%q) = %q %v", tile.Path(), segs, ok)
	}
	for _, p := range []string{Prefix + "tokens/", Prefix + "tokens", Prefix + "token/" + id} {
		if !IsTokenEndpoint(p) || UnderTiles(p) {
			t.Errorf("%s: a token endpoint", p)
		}
	}
	if _, ok := Segments(Prefix + "token/" + id + "/0/0.pbf"); ok {
		t.Error("the token endpoint's subtree is not a tile")
	}
	if IsTokenEndpoint(Prefix+id+"/tilejson.json") || !UnderTiles(Prefix+id+"/tilejson.json") {
		t.Error("a TileJSON path")
	}
}

// One spelling per tile: whatever path Parse accepts is exactly the path the tile writes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{Prefix + id + "/0/0/0.pbf", Prefix + id + "/12/100/200.png", Prefix + id + "/00/0/0.pbf", Prefix + id + "/1/+1/0.jpg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tile, err := Parse(p)
		if err != nil {
			return
		}
		if tile.Path() != p {
			t.Fatalf("Parse(%q) accepted a second spelling of %q", p, tile.Path())
		}
		if tile.Z > MaxZoom || tile.X < 0 || tile.Y < 0 || tile.X >= 1<<tile.Z || tile.Y >= 1<<tile.Z {
			t.Fatalf("Parse(%q) = %+v: outside the grid", p, tile)
		}
	})
}
