package config

import (
	"bytes"
	"strings"
	"testing"
)

// batchingWriter holds what it is given until Flush, like obs.LogSink
// before its delay runs out.
type batchingWriter struct{ held, out bytes.Buffer }

func (b *batchingWriter) Write(p []byte) (int, error) { return b.held.Write(p) }
func (b *batchingWriter) Flush() error {
	b.out.Write(b.held.Bytes())
	b.held.Reset()
	return nil
}

// On a batching writer a warning or an error is out when the call
// returns, with the info lines before it; info lines may wait.
func TestLoggerFlushesWarningsAtOnce(t *testing.T) {
	for _, format := range []string{LogJSON, LogText} {
		w := &batchingWriter{}
		log := LogConfig{Format: format, Level: LevelInfo}.NewLogger(w).With("component", "edge")
		log.Info("request one")
		if strings.Contains(w.out.String(), "request one") {
			t.Fatalf("%s: an info line was flushed on its own", format)
		}
		log.Warn("redis unreachable")
		got := w.out.String()
		if !strings.Contains(got, "request one") || !strings.Contains(got, "redis unreachable") || !strings.Contains(got, "component") {
			t.Fatalf("%s: after a warning the writer holds %q", format, got)
		}
		log.Error("store down")
		if !strings.Contains(w.out.String(), "store down") {
			t.Fatalf("%s: an error line waited", format)
		}
	}
}
