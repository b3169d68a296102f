package sealed

import (
	"errors"
	"strings"
	"testing"
)

func TestSealOpenRotate(t *testing.T) {
	k1 := Key{ID: "k1", Secret: []byte("first root secret of 32 bytes!!!")}
	k2 := Key{ID: "k2", Secret: []byte("second root secret of 32 bytes!!")}
	old, err := New([]Key{k1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := old.Seal([]byte("Bearer upstream-secret"), "dataset-a")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "upstream-secret") || !strings.HasPrefix(s, "v1:k1:") {
		t.Fatalf("sealed form %q", s)
	}
	again, _ := old.Seal([]byte("Bearer upstream-secret"), "dataset-a")
	if again == s {
		t.Error("two seals of the same secret are equal (nonce reused)")
	}
	rotated, err := New([]Key{k2, k1}) // k2 seals now, k1 still opens
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := rotated.Open(s, "dataset-a"); err != nil || string(pt) != "Bearer upstream-secret" {
		t.Fatalf("open after rotation: %q, %v", pt, err)
	}
	if s2, _ := rotated.Seal([]byte("x"), "d"); !strings.HasPrefix(s2, "v1:k2:") {
		t.Errorf("rotated box seals with %q", s2)
	}
	if _, err := rotated.Open(s, "dataset-b"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("opened under another context: %v", err)
	}
	gone, _ := New([]Key{k2})
	if _, err := gone.Open(s, "dataset-a"); !errors.Is(err, ErrNoKey) {
		t.Errorf("opened without its key: %v", err)
	}
	tampered := s[:len(s)-2] + "AA"
	if _, err := old.Open(tampered, "dataset-a"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("tampered ciphertext: %v", err)
	}
	for _, bad := range []string{"", "v1:", "v1:k1", "v1:k1:!!!", "v2:k1:AAAA", "v1:k1:AAAA"} {
		if _, err := old.Open(bad, "dataset-a"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}
