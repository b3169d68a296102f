package tilestore

import (
	"testing"

	"github.com/google/uuid"
)

// Names are unique per upload, recognised by IsName (and nothing else is), and their version is
// their random part.
func TestNames(t *testing.T) {
	id := uuid.MustParse("3f1c2a9e-8a7b-4c1d-9e2f-0a1b2c3d4e5f")
	a, err := Name(id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Name(id)
	if a == b {
		t.Fatalf("two uploads named alike: %s", a)
	}
	if !IsName(a) {
		t.Errorf("IsName(%q) = false", a)
	}
	if v := Version(a); len(v) != 16 || a != id.String()+"-"+v+".mbtiles" {
		t.Errorf("Version(%q) = %q", a, v)
	}
	for _, n := range []string{".upload-" + a, a + "-journal", id.String() + ".mbtiles", "x" + a, a[:len(a)-1]} {
		if IsName(n) {
			t.Errorf("IsName(%q) = true", n)
		}
	}
}
