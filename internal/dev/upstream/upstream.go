// Package upstream runs an in-process upstream OCI registry (distribution
// v3) for `tollgate dev` and for tests, seeds it with images and large
// blobs, and issues throw-away TLS certificates so tests can run it over
// HTTPS.
//
// It owns nothing tollgate decides: it is the thing behind the proxy. It can
// require HTTP Basic and records the requests that reach it, so tests can
// prove what tollgate forwards (its own upstream credentials, never the
// client's Authorization header).
package upstream

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"

	// Storage drivers, registered by import.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Options configures Start. The zero value is an in-memory, anonymous,
// plain-HTTP registry on a free loopback port.
type Options struct {
	// Dir is the filesystem storage root. Empty means in-memory storage,
	// which holds every blob in memory: use a Dir for large blobs.
	Dir string
	// Addr is the listen address; empty means 127.0.0.1:0.
	Addr string
	// Logger receives distribution's logs at debug level. Nil drops them.
	Logger *slog.Logger
	// BasicAuth, when set, makes every request require these credentials.
	BasicAuth *BasicAuth
	// Bearer, with BasicAuth, makes the registry use the Docker token
	// protocol instead: /v2/ wants a bearer token per repository, which
	// its /auth/token endpoint issues against the Basic credentials.
	Bearer bool
	// TLS, when set, makes the registry serve HTTPS with this config:
	// HTTP/1.1 only, unless NextProtos lists "h2".
	TLS *tls.Config
}

// BasicAuth is a user name and password for HTTP Basic.
type BasicAuth struct {
	User     string
	Password string
}

// RecordedRequest is a request as it reached the registry, before the
// registry's own authentication.
type RecordedRequest struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
}

// maxRecorded bounds the request ring.
const maxRecorded = 1000

// Registry is a running upstream registry.
type Registry struct {
	// URL is the base URL: http://127.0.0.1:PORT (https when serving TLS).
	URL string
	// Host is host:port, as used in image references.
	Host string

	auth      *BasicAuth
	bearer    *bearerGate
	transport *http.Transport
	app       *handlers.App
	srv       *http.Server
	logID     string
	served    chan error

	mu       sync.Mutex
	requests []RecordedRequest // ring of at most maxRecorded
	next     int               // ring write position once full

	closeOnce sync.Once
	closeErr  error
}

// Start runs a registry and returns once it is listening. ctx bounds the
// start-up only; the registry runs until Close.
//
// Distribution logs through the process-wide logrus logger; Start routes
// that logger into Options.Logger (see logging.go), which also mutes
// logrus's own output for the whole process.
func Start(ctx context.Context, opts Options) (*Registry, error) {
	if opts.BasicAuth != nil && opts.BasicAuth.User == "" {
		return nil, errors.New("upstream: basic auth needs a user name")
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}

	cfg, err := newConfig(opts.Dir)
	if err != nil {
		return nil, err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstream: listen: %w", err)
	}
	host := hostOf(ln.Addr().(*net.TCPAddr))

	r := &Registry{
		Host:   host,
		URL:    "http://" + host,
		served: make(chan error, 1),
	}
	if opts.BasicAuth != nil {
		a := *opts.BasicAuth
		r.auth = &a
	}

	r.logID = routeLogs(opts.Logger)
	// distribution reads the string key "instance.id" to pick the logger
	// fields; it is how its log entries find their way back to this
	// registry's Logger.
	baseCtx := context.WithValue(context.WithoutCancel(ctx), "instance.id", r.logID) //nolint:staticcheck // key fixed by distribution

	app, err := newApp(baseCtx, cfg)
	if err != nil {
		ln.Close()
		unrouteLogs(r.logID)
		return nil, err
	}
	r.app = app

	var h http.Handler = app
	switch {
	case r.auth != nil && opts.Bearer:
		r.bearer = &bearerGate{creds: *r.auth, realm: r.URL + "/auth/token", tokens: map[string]string{}}
		h = r.bearer.wrap(h)
	case r.auth != nil:
		h = requireBasic(*r.auth, h)
	}
	h = r.record(h)

	errorLog := log.New(io.Discard, "", 0)
	if opts.Logger != nil {
		errorLog = slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug)
	}
	r.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          errorLog,
	}

	r.transport = http.DefaultTransport.(*http.Transport).Clone()
	r.transport.DisableCompression = true
	if opts.TLS != nil {
		r.srv.TLSConfig = opts.TLS.Clone()
		// HTTP/1.1 only, unless the caller offers h2: an idle HTTP/2
		// client connection holds Shutdown for a second.
		r.srv.Protocols = new(http.Protocols)
		r.srv.Protocols.SetHTTP1(true)
		r.srv.Protocols.SetHTTP2(slices.Contains(opts.TLS.NextProtos, "h2"))
		r.URL = "https://" + host
		pool, err := leafPool(opts.TLS)
		if err != nil {
			ln.Close()
			app.Shutdown()
			unrouteLogs(r.logID)
			return nil, err
		}
		r.transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		go func() { r.served <- r.srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { r.served <- r.srv.Serve(ln) }()
	}
	return r, nil
}

// newConfig builds the distribution configuration: one storage driver,
// deletes allowed, no redirects, no upload purger goroutine.
func newConfig(dir string) (*configuration.Configuration, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{}
	cfg.Version = "0.1"
	// Set explicitly: distribution warns loudly when it has to generate one.
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	// The log settings only matter to registry.NewRegistry, which we do not
	// use; they document intent. Logs are routed in logging.go.
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true

	storage := configuration.Storage{
		"maintenance": configuration.Parameters{
			"uploadpurging": map[any]any{"enabled": false},
		},
		"delete":   configuration.Parameters{"enabled": true},
		"redirect": configuration.Parameters{"disable": true},
		"cache":    configuration.Parameters{"blobdescriptor": "inmemory"},
	}
	if dir == "" {
		storage["inmemory"] = configuration.Parameters{}
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("upstream: storage dir: %w", err)
		}
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("upstream: storage dir: %w", err)
		}
		storage["filesystem"] = configuration.Parameters{"rootdirectory": abs}
	}
	cfg.Storage = storage
	// NewApp does not apply the file defaults: without this the catalog
	// refuses every page size.
	cfg.Catalog.MaxEntries = 1000
	return cfg, nil
}

// newApp turns NewApp's panics (its way of reporting bad configuration)
// into an error.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("upstream: start registry: %v", v)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

func hostOf(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

// leafPool trusts exactly the certificates the server presents, so the
// registry's own clients (Seed, PushBlob) work with any serving certificate.
func leafPool(cfg *tls.Config) (*x509.CertPool, error) {
	if len(cfg.Certificates) == 0 {
		return nil, nil // GetCertificate only: fall back to the system roots
	}
	pool := x509.NewCertPool()
	for _, c := range cfg.Certificates {
		for _, der := range c.Certificate {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("upstream: tls certificate: %w", err)
			}
			pool.AddCert(cert)
		}
	}
	return pool, nil
}

// requireBasic answers 401 with a Basic challenge unless the request carries
// the configured credentials.
func requireBasic(want BasicAuth, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(user), []byte(want.User)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(want.Password)) == 1
		if !ok || !userOK || !passOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`+"\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (r *Registry) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := RecordedRequest{
			Method:   req.Method,
			Path:     req.URL.Path,
			RawQuery: req.URL.RawQuery,
			Header:   req.Header.Clone(),
		}
		r.mu.Lock()
		if len(r.requests) < maxRecorded {
			r.requests = append(r.requests, rec)
		} else {
			r.requests[r.next] = rec
			r.next = (r.next + 1) % maxRecorded
		}
		r.mu.Unlock()
		next.ServeHTTP(w, req)
	})
}

// Requests returns the last requests that reached the registry (at most
// 1000), oldest first, including ones refused for missing credentials.
func (r *Registry) Requests() []RecordedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RecordedRequest, 0, len(r.requests))
	out = append(out, r.requests[r.next:]...)
	out = append(out, r.requests[:r.next]...)
	for i := range out {
		out[i].Header = out[i].Header.Clone()
	}
	return out
}

// ResetRequests forgets the recorded requests.
func (r *Registry) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
	r.next = 0
}

// Transport returns a transport for talking to this registry directly: it
// trusts the registry's serving certificate when it serves TLS. It carries
// no credentials.
func (r *Registry) Transport() http.RoundTripper {
	return r.transport
}

// Close stops the server, draining requests for up to 10 seconds, and
// returns the serve error if there was one. Safe to call more than once.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		r.transport.CloseIdleConnections()
		if err := r.srv.Shutdown(ctx); err != nil {
			errs = append(errs, err, r.srv.Close())
		}
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		errs = append(errs, r.app.Shutdown())
		unrouteLogs(r.logID)
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
