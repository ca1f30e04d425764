package upstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"

	"github.com/sirupsen/logrus"
)

// Distribution logs through logrus's process-wide standard logger (its
// dcontext package, which we cannot import, offers no other way in). So:
// logrus's own output is discarded once, for the whole process, and a single
// hook hands every entry to the slog.Logger of the registry it came from.
// Entries name their registry by the "instance.id" field, which distribution
// fills from the context value "instance.id" that Start puts on the app and
// request contexts.

var (
	logrusOnce sync.Once
	logSinks   sync.Map // instance id -> *slog.Logger
)

// routeLogs installs the hook (once) and returns a fresh instance id whose
// entries go to l; a nil l drops them.
func routeLogs(l *slog.Logger) string {
	logrusOnce.Do(func() {
		std := logrus.StandardLogger()
		std.SetOutput(io.Discard)
		std.SetFormatter(discardFormatter{})
		std.SetLevel(logrus.InfoLevel)
		std.AddHook(slogHook{})
	})
	b := make([]byte, 12)
	rand.Read(b)
	id := "tollgate-upstream-" + hex.EncodeToString(b)
	if l != nil {
		logSinks.Store(id, l)
	}
	return id
}

func unrouteLogs(id string) { logSinks.Delete(id) }

// discardFormatter skips formatting work for output nobody reads.
type discardFormatter struct{}

func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

type slogHook struct{}

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire logs every entry at debug: distribution reports a client's 404 as an
// error, which is routine for a registry and noise for tollgate's operator.
func (slogHook) Fire(e *logrus.Entry) error {
	id, _ := e.Data["instance.id"].(string)
	v, ok := logSinks.Load(id)
	if !ok {
		return nil
	}
	l := v.(*slog.Logger)
	ctx := context.Background()
	if !l.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		switch k {
		case "instance.id", "go.version":
		default:
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	attrs = append(attrs, slog.String("upstream.level", e.Level.String()))
	for _, k := range keys {
		switch val := e.Data[k].(type) {
		case error:
			attrs = append(attrs, slog.String(k, val.Error()))
		case fmt.Stringer:
			attrs = append(attrs, slog.String(k, val.String()))
		default:
			attrs = append(attrs, slog.Any(k, val))
		}
	}
	l.LogAttrs(ctx, slog.LevelDebug, e.Message, attrs...)
	return nil
}
