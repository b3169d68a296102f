// Package faultproxy is a TCP proxy that tests and load programs put between tilegate and its
// database to simulate network faults without touching the (shared) database server: a black
// hole (connections stay open, nothing is forwarded), a cut (every connection closed) and
// refusal (new connections closed at once, as while a server restarts).
package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with traffic.
type Mode int

const (
	// Pass forwards everything both ways.
	Pass Mode = iota
	// BlackHole accepts connections and keeps every connection open, but forwards nothing:
	// what arrives is held (as TCP would keep retransmitting it) and delivered once the mode
	// is Pass again, unless the connection is cut first.
	BlackHole
	// Refuse closes every new connection as soon as it is accepted; open ones keep passing.
	Refuse
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case BlackHole:
		return "black hole"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Proxy listens on a loopback port and forwards to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	changed  *sync.Cond // broadcast when mode changes or a connection is cut
	mode     Mode
	conns    map[*link]struct{}
	held     int // bytes read and not yet forwarded (black hole)
	accepted int
	// loseReply is the armed LoseReply: on the first connection whose client sends each
	// pattern in turn, the reply to the last one is dropped with the connection.
	loseReply   [][]byte
	lostReplies int
	closed      bool
	wg          sync.WaitGroup
	// delay is added to every chunk forwarded, each way (SetDelay).
	delay atomic.Int64
}

// link is one proxied connection: the client side and the upstream side.
type link struct {
	client, upstream net.Conn
	cut              bool // guarded by Proxy.mu
	matched          int  // patterns of Proxy.loseReply this link's client has sent; guarded by Proxy.mu
	loseReply        bool // the next reply is dropped, and the link cut; guarded by Proxy.mu
}

// Start listens on 127.0.0.1 (a free port) and forwards to target ("host:port").
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}}
	p.changed = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's "host:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetMode switches the mode; connections held by a black hole resume on Pass.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	p.changed.Broadcast()
}

// SetDelay adds d to every chunk of data forwarded, in each direction: a database d away (a
// round trip of 2d) rather than on the same machine. 0 turns it off.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Mode is the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Cut closes every open connection (both sides) and reports how many there were. The mode is
// unchanged: new connections are handled as it says.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		l.cut = true
		links = append(links, l)
	}
	clear(p.conns)
	p.changed.Broadcast()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	return len(links)
}

// LoseReply arms a one-time fault: on the first connection whose client sends patterns in
// this order (each within one read, e.g. an UPDATE and then its transaction's "commit"), the
// message with the last pattern reaches the server, and the server's reply to it is dropped
// and the connection cut, as a network failure at that moment would. The server has done the
// work; the client cannot know it. Stats.LostReplies counts the replies lost.
func (p *Proxy) LoseReply(patterns ...[]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loseReply = patterns
	for l := range p.conns {
		l.matched = 0
	}
}

// Stats are counters for tests to poll instead of sleeping.
type Stats struct {
	Open     int // connections open now
	Accepted int // connections accepted since Start
	Held     int // bytes a black hole is holding
	// LostReplies counts replies dropped by LoseReply.
	LostReplies int
}

// Stats returns the current counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Open: len(p.conns), Accepted: p.accepted, Held: p.held, LostReplies: p.lostReplies}
}

// Close stops listening, cuts every connection and waits for the proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors: do not spin
			continue
		}
		p.mu.Lock()
		p.accepted++
		refuse := p.mode == Refuse || p.closed
		p.mu.Unlock()
		if refuse {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	// The database itself stays reachable from the proxy; faults are the proxy's doing.
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	l := &link{client: client, upstream: up}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(l, up, client, true); done <- struct{}{} }()
	go func() { p.pipe(l, client, up, false); done <- struct{}{} }()
	<-done
	// One direction ended (EOF, error or cut): close both, as a dropped connection would be.
	p.drop(l)
	<-done
}

// pipe copies src to dst, holding data while the mode is BlackHole; toServer is the client's
// direction.
func (p *Proxy) pipe(l *link, dst, src net.Conn, toServer bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass(l, n) {
				return
			}
			if toServer {
				p.watchRequest(l, buf[:n])
			} else if p.replyLost(l) {
				return
			}
			if d := p.delay.Load(); d > 0 {
				time.Sleep(time.Duration(d))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// watchRequest follows an armed LoseReply on the client's data: once the last pattern is
// seen, the link's next reply is lost. It is marked before the data is forwarded, so the reply
// cannot pass first.
func (p *Proxy) watchRequest(l *link, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.loseReply) == 0 || !bytes.Contains(data, p.loseReply[min(l.matched, len(p.loseReply)-1)]) {
		return
	}
	l.matched++
	if l.matched == len(p.loseReply) {
		l.loseReply = true
		p.loseReply = nil
	}
}

// replyLost reports whether the reply just read from the server is to be lost; the caller
// then drops it, and the link is cut.
func (p *Proxy) replyLost(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !l.loseReply {
		return false
	}
	p.lostReplies++
	return true
}

// waitPass blocks while the mode is BlackHole; false when the link was cut meanwhile.
func (p *Proxy) waitPass(l *link, n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held += n
	for p.mode == BlackHole && !l.cut {
		p.changed.Wait()
	}
	p.held -= n
	return !l.cut
}

func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	l.cut = true
	delete(p.conns, l)
	p.changed.Broadcast()
	p.mu.Unlock()
	l.close()
}

func (l *link) close() {
	_ = l.client.Close()
	_ = l.upstream.Close()
}
