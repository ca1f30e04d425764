package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/config"
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
	if err := m.startCache(); err != nil {
		return err
	}

	apiServer := &api.Server{
		Service:         m.Service,
		AdminKey:        m.AdminKey,
		PublicURL:       m.Config.PublicURL,
		RegistryService: m.Config.Service,
		Logger:          m.Logger,
	}
	registry, err := m.registry(keys, tk)
	if err != nil {
		return err
	}
	mux := dispatch(apiServer.Handler(), registry)

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
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	for _, f := range m.OnClose {
		errs = append(errs, f())
	}
	m.OnClose = nil
	return errors.Join(errs...)
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

// registry builds the image front door: token endpoint, JWTs, and the
// reverse proxy to the upstream (when one is configured).
func (m *Main) registry(keys *config.Keys, tk *tollgate.Keys) (http.Handler, error) {
	c := m.Config
	signer, err := authz.NewSigner(keys.Signing, c.PublicURL, c.Tokens.JWTLifetime.Duration(), time.Now)
	if err != nil {
		return nil, fmt.Errorf("keys.jwt_signing_key_file: %w", err)
	}
	jwks, err := authz.JWKS(keys.Verification)
	if err != nil {
		return nil, err
	}
	g := &proxy.Registry{
		Lookup:    m.Cache,
		Usage:     m.Cache,
		Keys:      tk,
		Signer:    signer,
		Verifier:  authz.NewVerifier(keys.Verification, c.PublicURL, c.Service, c.Tokens.JWTLeeway.Duration(), time.Now),
		JWKS:      jwks,
		PublicURL: c.PublicURL,
		Service:   c.Service,
		Anonymous: c.Anonymous.Repositories,
		Logger:    m.Logger,
	}
	if c.Upstream.URL != "" {
		opts := proxy.UpstreamOptions{URL: c.Upstream.URL, Username: c.Upstream.Username, Logger: m.Logger}
		if opts.Password, err = c.UpstreamPassword(); err != nil {
			return nil, err
		}
		if c.Upstream.CAFile != "" {
			pem, err := os.ReadFile(c.Upstream.CAFile)
			if err != nil {
				return nil, fmt.Errorf("upstream.ca_file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("upstream.ca_file: no PEM certificate in %s", c.Upstream.CAFile)
			}
			opts.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		for _, mp := range c.Upstream.ParsedMappings() {
			opts.Mappings = append(opts.Mappings, proxy.Mapping{Public: mp[0], Upstream: mp[1]})
		}
		if g.Upstream, err = proxy.NewUpstream(opts); err != nil {
			return nil, err
		}
	}
	return g.Handler(), nil
}

// dispatch routes by path prefix without http.ServeMux, which would
// redirect unclean registry paths instead of refusing them.
func dispatch(apiHandler, registry http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/api/"):
			apiHandler.ServeHTTP(w, r)
		case p == "/healthz":
			io.WriteString(w, "ok\n")
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
