package faultproxy

import (
	"testing"
	"time"
)

// A delay holds every chunk for at least that long each way: a round trip takes twice it. (A
// lower bound only: a slow machine can only make it longer.)
func TestDelay(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	const d = 30 * time.Millisecond
	p.SetDelay(d)
	start := time.Now()
	c.send(t, "slow")
	if got, err := c.line(5 * time.Second); err != nil || got != "slow\n" {
		t.Fatalf("echo with a delay: %q %v", got, err)
	}
	if took := time.Since(start); took < 2*d {
		t.Errorf("a round trip with %v each way took %v, want at least %v", d, took, 2*d)
	}
	p.SetDelay(0)
	c.send(t, "fast")
	if got, err := c.line(5 * time.Second); err != nil || got != "fast\n" {
		t.Fatalf("echo without a delay: %q %v", got, err)
	}
}
