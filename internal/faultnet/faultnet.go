// Package faultnet is a TCP link between a client and a server that a
// test or the soak can break on purpose: reset every connection (a
// refused or crashed peer), or blackhole it (the connection stays open
// and nothing arrives: a partition, a dropped route), and restore it.
// It listens on one address for its whole life, so clients configured
// with that address find the server again once the link is restored.
package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Mode is the state of a Link.
type Mode int

const (
	// Up forwards bytes both ways.
	Up Mode = iota
	// Reset closes every connection at once, and every new one as soon
	// as it is accepted: the client reads a reset, as from a stopped
	// server.
	Reset
	// Blackhole keeps connections open and forwards nothing in either
	// direction; new connections are accepted and hang. Clients wait for
	// their own timeouts.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Up:
		return "up"
	case Reset:
		return "reset"
	case Blackhole:
		return "blackhole"
	}
	return "unknown"
}

// Link forwards connections to its listener to a target address.
type Link struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	mode  Mode
	conns map[net.Conn]struct{}
	done  bool
}

// Listen opens a link on addr ("127.0.0.1:0" for a free port) to target.
func Listen(addr, target string) (*Link, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Link{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go l.accept()
	return l, nil
}

// ListenBlackhole opens a link on addr that leads nowhere and starts
// as a Blackhole: it accepts connections and never answers (a firewall
// that drops, a server that hangs).
func ListenBlackhole(addr string) (*Link, error) {
	l, err := Listen(addr, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.Set(Blackhole)
	return l, nil
}

// Addr is the address clients dial.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Mode returns the link's mode.
func (l *Link) Mode() Mode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mode
}

// Set changes the mode. Leaving Up for Reset closes every connection;
// leaving Blackhole closes them too (bytes were dropped: what they carry
// is no longer a stream either end can use), as a real partition ends
// with the peers' connections timed out.
func (l *Link) Set(m Mode) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m == l.mode {
		return
	}
	old := l.mode
	l.mode = m
	if m == Reset || old == Blackhole {
		l.closeAll()
	}
}

// Close stops the link and closes every connection.
func (l *Link) Close() error {
	l.mu.Lock()
	l.done = true
	l.closeAll()
	l.mu.Unlock()
	return l.ln.Close()
}

func (l *Link) closeAll() {
	for c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, not a polite close
		}
		c.Close()
	}
	clear(l.conns)
}

// track adds c to the connections closed by the next Reset; it reports
// false (and closes c) if the link is closed or resetting.
func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || l.mode == Reset {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) untrack(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		delete(l.conns, c)
		c.Close()
	}
}

func (l *Link) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go l.serve(c)
	}
}

func (l *Link) serve(c net.Conn) {
	if !l.track(c) {
		return
	}
	if l.Mode() == Blackhole {
		// Accepted, never answered; closed when the mode changes.
		io.Copy(io.Discard, c)
		l.untrack(c)
		return
	}
	u, err := net.Dial("tcp", l.target)
	if err != nil {
		l.untrack(c)
		return
	}
	if !l.track(u) {
		l.untrack(c)
		return
	}
	done := make(chan struct{}, 2)
	go func() { l.pipe(u, c); done <- struct{}{} }()
	go func() { l.pipe(c, u); done <- struct{}{} }()
	<-done
	l.untrack(c, u)
	<-done
}

// pipe copies src to dst while the link is up, and drops what it reads
// while it is a blackhole.
func (l *Link) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && l.Mode() == Up {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
