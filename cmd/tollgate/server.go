package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
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
	AdminKey tollgate.Secret
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
	m.Metrics.Register(CacheCollector{Stats: m.Cache.Stats})
	m.limiter = ratelimit.New(ratelimit.Options{
		PerMinute: m.Config.Limits.AuthFailuresPerMinute, Burst: m.Config.Limits.AuthFailureBurst,
		Redis: m.redis, KeyPrefix: m.Config.Redis.KeyPrefix, Logger: m.Logger,
	})

	apiServer := &api.Server{
		Service:         m.Service,
		AdminKey:        m.AdminKey.Reveal(), // to the API server only, which compares operators' keys with it
		PublicURL:       m.Config.PublicURL,
		RegistryService: m.Config.Service,
		PackageRepos:    m.packageRepos(),
		Logger:          m.Logger,
		Limiter:         m.limiter,
		Metrics:         m.Metrics,
	}
	registry, err := m.edge(keys, tk)
	if err != nil {
		return err
	}
	pkgKeys, err := m.packageKeys()
	if err != nil {
		return err
	}
	var publicMetrics http.Handler
	if m.Config.Ops.PublicMetrics {
		publicMetrics = m.metricsHandler()
	}
	observer := &obs.Observer{Logger: m.Logger, Metrics: m.Metrics, TrustedProxies: m.Config.Ops.ParsedTrustedProxies()}
	mux := observer.Wrap(withConsole(m.consoleHandler(), dispatch(apiServer.Handler(), registry, publicMetrics, pkgKeys)))
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
	m.server = m.publicServer(mux)
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
		// Revealed to pgx only, which connects with it.
		return postgres.Open(ctx, dsn.Reveal())
	}
	return nil, fmt.Errorf("store.driver: unknown driver %q", c.Store.Driver)
}
