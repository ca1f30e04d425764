package obs

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testenv"
)

// countingBuf counts the writes that reach it.
type countingBuf struct {
	testenv.Buffer
	mu     sync.Mutex
	writes int
}

func (c *countingBuf) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Buffer.Write(p)
}

func (c *countingBuf) Writes() int { c.mu.Lock(); defer c.mu.Unlock(); return c.writes }

// Lines written to the sink all arrive, in order, in far fewer writes than
// lines, without anyone flushing: a quiet server's last line is not held
// back.
func TestLogSinkBatchesAndDeliversEveryLineInOrder(t *testing.T) {
	out := &countingBuf{}
	s := NewLogSink(out)
	const n = 5000
	var want strings.Builder
	for i := range n {
		line := fmt.Sprintf("request %d %s\n", i, strings.Repeat("x", i%200))
		want.WriteString(line)
		if _, err := s.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	// No Flush: the delay writes the rest out.
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want.String() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the sink wrote %d of %d bytes", len(out.String()), want.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if w := out.Writes(); w > n/20 {
		t.Errorf("%d lines took %d writes; want batches", n, w)
	}
}

// Flush writes out at once what waits; a write error reaches a caller.
func TestLogSinkFlush(t *testing.T) {
	out := &countingBuf{}
	s := NewLogSink(out)
	s.Write([]byte("one\n"))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\n" {
		t.Fatalf("after Flush: %q", out.String())
	}
	bad := NewLogSink(failingWriter{})
	bad.Write([]byte("lost\n"))
	if err := bad.Flush(); err == nil {
		t.Fatal("Flush hid the write error")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }
