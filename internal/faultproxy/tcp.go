// Package faultproxy injects faults between a Sluice host and its dependencies: a TCP
// proxy (PostgreSQL, ClickHouse: drop every connection, refuse new ones for a while, add
// latency, reset a fraction of connections) and an HTTP proxy for S3 (answer a fraction of
// requests with 500/503/SlowDown errors, before or after the request reached the server,
// add latency, reset connections). Both listen on 127.0.0.1 only and are safe for
// concurrent use; their knobs can be turned while traffic flows.
package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// TCPStats counts what a TCP proxy did.
type TCPStats struct {
	Accepted int64 // connections accepted
	Dropped  int64 // open connections closed by Drop or Refuse
	Refused  int64 // connections closed at once while refusing
	Reset    int64 // connections reset part-way by the reset fraction
}

// TCP forwards every connection accepted on its loopback address to Upstream.
type TCP struct {
	ln       net.Listener
	upstream string

	mu          sync.Mutex
	conns       map[*link]struct{}
	refuseUntil time.Time
	latency     time.Duration
	resetFrac   float64
	rnd         *rand.Rand
	closed      bool
	cutMatch    []byte // CutAfter: a client chunk holding it is forwarded, then the link reset
	cutLeft     int
	cutDelay    time.Duration

	accepted, dropped, refused, reset atomic.Int64
	wg                                sync.WaitGroup
}

// link is one proxied connection: the client's side and the upstream's.
type link struct {
	client, server net.Conn
	muted          atomic.Bool // CutAfter fired: nothing more reaches the client
}

func (l *link) close(rst bool) {
	for _, c := range []net.Conn{l.client, l.server} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && rst {
			_ = tc.SetLinger(0) // RST instead of FIN: the peer sees "connection reset"
		}
		_ = c.Close()
	}
}

// ListenTCP starts a proxy on 127.0.0.1 (a free port) to upstream (host:port).
func ListenTCP(upstream string) (*TCP, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &TCP{ln: ln, upstream: upstream, conns: map[*link]struct{}{}, rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *TCP) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk forwarded in either direction by d (0: none).
func (p *TCP) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// SetResetFraction resets each new connection with probability f, after a random number
// of bytes (0 to 64 KiB) came back from upstream.
func (p *TCP) SetResetFraction(f float64) {
	p.mu.Lock()
	p.resetFrac = f
	p.mu.Unlock()
}

// Drop resets every open connection now and returns how many there were. New connections
// are accepted as usual.
func (p *TCP) Drop() int {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		ls = append(ls, l)
		delete(p.conns, l)
	}
	p.mu.Unlock()
	for _, l := range ls {
		l.close(true)
	}
	p.dropped.Add(int64(len(ls)))
	return len(ls)
}

// Refuse drops every open connection and resets every new one for d: the dependency is
// unreachable for d, as if its network went away.
func (p *TCP) Refuse(d time.Duration) int {
	p.mu.Lock()
	p.refuseUntil = time.Now().Add(d)
	p.mu.Unlock()
	return p.Drop()
}

// Refusing reports whether the proxy refuses connections now.
func (p *TCP) Refusing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Now().Before(p.refuseUntil)
}

// Open is the number of connections open now.
func (p *TCP) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Stats returns the counters.
func (p *TCP) Stats() TCPStats {
	return TCPStats{Accepted: p.accepted.Load(), Dropped: p.dropped.Load(), Refused: p.refused.Load(), Reset: p.reset.Load()}
}

// Close stops accepting, closes every connection and waits for the copiers.
func (p *TCP) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Drop()
	p.wg.Wait()
	return err
}

func (p *TCP) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		refusing := time.Now().Before(p.refuseUntil) || p.closed
		resetAt := int64(-1)
		if p.resetFrac > 0 && p.rnd.Float64() < p.resetFrac {
			resetAt = p.rnd.Int64N(64 << 10)
		}
		p.mu.Unlock()
		if refusing {
			p.refused.Add(1)
			(&link{client: c}).close(true)
			continue
		}
		p.wg.Add(1)
		go p.serve(c, resetAt)
	}
}

func (p *TCP) serve(client net.Conn, resetAt int64) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		(&link{client: client}).close(true)
		return
	}
	l := &link{client: client, server: server}
	p.mu.Lock()
	if p.closed || time.Now().Before(p.refuseUntil) {
		p.mu.Unlock()
		l.close(true)
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.copy(server, client, -1, l, true); done <- struct{}{} }()
	go func() { p.copy(client, server, resetAt, l, false); done <- struct{}{} }()
	<-done
	// One direction ended: end the other (a half-closed database connection is useless).
	p.mu.Lock()
	_, open := p.conns[l]
	delete(p.conns, l)
	p.mu.Unlock()
	if open {
		l.close(false)
	}
	<-done
}

// CutAfter makes the next times client chunks that contain match reach the server, then
// resets their connection delay later, before the answer can return: the fault "the
// statement ran, its answer was lost" (a COMMIT, a load's last statement).
func (p *TCP) CutAfter(match []byte, times int, delay time.Duration) {
	p.mu.Lock()
	p.cutMatch, p.cutLeft, p.cutDelay = match, times, delay
	p.mu.Unlock()
}

// cut reports whether a client chunk triggers CutAfter (and counts it).
func (p *TCP) cut(chunk []byte) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutLeft <= 0 || len(p.cutMatch) == 0 || !bytes.Contains(chunk, p.cutMatch) {
		return 0, false
	}
	p.cutLeft--
	return p.cutDelay, true
}

// copy forwards src to dst chunk by chunk, with the current latency; with resetAt >= 0 it
// resets the link once that many bytes went through. fromClient: src is the client (the
// direction CutAfter watches).
func (p *TCP) copy(dst, src net.Conn, resetAt int64, l *link, fromClient bool) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			p.mu.Lock()
			lat := p.latency
			p.mu.Unlock()
			if lat > 0 {
				time.Sleep(lat)
			}
			if resetAt >= 0 && n+int64(k) > resetAt {
				p.mu.Lock()
				delete(p.conns, l)
				p.mu.Unlock()
				p.reset.Add(1)
				l.close(true)
				return
			}
			n += int64(k)
			var delay time.Duration
			cut := false
			if fromClient {
				if delay, cut = p.cut(buf[:k]); cut {
					l.muted.Store(true)
				}
			} else if l.muted.Load() {
				continue // the answer is lost
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
			if cut {
				time.Sleep(delay)
				p.mu.Lock()
				delete(p.conns, l)
				p.mu.Unlock()
				p.reset.Add(1)
				l.close(true)
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			return
		}
	}
}
