package testpeer

import (
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/tilegate/tilegate/mbtiles"
)

// TestServesATile starts the real mbtileserver over a generated file and reads a tile back.
func TestServesATile(t *testing.T) {
	dir := t.TempDir()
	want := []byte("\x1a\x02\x78\x01")
	if err := mbtiles.WriteTestFile(filepath.Join(dir, "roads.mbtiles"), mbtiles.TestFile{
		Format: "pbf", MaxZoom: 2, Gzip: true, // mbtileserver detects vector tiles by their gzip header
		Tiles: map[[3]int][]byte{{1, 0, 1}: want},
	}); err != nil {
		t.Fatal(err)
	}
	s := Start(t, dir)
	resp, err := http.Get(s.URL + "/services/roads/tiles/1/0/1.pbf")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(got) != string(want) {
		t.Fatalf("tile: %d %q, want 200 %q", resp.StatusCode, got, want)
	}
}
