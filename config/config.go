// Package config owns the configuration of `tollgate serve` and
// `tollgate dev`: the YAML schema, its defaults, the TOLLGATE_* environment
// overrides, validation, and loading the secrets and keys the configuration
// points at.
//
// Loading has two stages on purpose. Load and Validate look only at the
// configuration itself and never touch the files it names, so an example
// config can be checked anywhere. AdminKey, PostgresDSN and LoadKeys read
// those files at startup and fail with errors that name the setting but
// never the secret.
//
// Relative paths are relative to the working directory of the process.
package config

import (
	"errors"
	"fmt"
	"github.com/tollgate/tollgate"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration. Every field maps to a snake_case YAML
// key and to a TOLLGATE_* environment variable (see Load).
//
// To add a section: add a field with a yaml tag, its defaults to defaults(),
// and a validate method called from Validate. The environment overrides
// follow from the struct by themselves.
type Config struct {
	// Listen is the address the HTTP server binds, host:port.
	Listen string `yaml:"listen"`
	// PublicURL is the scheme://host[:port] clients reach tollgate at. It
	// is the base of the token realm in challenges. Required.
	PublicURL string `yaml:"public_url"`
	// Service is the token service name: the "service" in challenges and
	// the audience of issued JWTs. Default: host[:port] of PublicURL.
	Service string `yaml:"service"`

	// TLS makes Listen serve HTTPS. Leave empty behind a TLS-terminating
	// load balancer.
	TLS TLSConfig `yaml:"tls"`
	// Store selects and configures the store, the source of truth.
	Store StoreConfig `yaml:"store"`
	// Keys names the JWT signing key and the lookup and sealing keys.
	Keys KeysConfig `yaml:"keys"`
	// Admin holds the operator's management API key.
	Admin AdminConfig `yaml:"admin"`
	// Tokens tunes the bearer JWTs handed to registry clients.
	Tokens TokensConfig `yaml:"tokens"`
	// Log configures the process's structured log.
	Log LogConfig `yaml:"log"`
	// Upstream is the registry image pulls are proxied to.
	Upstream UpstreamConfig `yaml:"upstream"`
	// Anonymous allows pulls without a token (off by default).
	Anonymous AnonymousConfig `yaml:"anonymous"`
	// Redis is the cache and invalidation bus shared by replicas
	// (optional; see redis.go).
	Redis RedisConfig `yaml:"redis"`
	// Cache tunes the token cache in front of the store.
	Cache CacheConfig `yaml:"cache"`
	// Packages lists the apt and apk repositories (see packages.go).
	Packages PackagesConfig `yaml:"packages"`
	// Ops is the admin listener (metrics, health) and shutdown.
	Ops OpsConfig `yaml:"ops"`
	// Limits bounds failed authentications per client IP and how long a
	// client may take to send a request.
	Limits LimitsConfig `yaml:"limits"`
	// Notify: expiry warnings, webhooks and e-mail (notify.go).
	Notify NotifyConfig `yaml:"notify"`
	// Usage configures pull insight (see usage.go).
	Usage UsageConfig `yaml:"usage"`
	// OIDC configures keyless pulls (see oidc.go).
	OIDC OIDCConfig `yaml:"oidc"`
}

// TLSConfig names a certificate and its private key, both PEM. Set both
// or neither.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// StoreConfig selects a store driver and configures it. Only the section
// of the selected driver is used.
type StoreConfig struct {
	// Driver is "sqlite" (one machine) or "postgres" (many replicas).
	Driver   string         `yaml:"driver"`
	SQLite   SQLiteConfig   `yaml:"sqlite"`
	Postgres PostgresConfig `yaml:"postgres"`
}

// SQLiteConfig configures the embedded store.
type SQLiteConfig struct {
	// Path is the database file. Its directory is created if missing.
	Path string `yaml:"path"`
}

// PostgresConfig configures the PostgreSQL store. Set exactly one of DSN
// and DSNFile; read the value with Config.PostgresDSN.
type PostgresConfig struct {
	// DSN is a connection string (URL or key=value form). Prefer DSNFile:
	// the DSN usually holds a password.
	DSN tollgate.Secret `yaml:"dsn"`
	// DSNFile is a file holding the DSN (trailing whitespace ignored).
	DSNFile string `yaml:"dsn_file"`
	// MaxConns caps the connection pool of each replica.
	MaxConns int `yaml:"max_conns"`
	// ConnectTimeout bounds one connection attempt (dial, TLS, sign-in),
	// and how long start-up keeps retrying an unreachable server before
	// it exits with the reason. 1s to 10m.
	ConnectTimeout Duration `yaml:"connect_timeout"`
}

// AdminConfig holds the operator's management API key, at least
// MinAdminKeyLen characters. Set exactly one of Key and KeyFile; read the
// value with Config.AdminKey. When neither is set and keys.dir is,
// KeyFile defaults to keys.dir/admin.key (which GenerateKeys writes).
type AdminConfig struct {
	Key     tollgate.Secret `yaml:"key"`
	KeyFile string          `yaml:"key_file"`
}

// MinAdminKeyLen is the shortest admin key accepted.
const MinAdminKeyLen = 32

// TokensConfig tunes the bearer JWTs issued at /token.
type TokensConfig struct {
	// JWTLifetime is how long an issued JWT is valid, 1m to 24h. Short is
	// cheap: clients fetch a new one when it expires, and revocation is
	// checked on every request anyway.
	JWTLifetime Duration `yaml:"jwt_lifetime"`
	// JWTLeeway is the clock skew tolerated on exp/nbf/iat, 0s to 5m.
	JWTLeeway Duration `yaml:"jwt_leeway"`
}

// Limits of the token settings.
const (
	MinJWTLifetime = Duration(time.Minute)
	MaxJWTLifetime = Duration(24 * time.Hour)
	MaxJWTLeeway   = Duration(5 * time.Minute)
)

// Default returns the configuration of `tollgate dev`: everything on
// 127.0.0.1:5000, SQLite and keys under ./tollgate-data, text logs. It is
// the same configuration as configs/dev.yaml. It is not normalized, so
// that a caller may change PublicURL or Keys.Dir first; call Normalize
// (or Validate, which does not need it) afterwards.
func Default() *Config {
	c := defaults()
	c.PublicURL = "http://127.0.0.1:5000"
	c.Store.Driver = DriverSQLite
	c.Store.SQLite.Path = "./tollgate-data/tollgate.db"
	c.Keys.Dir = "./tollgate-data/keys"
	c.Log.Format = LogText
	c.OIDC.AllowLoopbackIssuers = true // a test issuer on this machine may be trusted
	return c
}

// defaults are the values a config file starts from.
func defaults() *Config {
	return &Config{
		Listen: "127.0.0.1:5000",
		Store: StoreConfig{
			Postgres: PostgresConfig{MaxConns: 20, ConnectTimeout: Duration(10 * time.Second)},
		},
		Tokens: TokensConfig{
			JWTLifetime: Duration(15 * time.Minute),
			JWTLeeway:   Duration(60 * time.Second),
		},
		Log:      LogConfig{Format: LogJSON, Level: LevelInfo},
		Redis:    defaultRedis(),
		Cache:    defaultCache(),
		Packages: PackagesConfig{MaxRedirects: DefaultMaxRedirects},
		Ops:      OpsConfig{ShutdownTimeout: Duration(30 * time.Second)},
		Limits: LimitsConfig{AuthFailuresPerMinute: 30, AuthFailureBurst: 20,
			HeaderTimeout: Duration(10 * time.Second), BodyTimeout: Duration(30 * time.Second)},
		Notify: defaultNotify(),
		Usage:  defaultUsage(),
		OIDC:   defaultOIDC(),
	}
}

// Load returns the configuration: defaults, then the YAML file at path
// (skipped when path is ""), then environment overrides, then Normalize
// and Validate. Unknown YAML keys are errors.
//
// env looks up an environment variable (os.LookupEnv in production; nil
// means no overrides). Each setting has a variable named EnvPrefix plus
// its YAML path upper-cased and joined with '_': TOLLGATE_LISTEN,
// TOLLGATE_STORE_POSTGRES_DSN, TOLLGATE_TOKENS_JWT_LIFETIME... A set
// variable wins even when empty (which clears a string). Lists are comma
// separated. EnvNames lists them all.
//
// Load does not read the files the configuration names.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	c := defaults()
	if path != "" {
		if err := decodeFile(path, c); err != nil {
			return nil, err
		}
	}
	if env != nil {
		if err := applyEnv(c, env); err != nil {
			return nil, err
		}
	}
	c.Normalize()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Normalize fills in what follows from other settings: it strips the
// trailing slash of PublicURL, derives Service from PublicURL, and fills
// unset key file paths (and admin.key_file) from keys.dir. Fields already
// set are kept. Load calls it.
func (c *Config) Normalize() {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.Service == "" {
		if u, err := url.Parse(c.PublicURL); err == nil {
			c.Service = u.Host
		}
	}
	c.Keys = c.Keys.Resolved()
	if c.Admin.Key == "" && c.Admin.KeyFile == "" && c.Keys.Dir != "" {
		c.Admin.KeyFile = filepath.Join(c.Keys.Dir, AdminKeyFileName)
	}
}

// FieldError is one problem with one setting. Validate returns them joined
// with errors.Join; errors.As finds the first.
type FieldError struct {
	// Path is the YAML path of the setting, e.g. "store.postgres.dsn".
	Path string
	// Problem says what is wrong. It never holds a secret.
	Problem string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Problem }

// problems collects FieldErrors so that Validate reports all of them.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Problem: fmt.Sprintf(format, args...)})
}

// Validate checks the configuration without touching any file it names,
// and returns every problem found (joined), each naming its setting. It
// validates the normalized form of c and does not change c.
func (c *Config) Validate() error {
	n := *c
	n.Normalize()
	var p problems
	n.validateServer(&p)
	n.TLS.validate(&p)
	n.Store.validate(&p)
	n.Keys.validate(&p)
	n.Admin.validate(&p)
	n.Tokens.validate(&p)
	n.Log.validate(&p)
	n.Upstream.validate(&p)
	n.Redis.validate(&p)
	n.Cache.validate(&p)
	n.Packages.validate(&p)
	n.Ops.validate(&p)
	n.Limits.validate(&p)
	n.Notify.validate(&p)
	n.Usage.validate(&p)
	n.OIDC.validate(&p)
	for i, pat := range n.Anonymous.Repositories {
		if err := tollgate.ValidatePattern(pat); err != nil {
			p.add("anonymous.repositories["+strconv.Itoa(i)+"]", "%s", tollgate.ErrorMessage(err))
		}
	}
	return errors.Join(p...)
}

func (c *Config) validateServer(p *problems) {
	if host, port, err := net.SplitHostPort(c.Listen); err != nil || !validPort(port) || strings.ContainsAny(host, " /") {
		p.add("listen", "must be host:port, e.g. 127.0.0.1:5000 or :5000")
	}
	// The parse error is not passed on: it quotes the URL, which could
	// carry credentials.
	u, err := url.Parse(c.PublicURL)
	switch {
	case c.PublicURL == "":
		p.add("public_url", "required: the URL clients reach tollgate at, e.g. https://registry.example.com")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		p.add("public_url", "must be an absolute http or https URL")
	case u.User != nil:
		p.add("public_url", "must not contain credentials")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(c.PublicURL, "#"):
		p.add("public_url", "must not have a query or fragment")
	case u.Path != "":
		// Registry clients always talk to /v2/ at the root of the host.
		p.add("public_url", "must not have a path: registry clients expect /v2/ at the root")
	}
	if c.Service == "" {
		if c.PublicURL != "" && err == nil {
			p.add("service", "required when public_url has no host")
		}
	} else if strings.ContainsFunc(c.Service, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r == 0x7f }) {
		// It is quoted in WWW-Authenticate headers.
		p.add("service", "must not contain spaces, quotes, backslashes or control characters")
	}
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 65535
}

func (t TLSConfig) validate(p *problems) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add("tls", "set both cert_file and key_file, or neither")
	}
}

func (s StoreConfig) validate(p *problems) {
	switch s.Driver {
	case DriverSQLite:
		if s.SQLite.Path == "" {
			p.add("store.sqlite.path", "required when store.driver is sqlite")
		}
	case DriverPostgres:
		if (s.Postgres.DSN == "") == (s.Postgres.DSNFile == "") {
			p.add("store.postgres", "set exactly one of dsn and dsn_file")
		}
		if s.Postgres.MaxConns < 1 {
			p.add("store.postgres.max_conns", "must be at least 1")
		}
		if d := s.Postgres.ConnectTimeout.Duration(); d < time.Second || d > 10*time.Minute {
			p.add("store.postgres.connect_timeout", "must be between 1s and 10m")
		}
	case "":
		p.add("store.driver", "required: sqlite or postgres")
	default:
		p.add("store.driver", "must be sqlite or postgres")
	}
}

func (a AdminConfig) validate(p *problems) {
	if (a.Key == "") == (a.KeyFile == "") {
		p.add("admin", "set exactly one of key and key_file")
		return
	}
	if a.Key != "" {
		if err := checkAdminKey(a.Key); err != "" {
			p.add("admin.key", "%s", err)
		}
	}
}

// checkAdminKey returns what is wrong with key, or "". The key travels in
// an Authorization header, hence no whitespace. What it returns describes
// the key's length and alphabet, never its characters.
func checkAdminKey(key tollgate.Secret) string {
	// Revealed to this check only: its length and characters are looked
	// at, nothing of it is kept or returned.
	k := key.Reveal()
	if len(k) < MinAdminKeyLen {
		return fmt.Sprintf("must be at least %d characters, got %d", MinAdminKeyLen, len(k))
	}
	if strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "must not contain whitespace or control characters"
	}
	return ""
}

func (t TokensConfig) validate(p *problems) {
	if t.JWTLifetime < MinJWTLifetime || t.JWTLifetime > MaxJWTLifetime {
		p.add("tokens.jwt_lifetime", "must be between %v and %v", MinJWTLifetime, MaxJWTLifetime)
	}
	if t.JWTLeeway < 0 || t.JWTLeeway > MaxJWTLeeway {
		p.add("tokens.jwt_leeway", "must be between 0s and %v", MaxJWTLeeway)
	}
}
