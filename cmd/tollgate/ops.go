package main

// The ops listener: metrics, liveness and readiness, off the load balancer.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// Readiness probe deadlines: each dependency gets its own, and they are
// probed at once, so a hanging store cannot spend the others' budget
// (the probe's own timeout is 3s).
const (
	readyStoreTimeout    = 1500 * time.Millisecond
	readyRedisTimeout    = 500 * time.Millisecond
	readyUpstreamTimeout = 1500 * time.Millisecond
)

// serveReady answers whether this replica should get traffic, and lists
// the state of what it depends on (store, Redis, upstream).
//
// /readyz means "this replica may be sent new requests": only what sets
// this replica apart from the others makes it unready, and today that is
// one thing: it is shutting down. A dependency shared by every replica
// (the store, Redis, the upstream) never does, however long it is down:
// all replicas would flip at the same instant and empty the Service,
// turning what tollgate rides out (known tokens served from cache while
// the store is down, Redis optional, the upstream's own errors passed on)
// into connection errors for everyone. That includes the store past
// cache.max_stale (unready at the same instant on every replica, since
// they share it). Those failures show in the body, in the metrics
// (tollgate_cache_mode, tollgate_redis_up, tollgate_upstream_errors_total)
// and in the alerts of docs/operations.md. The body never holds a secret.
func (m *Main) serveReady(w http.ResponseWriter, r *http.Request) {
	ready := !m.draining.Load()
	var store, rds, up string
	var wg sync.WaitGroup
	probe := func(out *string, timeout time.Duration, ping func(context.Context) error, ok func() string, bad func() string) {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			if ping(ctx) != nil {
				*out = bad()
			} else {
				*out = ok()
			}
		})
	}
	now := time.Now()
	probe(&store, readyStoreTimeout, func(ctx context.Context) error {
		if st := m.Store; st != nil {
			return st.Ping(ctx)
		}
		return errors.New("no store")
	}, func() string {
		m.storeDownSince.Store(0)
		return "store: ok"
	}, func() string {
		m.storeDownSince.CompareAndSwap(0, now.UnixNano())
		down := now.Sub(time.Unix(0, m.storeDownSince.Load()))
		line := "store: unreachable for " + down.Round(time.Second).String()
		if down >= m.Config.Cache.MaxStale.Duration() {
			line += " (past cache.max_stale: only tokens confirmed since are served)"
		}
		return line
	})
	if m.redis != nil {
		probe(&rds, readyRedisTimeout, func(ctx context.Context) error { return m.redis.Ping(ctx).Err() },
			func() string { return "redis: ok" }, func() string { return "redis: unreachable" })
	}
	if m.upstream != nil {
		probe(&up, readyUpstreamTimeout, m.upstream.Ping,
			func() string { return "upstream registry: ok" }, func() string { return "upstream registry: unreachable" })
	}
	wg.Wait()
	var lines []string
	if ready {
		lines = append(lines, "ready")
	} else {
		lines = append(lines, "shutting down")
	}
	if m.Cache != nil {
		lines = append(lines, "cache: "+string(m.Cache.Stats().Mode))
	}
	for _, l := range []string{store, rds, up} {
		if l != "" {
			lines = append(lines, l)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, strings.Join(lines, "\n")+"\n")
}
