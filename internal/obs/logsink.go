package obs

import (
	"io"
	"sync"
	"time"
)

// LogSink batches the process's log lines into few writes. At thousands
// of requests a second one write(2) per access-log line is a tenth of
// tollgate's CPU; the sink keeps lines in memory and writes them out when
// LogSinkBuffer bytes are waiting or LogSinkDelay after the first of them,
// whichever comes first. Lines keep their order. The logger built on it
// (config.LogConfig.NewLogger) flushes at once after a warning or an
// error, and the process flushes before it exits; what a crash of the
// whole process can lose is the last LogSinkDelay of info lines.
type LogSink struct {
	w io.Writer

	mu      sync.Mutex
	buf     []byte
	pending bool // a flush is scheduled
	err     error
}

// The sink's bounds.
const (
	LogSinkBuffer = 64 << 10
	LogSinkDelay  = 100 * time.Millisecond
)

// NewLogSink returns a sink writing to w.
func NewLogSink(w io.Writer) *LogSink { return &LogSink{w: w} }

// Write queues p (one log record: slog handlers write each whole). It
// reports the last error writing out, once.
func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	if len(s.buf) >= LogSinkBuffer {
		s.flushLocked()
	} else if !s.pending {
		s.pending = true
		time.AfterFunc(LogSinkDelay, s.timed)
	}
	err := s.err
	s.err = nil
	return len(p), err
}

func (s *LogSink) timed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = false
	s.flushLocked()
}

// Flush writes out what is waiting.
func (s *LogSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
	err := s.err
	s.err = nil
	return err
}

func (s *LogSink) flushLocked() {
	if len(s.buf) == 0 {
		return
	}
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
	}
	if cap(s.buf) > 4*LogSinkBuffer {
		s.buf = nil // one burst of huge lines need not stay allocated
	} else {
		s.buf = s.buf[:0]
	}
}
