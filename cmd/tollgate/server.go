package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/store/postgres"
	"github.com/tollgate/tollgate/store/sqlite"
	"github.com/tollgate/tollgate/tokencache"
)

// Main is the whole server: a test runs it on port 0 and talks to URL.
// Run opens everything and listens before it returns; Close drains.
type Main struct {
	Config *config.Config
	Logger *slog.Logger
	// Listener, if set, is used instead of listening on Config.Listen.
	Listener net.Listener
	// OnClose runs after the server and store are closed (dev's registry).
	OnClose []func() error

	Store    tollgate.Store
	Service  *tollgate.Service
	AdminKey string
	// URL is the base URL the server listens on (not the public URL).
	URL string

	// Cache answers token lookups for the proxy (tokencache).
	Cache *tokencache.Cache
	// Metrics holds every Prometheus collector of this server.
	Metrics *obs.Metrics
	// OpsListener, if set, is used instead of listening on ops.listen;
	// OpsURL is the ops listener's base URL ("" without one).
	OpsListener net.Listener
	OpsURL      string

	upstream       *proxy.Upstream
	limiter        *ratelimit.Limiter // failed authentications per client, shared by every route
	draining       atomic.Bool
	storeDownSince atomic.Int64 // unix ns of the first failed store ping, 0 while it answers
	opsServer      *http.Server

	redis     redis.UniversalClient
	stopCache context.CancelFunc
	cacheDone chan error
	server    *http.Server
	done      chan error
	usage     usageWiring // pull insight (usage_wiring.go)
}

// Run opens the store (applying migrations), loads the keys, builds the
// handlers and starts serving. It returns once the listener is up.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = m.Config.Log.NewLogger(os.Stderr)
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	keys, err := config.LoadKeys(m.Config.Keys)
	if err != nil {
		return err
	}
	tk, err := tollgate.NewKeys(keys.Lookup, keys.Seal)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if m.AdminKey, err = m.Config.AdminKey(); err != nil {
		return err
	}
	if m.Store, err = openStore(ctx, m.Config); err != nil {
		return err
	}
	m.Service = tollgate.NewService(m.Store, tk)
	m.Metrics = obs.NewMetrics()
	if err := m.startCache(); err != nil {
		return err
	}
	m.Metrics.Register(obs.CacheCollector{Stats: m.Cache.Stats})
	m.limiter = ratelimit.New(ratelimit.Options{
		PerMinute: m.Config.Limits.AuthFailuresPerMinute, Burst: m.Config.Limits.AuthFailureBurst,
		Redis: m.redis, KeyPrefix: m.Config.Redis.KeyPrefix, Logger: m.Logger,
	})

	apiServer := &api.Server{
		Service:         m.Service,
		AdminKey:        m.AdminKey,
		PublicURL:       m.Config.PublicURL,
		RegistryService: m.Config.Service,
		PackageRepos:    m.packageRepos(),
		Logger:          m.Logger,
		Limiter:         m.limiter,
		Metrics:         m.Metrics,
	}
	if err := m.startUsage(); err != nil {
		return err
	}
	registry, err := m.edge(keys, tk)
	if err != nil {
		return err
	}
	var publicMetrics http.Handler
	if m.Config.Ops.PublicMetrics {
		publicMetrics = m.metricsHandler()
	}
	observer := &obs.Observer{Logger: m.Logger, Metrics: m.Metrics, TrustedProxies: m.Config.Ops.ParsedTrustedProxies()}
	mux := observer.Wrap(withConsole(m.consoleHandler(), dispatch(apiServer.Handler(), registry, publicMetrics)))
	if err := m.startOps(); err != nil {
		return err
	}

	ln := m.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", m.Config.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	scheme := "http"
	if m.Config.TLS.Enabled() {
		scheme = "https"
	}
	m.URL = scheme + "://" + ln.Addr().String()
	m.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	m.done = make(chan error, 1)
	go func() {
		var err error
		if m.Config.TLS.Enabled() {
			err = m.server.ServeTLS(ln, m.Config.TLS.CertFile, m.Config.TLS.KeyFile)
		} else {
			err = m.server.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		m.done <- err
	}()
	m.Logger.Info("tollgate listening", "addr", ln.Addr().String(), "public_url", m.Config.PublicURL, "store", m.Config.Store.Driver)
	return nil
}

// Wait blocks until ctx is done or the server fails.
func (m *Main) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-m.done:
		return err
	}
}

// Close stops accepting, lets requests in flight finish (up to 30 s) and
// closes the store.
func (m *Main) Close() error {
	var errs []error
	m.draining.Store(true)
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.Ops.ShutdownTimeout.Duration())
		errs = append(errs, m.server.Shutdown(ctx))
		cancel()
		m.server = nil
	}
	if m.stopCache != nil {
		m.stopCache()
		<-m.cacheDone
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.Cache.Close(ctx)) // the last usage write
		cancel()
		m.stopCache = nil
	}
	errs = append(errs, m.stopUsage()) // the last pull aggregates, before the store closes
	if m.redis != nil {
		errs = append(errs, m.redis.Close())
		m.redis = nil
	}
	if m.Store != nil {
		errs = append(errs, m.Store.Close())
		m.Store = nil
	}
	if m.opsServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, m.opsServer.Shutdown(ctx))
		cancel()
		m.opsServer = nil
	}
	for _, f := range m.OnClose {
		errs = append(errs, f())
	}
	m.OnClose = nil
	return errors.Join(errs...)
}

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
	o := proxy.Options{
		Lookup:    m.Cache,
		Metrics:   m.Metrics,
		Limiter:   m.limiter,
		Usage:     m.Cache,
		Keys:      tk,
		Signer:    signer,
		Verifier:  authz.NewVerifier(keys.Verification, c.PublicURL, c.Service, c.Tokens.JWTLeeway.Duration(), time.Now),
		JWKS:      jwks,
		PublicURL: c.PublicURL,
		Service:   c.Service,
		Anonymous: c.Anonymous.Repositories,
		Logger:    m.Logger,
		Events:    m.usageSink(),
	}
	if c.Upstream.URL != "" {
		uo := proxy.UpstreamOptions{URL: c.Upstream.URL, Username: c.Upstream.Username, PublicURL: c.PublicURL, Logger: m.Logger, Metrics: m.Metrics,
			ManifestCacheBytes: c.Cache.ManifestBytes, ManifestTagTTL: c.Cache.ManifestTagTTL.Duration()}
		if uo.Password, err = c.UpstreamPassword(); err != nil {
			return nil, err
		}
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
func dispatch(apiHandler, registry, metrics http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/api/"):
			apiHandler.ServeHTTP(w, r)
		case p == "/healthz":
			io.WriteString(w, "ok\n")
		case p == "/metrics" && metrics != nil:
			metrics.ServeHTTP(w, r)
		default:
			registry.ServeHTTP(w, r)
		}
	})
}

func openStore(ctx context.Context, c *config.Config) (tollgate.Store, error) {
	switch c.Store.Driver {
	case config.DriverSQLite:
		if err := os.MkdirAll(filepath.Dir(c.Store.SQLite.Path), 0o700); err != nil {
			return nil, fmt.Errorf("store.sqlite.path: %w", err)
		}
		return sqlite.Open(ctx, c.Store.SQLite.Path)
	case config.DriverPostgres:
		dsn, err := c.PostgresDSN()
		if err != nil {
			return nil, err
		}
		return postgres.Open(ctx, dsn)
	}
	return nil, fmt.Errorf("store.driver: unknown driver %q", c.Store.Driver)
}

func loadConfig(lookup env, path string) (*config.Config, error) {
	if path == "" {
		path = lookup.get("TOLLGATE_CONFIG")
	}
	if path == "" {
		return nil, errors.New("no config: give --config FILE or set TOLLGATE_CONFIG (or run `tollgate dev`)")
	}
	return config.Load(path, lookup)
}

func newServeCmd(lookup env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the server",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(lookup, path)
			if err != nil {
				return err
			}
			m := &Main{Config: cfg}
			if err := m.Run(c.Context()); err != nil {
				return err
			}
			err = m.Wait(c.Context())
			return errors.Join(err, m.Close())
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (default $TOLLGATE_CONFIG)")
	return cmd
}

func newMigrateCmd(lookup env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "migrate --config FILE",
		Short: "Apply the store's schema migrations and exit (serve also applies them at start)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(lookup, path)
			if err != nil {
				return err
			}
			st, err := openStore(c.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s store is up to date\n", cfg.Store.Driver)
			return st.Close()
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (default $TOLLGATE_CONFIG)")
	return cmd
}

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the server keys"}
	var dir string
	gen := &cobra.Command{
		Use:   "generate --dir DIR",
		Short: "Write a new JWT signing key, lookup key, sealing key and admin key into DIR",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if dir == "" {
				return tollgate.FieldError("dir", "required (--dir)")
			}
			if err := config.GenerateKeys(dir); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "keys written to %s (point keys.dir at it)\n", dir)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory to write the keys into (created 0700)")
	cmd.AddCommand(gen)
	return cmd
}
