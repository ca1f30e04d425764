package config

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// render writes one record through slog's own handler and through
// plainHandler, in one format.
func render(t testing.TB, json bool, r slog.Record) (std, plain string) {
	var a, b bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	var sh slog.Handler = slog.NewTextHandler(&a, opts)
	if json {
		sh = slog.NewJSONHandler(&a, opts)
	}
	if err := sh.Handle(context.Background(), r.Clone()); err != nil {
		t.Fatal(err)
	}
	var ph slog.Handler = slog.NewTextHandler(&b, opts)
	if json {
		ph = slog.NewJSONHandler(&b, opts)
	}
	ph = plainHandler{std: ph, w: &b, mu: new(sync.Mutex), json: json}
	if err := ph.Handle(context.Background(), r.Clone()); err != nil {
		t.Fatal(err)
	}
	return a.String(), b.String()
}

func accessRecord(at time.Time, ua, path string, d time.Duration) slog.Record {
	r := slog.NewRecord(at, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("request_id", "13ac4ec82eb0c368"), slog.String("method", "GET"), slog.String("route", "token"),
		slog.String("path", path), slog.Int("status", 200), slog.Int64("bytes", 1148), slog.Duration("duration", d),
		slog.String("outcome", "complete"), slog.String("client_ip", "2001:db8::1"), slog.String("user_agent", ua),
		slog.String("token_id", "tok_0toDS9mZLrXmdi4f"), slog.String("account", "demo"), slog.Bool("x", true), slog.Uint64("u", 7))
	return r
}

// Every line plainHandler writes is byte for byte slog's, in both
// formats: the access line with user agents clients send, and odd text
// (quotes, '=', backslashes, spaces, empty, controls, non-ASCII, which it
// hands to slog), odd times and levels.
func TestPlainHandlerWritesWhatSlogWrites(t *testing.T) {
	at := time.Date(2026, 11, 29, 6, 5, 9, 995_000_000, time.UTC)
	uas := []string{"", "containerd/2.0.0", `docker/27.5.1 go/go1.22.10 git-commit/4c9b3b0 kernel/6.1.0 os/linux arch/amd64 UpstreamClient(Docker-Client/27.5.1 \(linux\))`,
		"Debian APT-HTTP/1.3 (2.6.1)", `a="b"`, "a=b", `back\slash`, "tab\there", "ünïcode", "bell\x07", "skopeo/1.13.3", "\x7f"}
	for _, json := range []bool{false, true} {
		for _, ua := range uas {
			for _, when := range []time.Time{at, at.Add(123456789), at.In(time.FixedZone("X", 3600)), at.Truncate(time.Second), time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)} {
				std, plain := render(t, json, accessRecord(when, ua, "/token", 1234567*time.Nanosecond))
				if std != plain {
					t.Errorf("json=%v ua=%q time=%v:\nslog:  %s\nplain: %s", json, ua, when, std, plain)
				}
			}
		}
		for _, lvl := range []slog.Level{slog.LevelDebug, slog.LevelWarn, slog.LevelError + 2} {
			r := slog.NewRecord(at, lvl, `msg with "quotes" and = sign`, 0)
			r.AddAttrs(slog.Any("any", []int{1}), slog.Group("g", slog.String("k", "v")))
			if std, plain := render(t, json, r); std != plain {
				t.Errorf("json=%v level %v:\nslog:  %s\nplain: %s", json, lvl, std, plain)
			}
			r = slog.NewRecord(time.Time{}, lvl, "no time", 0)
			if std, plain := render(t, json, r); std != plain {
				t.Errorf("json=%v zero time:\nslog:  %s\nplain: %s", json, std, plain)
			}
		}
	}
}

func FuzzPlainHandler(f *testing.F) {
	f.Add("containerd/2.0.0", "/v2/demo/hello/manifests/latest", int64(1234567), int64(1764396309995000000), false)
	f.Add(`a "b" = c \ d`, "", int64(-1), int64(0), true)
	f.Fuzz(func(t *testing.T, ua, path string, d, unixNano int64, json bool) {
		at := time.Unix(0, unixNano).UTC()
		if unixNano == 0 {
			at = time.Unix(1764396309, rand.Int64N(1e9)).UTC()
		}
		std, plain := render(t, json, accessRecord(at, ua, path, time.Duration(d)))
		if std != plain {
			t.Fatalf("json=%v ua=%q path=%q:\nslog:  %s\nplain: %s", json, ua, path, std, plain)
		}
	})
}

// BenchmarkAccessLine: one access line, slog's handler against
// plainHandler, to a discarding writer.
func BenchmarkAccessLine(b *testing.B) {
	r := accessRecord(time.Now(), "containerd/2.0.0", "/v2/demo/hello/manifests/latest", 41*time.Microsecond)
	for _, json := range []bool{false, true} {
		name := map[bool]string{false: "text", true: "json"}[json]
		var std slog.Handler = slog.NewTextHandler(discard{}, nil)
		if json {
			std = slog.NewJSONHandler(discard{}, nil)
		}
		b.Run(name+"/slog", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				std.Handle(context.Background(), r)
			}
		})
		plain := plainHandler{std: std, w: discard{}, mu: new(sync.Mutex), json: json}
		b.Run(name+"/plain", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				plain.Handle(context.Background(), r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
