package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/config"
)

// publicServer is the server of the public listener, around the handler
// of every route (h).
//
// Its timeouts bound each phase a client controls, never the exchange as
// a whole: a blob download takes as long as the client's link needs, so
// there is no ReadTimeout and no WriteTimeout. A client gets
// limits.header_timeout to send its headers (and the TLS handshake), then
// limits.body_timeout to send the body it declared (bodyDeadline), then
// IdleTimeout between requests. A connection that sends headers and then
// nothing is closed by one of them, on every route.
func (m *Main) publicServer(h http.Handler) *http.Server {
	l := m.Config.Limits
	// Requests in the handler are counted, so that a drain that runs out
	// of time can say how many it cut.
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inflight.Add(1)
		defer m.inflight.Add(-1)
		h.ServeHTTP(w, r)
	})
	return &http.Server{
		Handler:           bodyDeadline(counted, orDefault(l.BodyTimeout, 30*time.Second)),
		ReadHeaderTimeout: orDefault(l.HeaderTimeout, 10*time.Second),
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
}

// bodyDeadline gives a request that declares a body (a Content-Length or
// chunked) d from the start of its handler to send all of it, whoever
// reads it. That covers the handler's reads and net/http's own: when a
// handler answers without reading the body, the server discards up to
// 256 KiB of it before writing the response, and without a deadline a
// client that never sends it holds that write, the handler and the
// connection for ever.
//
// The deadline is on the connection, so it must not outlive the body:
// net/http clears it when the body reaches EOF (its background read for
// the client going away starts there), and the next request's header
// timeout replaces it. A download after a body, or on the same
// connection later, is not cut.
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			// w is the server's own writer (this is the outermost
			// handler), which supports read deadlines over HTTP/1 and 2.
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		h.ServeHTTP(w, r)
	})
}

// orDefault is d, or def when d is 0 (unset).
func orDefault(d config.Duration, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d.Duration()
}
