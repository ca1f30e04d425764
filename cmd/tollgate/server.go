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
	"github.com/tollgate/tollgate/quota"
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
	inflight  atomic.Int64 // requests in the public server's handler
	done      chan error
	usage     usageWiring    // pull insight (usage_wiring.go)
	refusals  refusalWiring  // refused attempts (refusals_wiring.go)
	jobs      jobWiring      // background jobs, one replica each (jobs_wiring.go)
	quota     *quota.Counter // capped tokens' months, for the edge and the console
}

// Run opens the store (applying migrations), loads the keys, builds the
// handlers and starts serving. It returns once the listener is up.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = m.Config.Log.NewLogger(logOut)
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
	if m.Store, err = openStore(ctx, m.Config, m.Logger); err != nil {
		return err
	}
	m.Service = tollgate.NewService(m.Store, tk)
	m.Metrics = obs.NewMetrics()
	if err := m.startCache(); err != nil {
		return err
	}
	m.Metrics.Register(CacheCollector{Stats: m.Cache.Stats})
	if err := m.startNotify(ctx); err != nil { // notify.go
		return err
	}
	m.startJobs() // jobs_wiring.go
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
	if err := m.startUsage(); err != nil {
		return err
	}
	m.startRefusals() // refusals_wiring.go
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
	// The goroutine keeps its own copies: Close may run as soon as Run
	// returns, and clears the fields.
	srv, done, tlsCfg := m.publicServer(mux), make(chan error, 1), m.Config.TLS
	m.server, m.done = srv, done
	go func() {
		var err error
		if tlsCfg.Enabled() {
			err = srv.ServeTLS(ln, tlsCfg.CertFile, tlsCfg.KeyFile)
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
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

// Close stops accepting, lets requests in flight finish (up to
// ops.shutdown_timeout) and closes the store. Requests still running then
// are cut, logged as "N streams cut", and Close returns a *drainCutError
// (exit status exitDrainCut).
func (m *Main) Close() error {
	var errs []error
	m.draining.Store(true)
	if m.server != nil {
		timeout := m.Config.Ops.ShutdownTimeout.Duration()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := m.server.Shutdown(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			n := m.inflight.Load()
			m.server.Close() // cuts the connections still streaming
			if m.Logger != nil {
				m.Logger.Warn(fmt.Sprintf("shutdown: drain outlived ops.shutdown_timeout, %d streams cut", n), "streams_cut", n, "shutdown_timeout", timeout)
			}
			err = &drainCutError{streams: n, timeout: timeout}
		}
		errs = append(errs, err)
		m.server = nil
	}
	m.stopNotify() // notify.go
	m.stopJobs()   // jobs_wiring.go
	if m.stopCache != nil {
		m.stopCache()
		<-m.cacheDone
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.Cache.Close(ctx)) // the last usage write
		cancel()
		m.stopCache = nil
	}
	errs = append(errs, m.stopUsage()) // the last pull aggregates, before the store closes
	errs = append(errs, m.stopRefusals())
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

// exitDrainCut is the exit status of a serve whose drain outlived
// ops.shutdown_timeout: it stopped, but cut requests in flight.
const exitDrainCut = 3

// drainCutError says that a shutdown cut requests still in flight.
type drainCutError struct {
	streams int64
	timeout time.Duration
}

func (e *drainCutError) Error() string {
	return fmt.Sprintf("shutdown: drain outlived ops.shutdown_timeout (%s): %d streams cut", e.timeout, e.streams)
}

func (e *drainCutError) ExitCode() int { return exitDrainCut }

// openStore opens the configured store, never returning a typed nil in
// the interface (Close would call a method on a nil *DB). An unreachable
// PostgreSQL is retried with back-off for store.postgres.connect_timeout
// (each attempt bounded by it as well, so a blackholed server cannot hang
// start-up), then start-up fails with one line that names the reason.
func openStore(ctx context.Context, c *config.Config, log *slog.Logger) (tollgate.Store, error) {
	switch c.Store.Driver {
	case config.DriverSQLite:
		if err := os.MkdirAll(filepath.Dir(c.Store.SQLite.Path), 0o700); err != nil {
			return nil, fmt.Errorf("store.sqlite.path: %w", err)
		}
		db, err := sqlite.Open(ctx, c.Store.SQLite.Path)
		if err != nil {
			return nil, err
		}
		return db, nil
	case config.DriverPostgres:
		dsn, err := c.PostgresDSN()
		if err != nil {
			return nil, err
		}
		// Revealed to pgx only, which connects with it.
		db, err := openPostgres(ctx, dsn.Reveal(), c.Store.Postgres, log)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	return nil, fmt.Errorf("store.driver: unknown driver %q", c.Store.Driver)
}

// openPostgres retries postgres.OpenWith while the server is unreachable
// (EUNAVAILABLE), from 250 ms doubling to 5 s between attempts, for
// connect_timeout in all. Any other error (a bad DSN, a failed migration)
// ends it at once. The error names what happened without the DSN (pgx's
// connect errors name host, user and database, never the password).
func openPostgres(ctx context.Context, dsn string, pc config.PostgresConfig, log *slog.Logger) (*postgres.DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := pc.ConnectTimeout.Duration()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	opts := postgres.Options{MaxConns: pc.MaxConns, ConnectTimeout: timeout}
	start := time.Now()
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// pgx bounds the connection itself (and says so); this bounds the
		// migrations that follow, with some slack for their lock.
		actx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
		db, err := postgres.OpenWith(actx, dsn, opts)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("store: PostgreSQL reachable", "attempts", attempt)
			}
			return db, nil
		}
		reason := storeReason(err)
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("store: start-up stopped while waiting for PostgreSQL (%s): %s", attempts(attempt), reason)
		case tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE:
			return nil, fmt.Errorf("store: %s", reason)
		case time.Since(start)+wait > timeout:
			return nil, fmt.Errorf("store: PostgreSQL unreachable, gave up after %s (%s, store.postgres.connect_timeout %s): %s",
				time.Since(start).Round(100*time.Millisecond), attempts(attempt), timeout, reason)
		}
		log.Warn("store: PostgreSQL unreachable, retrying", "attempt", attempt, "retry_in", wait, "err", reason)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("store: start-up stopped while waiting for PostgreSQL (%s): %s", attempts(attempt), reason)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// storeReason is the cause of a store error for the operator: the
// driver's text, not the client message of a *tollgate.Error.
func storeReason(err error) string {
	var te *tollgate.Error
	if errors.As(err, &te) {
		if te.Code == tollgate.EUNAVAILABLE && te.Err != nil {
			return te.Err.Error()
		}
		if te.Err != nil {
			return te.Message + ": " + te.Err.Error()
		}
		return te.Message
	}
	return err.Error()
}
