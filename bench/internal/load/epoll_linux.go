package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// RunEpoll is RunRaw built the way wrk is: threads OS threads, each
// owning its share of the conns connections in one epoll set,
// non-blocking sockets and no goroutine per connection. The Go runtime's
// scheduler and netpoller stay out of the exchange, so the driver costs
// the CPUs it shares with the target about what wrk costs, for the
// requests wrk cannot drive (HEAD). It reads answers as RunRaw does.
//
// Its threads still need the runtime's Ps between system calls: a target
// in the same process competes with them for the Ps as it never would
// with wrk. RunEpollProcess runs it in a process of its own.
func RunEpoll(ctx context.Context, threads, conns int, d time.Duration, want int, req *http.Request) Result {
	return runEpoll(ctx, newEpollJob(threads, conns, d, want, req))
}

func runEpoll(ctx context.Context, j EpollJob) Result {
	addr, err := net.ResolveTCPAddr("tcp", j.Addr)
	if err != nil {
		return Result{Requests: 1, Errors: 1, FirstError: err.Error()}
	}
	threads := max(1, min(j.Threads, j.Conns))
	var t tally
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(j.Duration)
	if dl, ok := ctx.Deadline(); ok && dl.Before(end) {
		end = dl
	}
	for i := range threads {
		n := j.Conns / threads
		if i < j.Conns%threads {
			n++
		}
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			lat, reqs, errs, first := epollLoop(ctx, addr, n, end, j.Want, j.Wire, j.Head)
			t.add(lat, reqs, errs, first)
		})
	}
	wg.Wait()
	return t.result(start)
}

// epollConn is one connection of an epoll loop and the answer it is
// reading.
type epollConn struct {
	fd   int
	buf  []byte
	n    int // bytes of buf read
	sent time.Time
}

// epollLoop keeps conns connections busy until end, and returns their
// latencies, the requests answered, the failed ones and the first error.
func epollLoop(ctx context.Context, addr *net.TCPAddr, conns int, end time.Time, want int, wire []byte, head bool) (lat []time.Duration, reqs, errs int, first string) {
	fail := func(err error) {
		errs++
		if first == "" {
			first = err.Error()
		}
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		fail(err)
		return nil, 1, errs, first
	}
	defer syscall.Close(ep)
	byFD := map[int]*epollConn{}
	defer func() {
		for fd := range byFD {
			syscall.Close(fd)
		}
	}()
	send := func(c *epollConn) error {
		c.n = 0
		c.sent = time.Now()
		for off := 0; off < len(wire); {
			m, err := syscall.Write(c.fd, wire[off:])
			switch {
			case err == syscall.EINTR:
				continue
			case err != nil:
				return err
			}
			off += m
		}
		return nil
	}
	drop := func(c *epollConn) {
		syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, c.fd, nil)
		syscall.Close(c.fd)
		delete(byFD, c.fd)
	}
	open := func() error {
		fd, err := dialNonblocking(addr)
		if err != nil {
			return err
		}
		c := &epollConn{fd: fd, buf: make([]byte, 64<<10)}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			syscall.Close(fd)
			return err
		}
		byFD[fd] = c
		if err := send(c); err != nil {
			drop(c)
			return err
		}
		return nil
	}
	for range conns {
		if err := open(); err != nil {
			reqs++
			fail(err)
		}
	}
	events := make([]syscall.EpollEvent, 64)
	for ctx.Err() == nil && time.Now().Before(end) {
		for len(byFD) < conns && ctx.Err() == nil && time.Now().Before(end) {
			if err := open(); err != nil { // after a failed exchange
				reqs++
				fail(err)
				time.Sleep(10 * time.Millisecond)
			}
		}
		k, err := syscall.EpollWait(ep, events, 10)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fail(err)
			return lat, reqs + 1, errs, first
		}
		for _, ev := range events[:k] {
			c := byFD[int(ev.Fd)]
			if c == nil {
				continue
			}
			status, done, err := c.read(head)
			if !done && err == nil {
				continue
			}
			now := time.Now()
			if now.After(end) {
				break // cut by the deadline: not a sample
			}
			reqs++
			lat = append(lat, now.Sub(c.sent))
			switch {
			case err != nil:
				fail(err)
				drop(c)
				continue
			case status != want:
				fail(fmt.Errorf("status %d", status))
			}
			if err := send(c); err != nil {
				fail(err)
				drop(c)
			}
		}
	}
	return lat, reqs, errs, first
}

var errClosed = errors.New("connection closed by the server")

// read reads what the socket has and reports whether the answer is
// whole, and its status.
func (c *epollConn) read(head bool) (status int, done bool, err error) {
	for {
		if c.n == len(c.buf) {
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
		avail := len(c.buf) - c.n
		m, err := syscall.Read(c.fd, c.buf[c.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, false, nil
		case err != nil:
			return 0, false, err
		case m == 0:
			return 0, false, errClosed
		}
		c.n += m
		status, size, err := answerSize(c.buf[:c.n], head)
		if err != nil || size < 0 {
			return 0, false, err
		}
		if c.n > size {
			return 0, false, fmt.Errorf("%d bytes past the answer: the server sent more than was asked", c.n-size)
		}
		if c.n == size {
			return status, true, nil
		}
		if m < avail {
			return 0, false, nil // the rest is still on its way
		}
	}
}

// answerSize reads the status and the whole answer's size in bytes from
// the start of an answer, or -1 while its header is incomplete.
func answerSize(b []byte, head bool) (status, size int, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, -1, nil
	}
	header := b[:end+2]
	line, rest, _ := bytes.Cut(header, []byte("\r\n"))
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil || length < 0 {
				return 0, 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if head || status == http.StatusNoContent || status == http.StatusNotModified {
		return status, end + 4, nil
	}
	if length < 0 {
		return 0, 0, errChunked
	}
	return status, end + 4 + length, nil
}

// dialNonblocking connects a TCP socket to addr (blocking while it
// connects) and makes it non-blocking, without Nagle's delay.
func dialNonblocking(addr *net.TCPAddr) (int, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip4 := addr.IP.To4(); ip4 != nil {
		sa = &syscall.SockaddrInet4{Port: addr.Port, Addr: [4]byte(ip4)}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: addr.Port, Addr: [16]byte(addr.IP.To16())}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// A connect cut by a signal goes on in the background (a second
	// call says EALREADY): start again on a new socket.
	for tries := 0; ; tries++ {
		if err = syscall.Connect(fd, sa); err != syscall.EINTR || tries == 3 {
			break
		}
		syscall.Close(fd)
		if fd, err = syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0); err != nil {
			return -1, err
		}
	}
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}
	if err == nil {
		err = syscall.SetNonblock(fd, true)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}
