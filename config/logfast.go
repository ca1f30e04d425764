package config

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// plainHandler writes the records every request logs (the access line: a
// dozen short string, integer and duration attributes) byte for byte as
// slog's own text or JSON handler would, at a fraction of the cost: at
// twenty thousand requests a second slog's generic path is a tenth of
// the CPU. Anything outside that shape — a group, a logger made With
// attributes, a value of another kind, text that is not printable ASCII
// or needs JSON escapes beyond \" and \\, a time slog would not print —
// goes to slog's handler unchanged. A test holds the two byte-identical.
type plainHandler struct {
	std  slog.Handler // slog's handler on the same writer: every other record
	json bool
	mu   *sync.Mutex // one write at a time, like slog's handlers
	w    io.Writer
}

var plainBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h plainHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.std.Enabled(ctx, l) }
func (h plainHandler) WithAttrs(as []slog.Attr) slog.Handler          { return h.std.WithAttrs(as) }
func (h plainHandler) WithGroup(name string) slog.Handler             { return h.std.WithGroup(name) }

func (h plainHandler) Handle(ctx context.Context, r slog.Record) error {
	bp := plainBufs.Get().(*[]byte)
	defer plainBufs.Put(bp)
	b, ok := h.format((*bp)[:0], r)
	*bp = b
	if !ok {
		return h.std.Handle(ctx, r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	return err
}

// format appends r's line, or reports false when r is not plain.
func (h plainHandler) format(b []byte, r slog.Record) ([]byte, bool) {
	if r.Time.IsZero() || r.Time.Year() < 0 || r.Time.Year() >= 10000 || !plainText(r.Message) {
		return b, false
	}
	if h.json {
		b = append(b, `{"time":"`...)
		b = r.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","level":"`...)
		b = append(b, r.Level.String()...)
		b = append(b, `","msg":`...)
		b = appendJSONString(b, r.Message)
	} else {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, r.Time)
		b = append(b, " level="...)
		b = append(b, r.Level.String()...)
		b = append(b, " msg="...)
		b = appendTextString(b, r.Message)
	}
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		if !plainKey(a.Key) {
			ok = false
			return false
		}
		if h.json {
			b = append(b, `,"`...)
			b = append(b, a.Key...)
			b = append(b, `":`...)
		} else {
			b = append(b, ' ')
			b = append(b, a.Key...)
			b = append(b, '=')
		}
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			s := v.String()
			if !plainText(s) {
				ok = false
				return false
			}
			if h.json {
				b = appendJSONString(b, s)
			} else {
				b = appendTextString(b, s)
			}
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindUint64:
			b = strconv.AppendUint(b, v.Uint64(), 10)
		case slog.KindBool:
			b = strconv.AppendBool(b, v.Bool())
		case slog.KindDuration:
			if h.json {
				b = strconv.AppendInt(b, int64(v.Duration()), 10) // as json.Marshal
			} else {
				b = append(b, v.Duration().String()...)
			}
		default:
			ok = false
			return false
		}
		return true
	})
	if !ok {
		return b, false
	}
	if h.json {
		b = append(b, '}')
	}
	return append(b, '\n'), true
}

// plainText: printable ASCII, where slog's quoting and JSON escaping are
// strconv.Quote's and \" \\ alone.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// plainKey: a key slog writes as it is in both formats.
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// appendTextString writes plain s as slog's text handler does: as it is,
// or quoted when empty or holding a space, '=' or '"'.
func appendTextString(b []byte, s string) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ' ' || c == '=' || c == '"' {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}

// appendJSONString writes plain s as a JSON string, as slog does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendRFC3339Millis is slog's text time: RFC 3339, milliseconds always
// three digits.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}
