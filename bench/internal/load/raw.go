package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RunRaw is Run with a driver that costs the CPUs it shares with the
// target little more than wrk does: each connection writes req's bytes,
// prepared once, and reads the answer's status line, headers and
// Content-Length body itself. It exists for HEAD, which wrk (4.1) cannot
// drive, and takes only answers with a Content-Length (or HEAD answers);
// a chunked answer counts as an error.
func RunRaw(ctx context.Context, conns int, d time.Duration, want int, req *http.Request) Result {
	return RunRawAt(ctx, conns, d, 0, want, req)
}

// RunRawAt is RunRaw offering rate requests a second in all (0: as fast
// as answers come), spread evenly over the connections, as wrk2 does: a
// request is due at its time whether or not the previous answer was late,
// and its latency counts from when it was due, so a stall shows in the
// percentiles instead of lowering the rate the run asks for.
func RunRawAt(ctx context.Context, conns int, d time.Duration, rate float64, want int, req *http.Request) Result {
	wire, head := rawRequest(req)

	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var t tally
	var wg sync.WaitGroup
	start := time.Now()
	var every time.Duration // between one connection's requests
	if rate > 0 {
		every = time.Duration(float64(conns) / rate * float64(time.Second))
	}
	for i := range conns {
		wg.Go(func() {
			// Connections start staggered over one interval.
			due := start.Add(every * time.Duration(i) / time.Duration(conns))
			var lat []time.Duration
			var n, errs int
			var first string
			fail := func(err error) {
				errs++
				if first == "" {
					first = err.Error()
				}
			}
			var c net.Conn
			var br *bufio.Reader
			for ctx.Err() == nil {
				if c == nil {
					var err error
					if c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", req.URL.Host); err != nil {
						if ctx.Err() == nil {
							n++
							fail(err)
						}
						continue
					}
					br = bufio.NewReaderSize(c, 64<<10)
					// This connection's own: c is set to nil when an
					// exchange fails, and the deadline may come after.
					conn := c
					stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
					defer stop()
				}
				t0 := time.Now()
				if every > 0 {
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
					t0 = due
					due = due.Add(every)
				}
				status, err := exchange(c, br, wire, head)
				if ctx.Err() != nil {
					break // cut by the deadline: not a sample
				}
				n++
				lat = append(lat, time.Since(t0))
				switch {
				case err != nil:
					fail(err)
					c.Close()
					c = nil
				case status != want:
					fail(fmt.Errorf("status %d", status))
				}
			}
			if c != nil {
				c.Close()
			}
			t.add(lat, n, errs, first)
		})
	}
	wg.Wait()
	return t.result(start)
}

// rawRequest is req on the wire, and whether it is a HEAD.
func rawRequest(req *http.Request) ([]byte, bool) {
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), req.URL.Host)
	req.Header.Write(&raw)
	raw.WriteString("\r\n")
	return raw.Bytes(), req.Method == http.MethodHead
}

var errChunked = errors.New("an answer without Content-Length (chunked): RunRaw cannot read it")

// exchange sends one request and reads its whole answer.
func exchange(c net.Conn, br *bufio.Reader, wire []byte, head bool) (int, error) {
	if _, err := c.Write(wire); err != nil {
		return 0, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := int64(-1)
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 { // the empty line
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if head || status == http.StatusNoContent || status == http.StatusNotModified {
		return status, nil
	}
	if length < 0 {
		return 0, errChunked
	}
	_, err = br.Discard(int(length))
	return status, err
}
