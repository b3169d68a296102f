package tilestore

import (
	"testing"

	"github.com/google/uuid"
)

// Names are unique per upload, recognised by IsName (and nothing else is), carry their kind in
// their extension, and their version is their random part.
func TestNames(t *testing.T) {
	id := uuid.MustParse("3f1c2a9e-8a7b-4c1d-9e2f-0a1b2c3d4e5f")
	for _, kind := range []Kind{MBTiles, PMTiles} {
		a, err := Name(id, kind)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Name(id, kind)
		if a == b {
			t.Fatalf("two uploads named alike: %s", a)
		}
		if !IsName(a) || KindOf(a) != kind {
			t.Errorf("IsName(%q) = %v, KindOf %v", a, IsName(a), KindOf(a))
		}
		if v := Version(a); len(v) != 16 || a != id.String()+"-"+v+kind.ext() {
			t.Errorf("Version(%q) = %q", a, v)
		}
		for _, n := range []string{".upload-" + a, a + "-journal", id.String() + kind.ext(), "x" + a, a[:len(a)-1],
			a[:len(a)-len(kind.ext())] + ".tiles", a[:len(a)-len(kind.ext())] + ".PMTILES"} {
			if IsName(n) {
				t.Errorf("IsName(%q) = true", n)
			}
		}
	}
}

// A file's kind is told by its first bytes, whatever it is called.
func TestDetectKind(t *testing.T) {
	for prefix, want := range map[string]Kind{
		"PMTiles\x03\x7f\x00": PMTiles, "PMTiles\x02": PMTiles, // other versions: refused by the archive's checks
		"SQLite format 3\x00": MBTiles, "": MBTiles, "PMTile": MBTiles, "pmtiles\x03": MBTiles, "garbage": MBTiles,
	} {
		if got := DetectKind([]byte(prefix)); got != want {
			t.Errorf("DetectKind(%q) = %v, want %v", prefix, got, want)
		}
	}
}
