package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the log records with msg.
func (l *lockedBuffer) records(t *testing.T, msg string) []map[string]any {
	l.mu.Lock()
	raw := l.b.String()
	l.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(raw) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A thousand failures are one line per error class, then counts while they go on, then one
// recovery line per class with the total; failures begun before the recovery do not reopen it.
func TestOutageLogAggregates(t *testing.T) {
	var buf lockedBuffer
	var down atomic.Bool
	down.Store(true)
	probe := func(context.Context) error {
		if down.Load() {
			return errors.New("still down")
		}
		return nil
	}
	o := newOutageLog(slog.New(slog.NewJSONHandler(&buf, nil)), 300*time.Millisecond, probe,
		outageMessages{first: "first", still: "still", recovered: "recovered"})
	o.probeEvery = 5 * time.Millisecond
	defer o.close()

	for i := range 1000 {
		o.failure("timeout", time.Now(), slog.Int("i", i))
	}
	for range 10 {
		o.failure("connection", time.Now())
	}
	if n := len(buf.records(t, "first")); n != 2 {
		t.Fatalf("%d first lines for 1010 failures of 2 classes, want 2", n)
	}
	waitUntil(t, "a count line", func() bool { return len(buf.records(t, "still")) >= 2 })
	for _, r := range buf.records(t, "still") {
		want := map[string]float64{"timeout": 999, "connection": 9}[r["kind"].(string)]
		if r["failures"].(float64) != want {
			t.Errorf("count line %v, want %v failures since the first line", r, want)
		}
	}
	o.failure("timeout", time.Now())
	waitUntil(t, "a second count line for timeout", func() bool { return len(buf.records(t, "still")) >= 3 })

	inFlight := time.Now()
	down.Store(false)
	waitUntil(t, "recovery lines", func() bool { return len(buf.records(t, "recovered")) == 2 })
	for _, r := range buf.records(t, "recovered") {
		want := map[string]float64{"timeout": 1001, "connection": 10}[r["kind"].(string)]
		if r["failures"].(float64) != want {
			t.Errorf("recovery line %v, want %v failures in all", r, want)
		}
	}
	o.failure("timeout", inFlight) // began during the outage that just ended
	if n := len(buf.records(t, "first")); n != 2 {
		t.Errorf("a failure begun before the recovery reopened the outage (%d first lines)", n)
	}
	down.Store(true)
	o.failure("timeout", time.Now())
	if n := len(buf.records(t, "first")); n != 3 {
		t.Errorf("a new outage was not logged (%d first lines, want 3)", n)
	}
}
