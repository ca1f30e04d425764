package main

// The ops listener: metrics, liveness and readiness, off the load balancer.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (m *Main) metricsHandler() http.Handler {
	return promhttp.HandlerFor(m.Metrics.Registry, promhttp.HandlerOpts{})
}

// startOps serves /metrics, /healthz and /readyz on the ops listener.
func (m *Main) startOps() error {
	ln := m.OpsListener
	if ln == nil {
		if m.Config.Ops.Listen == "" {
			return nil
		}
		var err error
		if ln, err = net.Listen("tcp", m.Config.Ops.Listen); err != nil {
			return fmt.Errorf("ops.listen: %w", err)
		}
	}
	m.OpsURL = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", m.serveReady)
	m.opsServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go m.opsServer.Serve(ln)
	return nil
}

// serveReady answers whether this replica should get traffic, and lists
// the state of what it depends on (store, Redis, upstream).
//
// Only what sets this replica apart from the others makes it unready: it
// is shutting down, or it has not reached the store for longer than
// cache.max_stale (past that it cannot answer even known tokens). A shared
// dependency that is down for every replica at once does not: taking all
// of them out of the Service would turn the cache's bounded staleness and
// Redis being optional into a full outage. Such failures show in the body
// and the metrics. The body never holds a secret.
func (m *Main) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	ready := true
	var lines []string
	if m.draining.Load() {
		ready = false
		lines = append(lines, "shutting down")
	}
	now := time.Now()
	if st := m.Store; st == nil || st.Ping(ctx) != nil {
		since := m.storeDownSince.Load()
		if since == 0 {
			m.storeDownSince.CompareAndSwap(0, now.UnixNano())
			since = now.UnixNano()
		}
		down := now.Sub(time.Unix(0, since))
		if down >= m.Config.Cache.MaxStale.Duration() {
			ready = false
		}
		lines = append(lines, "store: unreachable for "+down.Round(time.Second).String())
	} else {
		m.storeDownSince.Store(0)
		lines = append(lines, "store: ok")
	}
	if m.redis != nil {
		if m.redis.Ping(ctx).Err() != nil {
			lines = append(lines, "redis: unreachable")
		} else {
			lines = append(lines, "redis: ok")
		}
	}
	if m.upstream != nil {
		if m.upstream.Ping(ctx) != nil {
			lines = append(lines, "upstream registry: unreachable")
		} else {
			lines = append(lines, "upstream registry: ok")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		lines = append([]string{"ready"}, lines...)
	}
	io.WriteString(w, strings.Join(lines, "\n")+"\n")
}
