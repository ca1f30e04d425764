package config

import (
	"context"
	"io"
	"log/slog"
	"sync"
)

// Log formats and levels.
const (
	LogJSON = "json"
	LogText = "text"

	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// LogConfig configures the process's log.
type LogConfig struct {
	// Format is "json" (default; for log collectors) or "text" (for people).
	Format string `yaml:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `yaml:"level"`
}

// SlogLevel returns Level as a slog.Level (info when unknown; Validate
// rejects unknown levels).
func (l LogConfig) SlogLevel() slog.Level {
	switch l.Level {
	case LevelDebug:
		return slog.LevelDebug
	case LevelWarn:
		return slog.LevelWarn
	case LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewLogger returns a logger writing to w in the configured format and
// level. When w batches its writes (it has a Flush method, like
// obs.LogSink), warnings and errors are flushed at once: only info and
// debug lines wait.
func (l LogConfig) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	// slog's handler serializes its writes; plainHandler's are whole
	// lines too, under a lock of its own.
	var h slog.Handler
	if l.Format == LogText {
		h = plainHandler{std: slog.NewTextHandler(w, opts), w: w, mu: new(sync.Mutex)}
	} else {
		h = plainHandler{std: slog.NewJSONHandler(w, opts), w: w, mu: new(sync.Mutex), json: true}
	}
	if f, ok := w.(flusher); ok {
		h = flushingHandler{Handler: h, f: f}
	}
	return slog.New(h)
}

type flusher interface{ Flush() error }

// flushingHandler flushes its writer after every record of level warning
// or above.
type flushingHandler struct {
	slog.Handler
	f flusher
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.f.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithAttrs(as), f: h.f}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithGroup(name), f: h.f}
}

func (l LogConfig) validate(p *problems) {
	switch l.Format {
	case LogJSON, LogText:
	default:
		p.add("log.format", "must be json or text")
	}
	switch l.Level {
	case LevelDebug, LevelInfo, LevelWarn, LevelError:
	default:
		p.add("log.level", "must be debug, info, warn or error")
	}
}
