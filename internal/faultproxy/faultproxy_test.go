package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, s string) {
	t.Helper()
	if _, err := c.c.Write([]byte(s + "\n")); err != nil {
		t.Fatal(err)
	}
}

// line reads one line, or returns the error after within.
func (c *client) line(within time.Duration) (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(within))
	return c.r.ReadString('\n')
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPass(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	c.send(t, "hello")
	if got, err := c.line(5 * time.Second); err != nil || got != "hello\n" {
		t.Fatalf("echo through the proxy: %q %v", got, err)
	}
	if s := p.Stats(); s.Open != 1 || s.Accepted != 1 {
		t.Errorf("stats %+v, want 1 open, 1 accepted", s)
	}
}

// A black hole keeps connections open and delivers nothing until it passes again; then what it
// held arrives, in order. New connections are accepted and held too.
func TestBlackHole(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	c.send(t, "before")
	if got, err := c.line(5 * time.Second); err != nil || got != "before\n" {
		t.Fatalf("before the black hole: %q %v", got, err)
	}
	p.SetMode(BlackHole)
	c.send(t, "held")
	waitFor(t, "the proxy to hold the line", func() bool { return p.Stats().Held == len("held\n") })
	if got, err := c.line(200 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a black hole: %q %v, want a timeout", got, err)
	}
	fresh := dial(t, p)
	fresh.send(t, "new")
	waitFor(t, "the new connection to be held", func() bool { return p.Stats().Open == 2 })

	p.SetMode(Pass)
	if got, err := c.line(5 * time.Second); err != nil || got != "held\n" {
		t.Fatalf("after the black hole: %q %v, want the held line", got, err)
	}
	if got, err := fresh.line(5 * time.Second); err != nil || got != "new\n" {
		t.Fatalf("connection made during the black hole: %q %v", got, err)
	}
	if s := p.Stats(); s.Held != 0 {
		t.Errorf("stats %+v, want nothing held", s)
	}
}

// Cut closes open connections, also ones a black hole holds; new ones are served by the mode.
func TestCut(t *testing.T) {
	p := start(t)
	a, b := dial(t, p), dial(t, p)
	a.send(t, "x")
	if _, err := a.line(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	b.send(t, "y")
	if _, err := b.line(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(BlackHole)
	b.send(t, "held")
	waitFor(t, "the proxy to hold the line", func() bool { return p.Stats().Held > 0 })
	if n := p.Cut(); n != 2 {
		t.Errorf("Cut closed %d connections, want 2", n)
	}
	for name, c := range map[string]*client{"passing": a, "held": b} {
		if got, err := c.line(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s connection after Cut: %q %v, want it closed", name, got, err)
		}
	}
	p.SetMode(Pass)
	c := dial(t, p)
	c.send(t, "again")
	if got, err := c.line(5 * time.Second); err != nil || got != "again\n" {
		t.Fatalf("new connection after Cut: %q %v", got, err)
	}
	// The cut link's goroutines release what they held after Cut returns: poll, don't sample.
	waitFor(t, "1 open connection and nothing held", func() bool {
		s := p.Stats()
		return s.Open == 1 && s.Held == 0
	})
}

// Refuse closes new connections at once and leaves open ones passing.
func TestRefuse(t *testing.T) {
	p := start(t)
	old := dial(t, p)
	old.send(t, "a")
	if _, err := old.line(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Refuse)
	c := dial(t, p)
	if got, err := c.line(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection while refusing: %q %v, want it closed", got, err)
	}
	old.send(t, "b")
	if got, err := old.line(5 * time.Second); err != nil || got != "b\n" {
		t.Fatalf("open connection while refusing: %q %v", got, err)
	}
	if s := p.Stats(); s.Accepted != 2 || s.Open != 1 {
		t.Errorf("stats %+v, want 2 accepted and 1 open", s)
	}
}

// LoseReply lets the request matching its last pattern through and drops the reply with the
// connection, once, on the connection that sent the patterns in order.
func TestLoseReply(t *testing.T) {
	p := start(t)
	p.LoseReply([]byte("update"), []byte("commit"))
	other := dial(t, p)
	c := dial(t, p)
	for _, msg := range []string{"commit early", "update row", "select"} {
		c.send(t, msg)
		if got, err := c.line(5 * time.Second); err != nil || got != msg+"\n" {
			t.Fatalf("%q before the lost reply: %q %v", msg, got, err)
		}
	}
	other.send(t, "update elsewhere") // another connection's progress is its own
	if got, err := other.line(5 * time.Second); err != nil || got != "update elsewhere\n" {
		t.Fatalf("other connection: %q %v", got, err)
	}
	c.send(t, "commit")
	if got, err := c.line(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the reply to commit: %q %v, want the connection closed", got, err)
	}
	if n := p.Stats().LostReplies; n != 1 {
		t.Errorf("LostReplies %d, want 1", n)
	}
	other.send(t, "commit") // disarmed
	if got, err := other.line(5 * time.Second); err != nil || got != "commit\n" {
		t.Fatalf("after the lost reply: %q %v", got, err)
	}
}
