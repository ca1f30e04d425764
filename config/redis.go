package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate"
)

// Redis modes: how redis.addrs are read.
const (
	RedisSingle   = "single"   // one server; addrs holds exactly one address
	RedisSentinel = "sentinel" // addrs are Sentinels watching master_name
	RedisCluster  = "cluster"  // addrs are seed nodes of a Redis Cluster
)

// DefaultRedisKeyPrefix starts every key tollgate writes to Redis.
const DefaultRedisKeyPrefix = "tollgate:"

// RedisConfig configures the Redis shared by every replica: the second
// cache layer and the invalidation bus. An empty mode means no Redis (as
// in `tollgate dev`): each replica caches in its own memory only, so with
// more than one replica a revocation takes up to cache.l1_ttl to bite
// everywhere. Read the client options with Config.RedisOptions.
type RedisConfig struct {
	// Mode is "" (no Redis), single, sentinel or cluster.
	Mode string `yaml:"mode"`
	// Addrs are host:port addresses: the server (single), the Sentinels
	// (sentinel) or seed nodes (cluster).
	Addrs []string `yaml:"addrs"`
	// MasterName is the name of the master the Sentinels watch (sentinel
	// only).
	MasterName string `yaml:"master_name"`
	// Username is the ACL user; empty means the default user.
	Username string `yaml:"username"`
	// Password (or PasswordFile, preferred) authenticates to Redis. Set
	// at most one.
	Password     tollgate.Secret `yaml:"password"`
	PasswordFile string          `yaml:"password_file"`
	// DB is the database number (single and sentinel; a cluster has only
	// database 0).
	DB int `yaml:"db"`
	// TLS makes the connections to Redis use TLS.
	TLS RedisTLSConfig `yaml:"tls"`
	// KeyPrefix starts every key and channel name, so that two
	// deployments can share one Redis. A format version follows it.
	KeyPrefix string `yaml:"key_prefix"`
}

// RedisTLSConfig configures TLS to Redis. The certificate is always
// verified.
type RedisTLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle trusted instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name checked in the server's certificate
	// (default: the host of the address dialed).
	ServerName string `yaml:"server_name"`
}

// Enabled reports whether a Redis is configured.
func (r RedisConfig) Enabled() bool { return r.Mode != "" }

// CacheConfig tunes the token cache (see package tokencache).
type CacheConfig struct {
	// L1Size bounds the entries of each in-process map (token ids, accounts,
	// secret hashes).
	L1Size int `yaml:"l1_size"`
	// L1TTL is how long an in-process entry is used without asking Redis or
	// the store. Without Redis it bounds how long a revocation takes to
	// reach other replicas.
	L1TTL Duration `yaml:"l1_ttl"`
	// RedisTTL is how long an entry lives in Redis. Invalidation deletes
	// entries on every write; the TTL bounds what a lost invalidation costs.
	RedisTTL Duration `yaml:"redis_ttl"`
	// NegativeTTL is how long an unknown token is remembered as unknown,
	// and NegativeSize how many such tokens each replica remembers.
	NegativeTTL  Duration `yaml:"negative_ttl"`
	NegativeSize int      `yaml:"negative_size"`
	// MaxStale is how long after it was last confirmed an entry may still
	// be used while the store (and Redis) cannot be reached. Beyond it, and
	// for tokens never seen, requests fail with 503.
	MaxStale Duration `yaml:"max_stale"`
	// UsageInterval is how often last-used times and pull counts are
	// written to the store: at most one write per token per interval.
	UsageInterval Duration `yaml:"usage_interval"`
	// ManifestBytes bounds the manifest cache (0: off). ManifestTagTTL is
	// how long a tag's digest is believed before the upstream is asked
	// again (0: always ask; manifests by digest are still cached).
	ManifestBytes  int      `yaml:"manifest_bytes"`
	ManifestTagTTL Duration `yaml:"manifest_tag_ttl"`
	// InvalidationRetention is how long entries stay in the store's
	// invalidation log; every replica prunes older ones. A replica that
	// has not read the log for longer drops its whole cache when it does.
	InvalidationRetention Duration `yaml:"invalidation_retention"`
}

// Limits of the cache settings.
const (
	MaxCacheSize        = 10_000_000
	MinCacheTTL         = Duration(time.Second)
	MaxL1TTL            = Duration(10 * time.Minute)
	MaxRedisTTL         = Duration(24 * time.Hour)
	MaxNegativeTTL      = Duration(5 * time.Minute)
	MaxMaxStale         = Duration(24 * time.Hour)
	MaxUsageInterval    = Duration(time.Hour)
	MaxManifestBytes    = 4 << 30
	MaxManifestTagTTL   = Duration(10 * time.Minute)
	MinInvalidationKeep = Duration(time.Hour)
	MaxInvalidationKeep = Duration(90 * 24 * time.Hour)
	maxRedisKeyPrefixLn = 64
)

func defaultRedis() RedisConfig { return RedisConfig{KeyPrefix: DefaultRedisKeyPrefix} }

func defaultCache() CacheConfig {
	return CacheConfig{
		L1Size:         100_000,
		L1TTL:          Duration(30 * time.Second),
		RedisTTL:       Duration(5 * time.Minute),
		NegativeTTL:    Duration(10 * time.Second),
		NegativeSize:   10_000,
		MaxStale:       Duration(10 * time.Minute),
		UsageInterval:  Duration(30 * time.Second),
		ManifestBytes:  64 << 20,
		ManifestTagTTL: Duration(5 * time.Second),

		InvalidationRetention: Duration(24 * time.Hour),
	}
}

func (r RedisConfig) validate(p *problems) {
	if r.KeyPrefix == "" {
		p.add("redis.key_prefix", "must not be empty")
	} else if len(r.KeyPrefix) > maxRedisKeyPrefixLn ||
		strings.ContainsFunc(r.KeyPrefix, func(c rune) bool { return c <= ' ' || c >= 0x7f || c == '{' || c == '}' }) {
		// Braces would be read as a Cluster hash tag, which the cache sets
		// itself to keep an entry and its generation on one node.
		p.add("redis.key_prefix", "must be at most %d printable ASCII characters without spaces or braces", maxRedisKeyPrefixLn)
	}
	if r.Password != "" && r.PasswordFile != "" {
		p.add("redis", "set at most one of password and password_file")
	}
	if !r.TLS.Enabled && (r.TLS.CAFile != "" || r.TLS.ServerName != "") {
		p.add("redis.tls.enabled", "must be true when ca_file or server_name is set")
	}
	switch r.Mode {
	case "":
		if len(r.Addrs) > 0 || r.MasterName != "" || r.Username != "" || r.Password != "" || r.PasswordFile != "" || r.DB != 0 || r.TLS.Enabled {
			p.add("redis.mode", "required when other redis settings are set: single, sentinel or cluster")
		}
		return
	case RedisSingle:
		if len(r.Addrs) != 1 {
			p.add("redis.addrs", "must hold exactly one host:port in single mode")
		}
	case RedisSentinel:
		if len(r.Addrs) == 0 {
			p.add("redis.addrs", "must list the Sentinels (host:port) in sentinel mode")
		}
		if r.MasterName == "" {
			p.add("redis.master_name", "required in sentinel mode")
		}
	case RedisCluster:
		if len(r.Addrs) == 0 {
			p.add("redis.addrs", "must list seed nodes (host:port) in cluster mode")
		}
		if r.DB != 0 {
			p.add("redis.db", "must be 0 in cluster mode")
		}
	default:
		p.add("redis.mode", "must be single, sentinel or cluster")
		return
	}
	if r.Mode != RedisSentinel && r.MasterName != "" {
		p.add("redis.master_name", "only for sentinel mode")
	}
	if r.DB < 0 {
		p.add("redis.db", "must not be negative")
	}
	for i, a := range r.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || !validPort(port) || port == "0" {
			p.add("redis.addrs["+strconv.Itoa(i)+"]", "must be host:port")
		}
	}
}

func (c CacheConfig) validate(p *problems) {
	if c.L1Size < 1 || c.L1Size > MaxCacheSize {
		p.add("cache.l1_size", "must be between 1 and %d", MaxCacheSize)
	}
	if c.NegativeSize < 1 || c.NegativeSize > MaxCacheSize {
		p.add("cache.negative_size", "must be between 1 and %d", MaxCacheSize)
	}
	durations := []struct {
		path     string
		v, lo, h Duration
	}{
		{"cache.l1_ttl", c.L1TTL, MinCacheTTL, MaxL1TTL},
		{"cache.redis_ttl", c.RedisTTL, MinCacheTTL, MaxRedisTTL},
		{"cache.negative_ttl", c.NegativeTTL, MinCacheTTL, MaxNegativeTTL},
		{"cache.max_stale", c.MaxStale, 0, MaxMaxStale},
		{"cache.usage_interval", c.UsageInterval, MinCacheTTL, MaxUsageInterval},
		{"cache.manifest_tag_ttl", c.ManifestTagTTL, 0, MaxManifestTagTTL},
		// At least an hour: far longer than any heartbeat, so only a
		// replica that really stopped reading the log drops its cache.
		{"cache.invalidation_retention", c.InvalidationRetention, MinInvalidationKeep, MaxInvalidationKeep},
	}
	if c.ManifestBytes < 0 || c.ManifestBytes > MaxManifestBytes {
		p.add("cache.manifest_bytes", "must be between 0 (off) and %d", MaxManifestBytes)
	}
	for _, d := range durations {
		if d.v < d.lo || d.v > d.h {
			p.add(d.path, "must be between %v and %v", d.lo, d.h)
		}
	}
	if c.MaxStale < c.L1TTL {
		// An entry past l1_ttl is refreshed; max_stale says how long the
		// refresh may fail. Shorter than l1_ttl means nothing.
		p.add("cache.max_stale", "must be at least cache.l1_ttl")
	}
}

// Timeouts of the Redis client. The cache sits on the request path and
// treats Redis as optional: a slow Redis must cost a request little, and
// the cache stops asking it for a while after a failure.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = time.Second
)

// RedisOptions returns the options of the Redis client described by the
// redis section, for redis.NewUniversalClient: a single-node client for
// single, a Sentinel-backed failover client for sentinel, a cluster client
// for cluster (even with one seed address). It reads redis.password_file
// and redis.tls.ca_file; errors name the setting, never the secret.
//
// It returns nil and no error when no Redis is configured.
func (c *Config) RedisOptions() (*redis.UniversalOptions, error) {
	r := c.Redis
	if !r.Enabled() {
		return nil, nil
	}
	var p problems
	r.validate(&p)
	if len(p) > 0 {
		return nil, p[0]
	}
	o := &redis.UniversalOptions{
		Addrs:                 slices.Clone(r.Addrs),
		ClientName:            "tollgate",
		Username:              r.Username,
		DB:                    r.DB,
		DialTimeout:           redisDialTimeout,
		ReadTimeout:           redisIOTimeout,
		WriteTimeout:          redisIOTimeout,
		ContextTimeoutEnabled: true,
		// One retry, one dial attempt: the cache falls back to the store
		// rather than waiting for Redis.
		MaxRetries:    1,
		DialerRetries: 1,
	}
	switch r.Mode {
	case RedisSentinel:
		o.MasterName = r.MasterName
	case RedisCluster:
		o.IsClusterMode = true
	}
	pw := r.Password
	if pw == "" && r.PasswordFile != "" {
		var err error
		if pw, err = readSecretFile("redis.password_file", r.PasswordFile); err != nil {
			return nil, err
		}
	}
	// Revealed to go-redis, which sends it in AUTH to the Redis servers
	// only; these options are never logged.
	o.Password = pw.Reveal()
	if r.TLS.Enabled {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLS.ServerName}
		if r.TLS.CAFile != "" {
			pem, err := os.ReadFile(r.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, &FieldError{Path: "redis.tls.ca_file", Problem: r.TLS.CAFile + " holds no PEM certificate"}
			}
			tc.RootCAs = pool
		}
		o.TLSConfig = tc
	}
	return o, nil
}
