package config

import (
	"io"
	"log/slog"
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
// level.
func (l LogConfig) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == LogText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
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
