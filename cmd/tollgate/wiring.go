package main

// The wiring: how the cache, the edge and their metrics are built from the config.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/oidc"
	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/quota"
	"github.com/tollgate/tollgate/tokencache"
)

// startCache puts the token cache (and Redis, when configured) in front
// of the store and starts its background work: invalidation subscriber,
// batched usage writes.
func (m *Main) startCache() error {
	c := m.Config
	opts, err := c.RedisOptions()
	if err != nil {
		return err
	}
	if opts != nil {
		redis.SetLogger(redisLogger{m.Logger})
		m.redis = redis.NewUniversalClient(opts)
	}
	m.Cache, err = tokencache.New(tokencache.Options{
		Store:         m.Store,
		Redis:         m.redis,
		KeyPrefix:     c.Redis.KeyPrefix,
		Logger:        m.Logger,
		L1Size:        c.Cache.L1Size,
		L1TTL:         c.Cache.L1TTL.Duration(),
		RedisTTL:      c.Cache.RedisTTL.Duration(),
		NegativeTTL:   c.Cache.NegativeTTL.Duration(),
		NegativeSize:  c.Cache.NegativeSize,
		MaxStale:      c.Cache.MaxStale.Duration(),
		UsageInterval: c.Cache.UsageInterval.Duration(),
		LogRetention:  c.Cache.InvalidationRetention.Duration(),
	})
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	m.Service.Changed = m.Cache.Invalidate
	ctx, cancel := context.WithCancel(context.Background())
	m.stopCache, m.cacheDone = cancel, make(chan error, 1)
	go func() { m.cacheDone <- m.Cache.Run(ctx) }()
	return nil
}

// redisLogger sends go-redis's own messages (dial retries) to the log at
// debug level: the cache already logs Redis going away and coming back.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Debug("redis: " + fmt.Sprintf(format, v...))
}

// manifestCacheCollectors exposes the manifest cache's counters.
func manifestCacheCollectors(stats func() proxy.ManifestCacheStats) []prometheus.Collector {
	counter := func(name, help string, v func(proxy.ManifestCacheStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(stats())) })
	}
	return []prometheus.Collector{
		counter("tollgate_manifest_cache_hits_total", "Manifest requests answered from the manifest cache.", func(s proxy.ManifestCacheStats) uint64 { return s.Hits }),
		counter("tollgate_manifest_cache_misses_total", "Cacheable manifest requests the manifest cache could not answer.", func(s proxy.ManifestCacheStats) uint64 { return s.Misses }),
		counter("tollgate_manifest_cache_evictions_total", "Entries evicted from the manifest cache to stay within its byte bound.", func(s proxy.ManifestCacheStats) uint64 { return s.Evictions }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tollgate_manifest_cache_bytes", Help: "Bytes held by the manifest cache."}, func() float64 { return float64(stats().Bytes) }),
	}
}

// jwtReuseBytes bounds the signed JWTs kept for reuse (a few KiB each).
const jwtReuseBytes = 8 << 20

// edge builds the one front door: token endpoint, JWTs, the reverse
// proxy to the upstream registry (when one is configured) and the package
// routes, all on one core.
func (m *Main) edge(keys *config.Keys, tk *tollgate.Keys) (http.Handler, error) {
	c := m.Config
	signer, err := authz.NewSigner(keys.Signing, c.PublicURL, c.Tokens.JWTLifetime.Duration(), time.Now)
	if err != nil {
		return nil, fmt.Errorf("keys.jwt_signing_key_file: %w", err)
	}
	signer.EnableReuse(jwtReuseBytes)
	jwks, err := authz.JWKS(keys.Verification)
	if err != nil {
		return nil, err
	}
	m.quota = quota.New(quota.Options{Redis: m.redis, KeyPrefix: c.Redis.KeyPrefix, Logger: m.Logger})
	o := proxy.Options{
		Lookup:     m.Cache,
		Metrics:    m.Metrics,
		Limiter:    m.limiter,
		Usage:      m.Cache,
		Keys:       tk,
		Signer:     signer,
		Verifier:   authz.NewVerifier(keys.Verification, c.PublicURL, c.Service, c.Tokens.JWTLeeway.Duration(), time.Now),
		JWKS:       jwks,
		PublicURL:  c.PublicURL,
		Service:    c.Service,
		Anonymous:  c.Anonymous.Repositories,
		WarnBefore: c.Notify.WarnBefore.Duration(),
		Quota:      m.quota,
		Events:     m.usageSink(),
		Refusals:   bothRefusalSinks(m.refusalSink(), m.notifySink()), // refusals_wiring.go, notify.go
		Logger:     m.Logger,
	}
	if c.OIDC.Enabled {
		v := oidc.New(oidc.Options{AllowLoopback: c.OIDC.AllowLoopbackIssuers, Timeout: c.OIDC.FetchTimeout.Duration(),
			MinInterval: c.OIDC.MinRefetch.Duration(), Leeway: c.Tokens.JWTLeeway.Duration()})
		o.Exchanger = oidc.NewExchanger(v, m.Service, m.Logger)
	}
	if c.Upstream.URL != "" {
		uo := proxy.UpstreamOptions{URL: c.Upstream.URL, Username: c.Upstream.Username, PublicURL: c.PublicURL, Logger: m.Logger, Metrics: m.Metrics,
			ManifestCacheBytes: c.Cache.ManifestBytes, ManifestTagTTL: c.Cache.ManifestTagTTL.Duration()}
		pw, err := c.UpstreamPassword()
		if err != nil {
			return nil, err
		}
		// Revealed to the upstream transport, which sends it to the
		// upstream registry only (Basic, or to get its bearer tokens).
		uo.Password = pw.Reveal()
		if c.Upstream.CAFile != "" {
			if uo.TLS, err = caTLSConfig("upstream.ca_file", c.Upstream.CAFile); err != nil {
				return nil, err
			}
		}
		for _, mp := range c.Upstream.ParsedMappings() {
			uo.Mappings = append(uo.Mappings, proxy.Mapping{Public: mp[0], Upstream: mp[1]})
		}
		if o.Upstream, err = proxy.NewUpstream(uo); err != nil {
			return nil, err
		}
		m.upstream = o.Upstream
		m.Metrics.Register(manifestCacheCollectors(o.Upstream.ManifestCacheStats)...)
	}
	if o.Packages, err = m.packageOptions(); err != nil {
		return nil, err
	}
	return proxy.New(o)
}

// dispatch routes by path prefix without http.ServeMux, which would
// redirect unclean registry paths instead of refusing them.
func dispatch(apiHandler, registry, metrics, keys http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/api/"):
			apiHandler.ServeHTTP(w, r)
		case strings.HasPrefix(p, "/keys/"):
			keys.ServeHTTP(w, r)
		case p == "/healthz":
			io.WriteString(w, "ok\n")
		case p == "/metrics" && metrics != nil:
			metrics.ServeHTTP(w, r)
		default:
			registry.ServeHTTP(w, r)
		}
	})
}
