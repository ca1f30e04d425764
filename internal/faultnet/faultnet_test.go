package faultnet

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
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
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line and reports whether it came back within wait.
func roundTrip(c net.Conn, wait time.Duration) bool {
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

// TestFaultsAreRealAndRestoreWorks: a soak or test that thinks it cut a
// link must have cut it (a reset ends open connections, a blackhole
// answers nothing), and a restored link must carry new connections on
// the same address, or the faults it reports surviving never happened.
func TestFaultsAreRealAndRestoreWorks(t *testing.T) {
	l, err := Listen("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	open := dial()
	if !roundTrip(open, 5*time.Second) {
		t.Fatal("an up link does not forward")
	}

	l.Set(Reset)
	if roundTrip(open, 5*time.Second) {
		t.Error("an open connection still works after Reset")
	}
	// A new connection is reset at once: the dial itself may fail.
	if c, err := net.Dial("tcp", l.Addr()); err == nil {
		if roundTrip(c, 5*time.Second) {
			t.Error("a new connection works while the link is Reset")
		}
		c.Close()
	}

	l.Set(Up)
	held := dial()
	if !roundTrip(held, 5*time.Second) {
		t.Fatal("a restored link does not forward")
	}
	l.Set(Blackhole)
	if roundTrip(held, 200*time.Millisecond) {
		t.Error("an open connection is answered through a blackhole")
	}
	if roundTrip(dial(), 200*time.Millisecond) {
		t.Error("a new connection is answered through a blackhole")
	}

	l.Set(Up)
	if !roundTrip(dial(), 5*time.Second) {
		t.Error("the link does not forward after the blackhole ends")
	}
}
