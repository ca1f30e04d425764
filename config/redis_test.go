package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

func TestRedisAndCacheDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, valid), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.Enabled() || c.Redis.KeyPrefix != DefaultRedisKeyPrefix {
		t.Errorf("redis = %+v", c.Redis)
	}
	want := CacheConfig{
		L1Size: 100_000, L1TTL: Duration(30 * time.Second), RedisTTL: Duration(5 * time.Minute),
		NegativeTTL: Duration(10 * time.Second), NegativeSize: 10_000,
		MaxStale: Duration(10 * time.Minute), UsageInterval: Duration(30 * time.Second),
		ManifestBytes: 64 << 20, ManifestTagTTL: Duration(5 * time.Second),
		InvalidationRetention: Duration(24 * time.Hour),
	}
	if c.Cache != want {
		t.Errorf("cache = %+v, want %+v", c.Cache, want)
	}
	o, err := c.RedisOptions()
	if o != nil || err != nil {
		t.Errorf("RedisOptions without redis = %v, %v", o, err)
	}
}

func TestRedisAndCacheFromYAMLAndEnv(t *testing.T) {
	c, err := Load(writeConfig(t, valid+`
redis:
  mode: sentinel
  addrs: [sentinel-0:26379, sentinel-1:26379]
  master_name: tollgate
  username: tg
  password_file: /run/secrets/redis-password
  db: 2
  tls:
    enabled: true
    ca_file: /run/secrets/redis-ca.pem
    server_name: redis.internal
  key_prefix: "prod:"
cache:
  l1_size: 5000
  l1_ttl: 10s
  redis_ttl: 1m
  negative_ttl: 5s
  negative_size: 100
  max_stale: 30m
  usage_interval: 1m
  manifest_bytes: 0
  invalidation_retention: 48h
`), envMap(map[string]string{
		"TOLLGATE_CACHE_INVALIDATION_RETENTION": "72h",
		"TOLLGATE_CACHE_MANIFEST_TAG_TTL":       "0s",
		"TOLLGATE_CACHE_L1_TTL":                 "20s",
		"TOLLGATE_REDIS_DB":                     "3",
		"TOLLGATE_REDIS_TLS_ENABLED":            "true",
		"TOLLGATE_CACHE_NEGATIVE_TTL":           "7s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redis
	if r.Mode != RedisSentinel || !slices.Equal(r.Addrs, []string{"sentinel-0:26379", "sentinel-1:26379"}) ||
		r.MasterName != "tollgate" || r.Username != "tg" || r.PasswordFile != "/run/secrets/redis-password" ||
		r.DB != 3 || !r.TLS.Enabled || r.TLS.CAFile != "/run/secrets/redis-ca.pem" ||
		r.TLS.ServerName != "redis.internal" || r.KeyPrefix != "prod:" {
		t.Errorf("redis = %+v", r)
	}
	want := CacheConfig{
		L1Size: 5000, L1TTL: Duration(20 * time.Second), RedisTTL: Duration(time.Minute),
		NegativeTTL: Duration(7 * time.Second), NegativeSize: 100,
		MaxStale: Duration(30 * time.Minute), UsageInterval: Duration(time.Minute),
		ManifestBytes: 0, ManifestTagTTL: 0,
		InvalidationRetention: Duration(72 * time.Hour),
	}
	if c.Cache != want {
		t.Errorf("cache = %+v, want %+v", c.Cache, want)
	}

	names := EnvNames()
	for _, n := range []string{
		"TOLLGATE_REDIS_MODE", "TOLLGATE_REDIS_ADDRS", "TOLLGATE_REDIS_MASTER_NAME", "TOLLGATE_REDIS_USERNAME",
		"TOLLGATE_REDIS_PASSWORD", "TOLLGATE_REDIS_PASSWORD_FILE", "TOLLGATE_REDIS_DB",
		"TOLLGATE_REDIS_TLS_ENABLED", "TOLLGATE_REDIS_TLS_CA_FILE", "TOLLGATE_REDIS_TLS_SERVER_NAME",
		"TOLLGATE_REDIS_KEY_PREFIX", "TOLLGATE_CACHE_L1_SIZE", "TOLLGATE_CACHE_L1_TTL",
		"TOLLGATE_CACHE_REDIS_TTL", "TOLLGATE_CACHE_NEGATIVE_TTL", "TOLLGATE_CACHE_NEGATIVE_SIZE",
		"TOLLGATE_CACHE_MAX_STALE", "TOLLGATE_CACHE_USAGE_INTERVAL",
	} {
		if !slices.Contains(names, n) {
			t.Errorf("missing %s", n)
		}
	}
}

func TestRedisAndCacheValidation(t *testing.T) {
	single := func(c *Config) { c.Redis.Mode, c.Redis.Addrs = RedisSingle, []string{"redis:6379"} }
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" means valid
	}{
		{"single", single, ""},
		{"sentinel", func(c *Config) {
			c.Redis.Mode, c.Redis.Addrs, c.Redis.MasterName = RedisSentinel, []string{"s1:26379", "s2:26379"}, "mymaster"
		}, ""},
		{"cluster one seed", func(c *Config) { c.Redis.Mode, c.Redis.Addrs = RedisCluster, []string{"c1:6379"} }, ""},
		{"unknown mode", func(c *Config) { c.Redis.Mode = "ring" }, "redis.mode: must be single, sentinel or cluster"},
		{"addrs without mode", func(c *Config) { c.Redis.Addrs = []string{"redis:6379"} }, "redis.mode: required when other redis settings are set"},
		{"tls without mode", func(c *Config) { c.Redis.TLS.Enabled = true }, "redis.mode: required"},
		{"single two addrs", func(c *Config) { single(c); c.Redis.Addrs = append(c.Redis.Addrs, "b:6379") }, "redis.addrs: must hold exactly one"},
		{"single no addrs", func(c *Config) { c.Redis.Mode = RedisSingle }, "redis.addrs: must hold exactly one"},
		{"bad addr", func(c *Config) { single(c); c.Redis.Addrs = []string{"redis"} }, "redis.addrs[0]: must be host:port"},
		{"port zero", func(c *Config) { single(c); c.Redis.Addrs = []string{"redis:0"} }, "redis.addrs[0]: must be host:port"},
		{"sentinel without master", func(c *Config) { c.Redis.Mode, c.Redis.Addrs = RedisSentinel, []string{"s:26379"} }, "redis.master_name: required in sentinel mode"},
		{"sentinel without addrs", func(c *Config) { c.Redis.Mode, c.Redis.MasterName = RedisSentinel, "m" }, "redis.addrs: must list the Sentinels"},
		{"master name outside sentinel", func(c *Config) { single(c); c.Redis.MasterName = "m" }, "redis.master_name: only for sentinel mode"},
		{"cluster db", func(c *Config) { c.Redis.Mode, c.Redis.Addrs, c.Redis.DB = RedisCluster, []string{"c:6379"}, 1 }, "redis.db: must be 0 in cluster mode"},
		{"cluster no addrs", func(c *Config) { c.Redis.Mode = RedisCluster }, "redis.addrs: must list seed nodes"},
		{"negative db", func(c *Config) { single(c); c.Redis.DB = -1 }, "redis.db: must not be negative"},
		{"two passwords", func(c *Config) { single(c); c.Redis.Password, c.Redis.PasswordFile = "hunter2hunter2", "/p" }, "redis: set at most one of password and password_file"},
		{"ca without tls", func(c *Config) { single(c); c.Redis.TLS.CAFile = "/ca.pem" }, "redis.tls.enabled: must be true"},
		{"empty prefix", func(c *Config) { c.Redis.KeyPrefix = "" }, "redis.key_prefix: must not be empty"},
		{"prefix with hash tag", func(c *Config) { c.Redis.KeyPrefix = "{tg}:" }, "redis.key_prefix: must be at most"},
		{"prefix with space", func(c *Config) { c.Redis.KeyPrefix = "tg :" }, "redis.key_prefix: must be at most"},
		{"l1 size zero", func(c *Config) { c.Cache.L1Size = 0 }, "cache.l1_size: must be between 1 and"},
		{"negative size zero", func(c *Config) { c.Cache.NegativeSize = 0 }, "cache.negative_size: must be between 1 and"},
		{"l1 ttl zero", func(c *Config) { c.Cache.L1TTL = 0 }, "cache.l1_ttl: must be between 1s and 10m"},
		{"invalidation retention short", func(c *Config) { c.Cache.InvalidationRetention = Duration(time.Minute) }, "cache.invalidation_retention: must be between 1h and 2160h"},
		{"l1 ttl long", func(c *Config) { c.Cache.L1TTL = Duration(time.Hour); c.Cache.MaxStale = Duration(2 * time.Hour) }, "cache.l1_ttl: must be between 1s and 10m"},
		{"redis ttl zero", func(c *Config) { c.Cache.RedisTTL = 0 }, "cache.redis_ttl: must be between"},
		{"negative ttl long", func(c *Config) { c.Cache.NegativeTTL = Duration(time.Hour) }, "cache.negative_ttl: must be between 1s and 5m"},
		{"max stale below l1 ttl", func(c *Config) { c.Cache.MaxStale = Duration(10 * time.Second) }, "cache.max_stale: must be at least cache.l1_ttl"},
		{"max stale equal l1 ttl", func(c *Config) { c.Cache.MaxStale = c.Cache.L1TTL }, ""},
		{"usage interval zero", func(c *Config) { c.Cache.UsageInterval = 0 }, "cache.usage_interval: must be between 1s and 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, valid), nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(c)
			err = c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("invalid: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

// writeCA writes a self-signed CA certificate as PEM and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test redis CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return path
}

// TestRedisOptions covers each mode: the options built from the config and
// the concrete client redis.NewUniversalClient makes of them. Creating a
// client does not connect.
func TestRedisOptions(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis-password")
	writeFile(t, pwFile, []byte("from-the-file-hunter2\n"))
	ca := writeCA(t)

	type clientKind int
	const (
		single clientKind = iota
		sentinel
		cluster
	)
	tests := []struct {
		name  string
		redis RedisConfig
		kind  clientKind
		check func(t *testing.T, o *redis.UniversalOptions)
	}{
		{"single", RedisConfig{Mode: RedisSingle, Addrs: []string{"redis:6379"}, DB: 4, Username: "tg", Password: "inline-hunter2"}, single,
			func(t *testing.T, o *redis.UniversalOptions) {
				if o.DB != 4 || o.Username != "tg" || o.Password != "inline-hunter2" || o.TLSConfig != nil || o.MasterName != "" || o.IsClusterMode {
					t.Errorf("options = %+v", o)
				}
			}},
		{"sentinel", RedisConfig{Mode: RedisSentinel, Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, MasterName: "mymaster", DB: 1}, sentinel,
			func(t *testing.T, o *redis.UniversalOptions) {
				if o.MasterName != "mymaster" || len(o.Addrs) != 3 || o.DB != 1 || o.IsClusterMode {
					t.Errorf("options = %+v", o)
				}
			}},
		{"cluster", RedisConfig{Mode: RedisCluster, Addrs: []string{"c1:6379", "c2:6379", "c3:6379"}}, cluster,
			func(t *testing.T, o *redis.UniversalOptions) {
				if !o.IsClusterMode || len(o.Addrs) != 3 || o.MasterName != "" {
					t.Errorf("options = %+v", o)
				}
			}},
		{"cluster with one seed", RedisConfig{Mode: RedisCluster, Addrs: []string{"cluster.internal:6379"}}, cluster,
			func(t *testing.T, o *redis.UniversalOptions) {
				if !o.IsClusterMode {
					t.Errorf("options = %+v", o)
				}
			}},
		{"password from file", RedisConfig{Mode: RedisSingle, Addrs: []string{"redis:6379"}, PasswordFile: pwFile}, single,
			func(t *testing.T, o *redis.UniversalOptions) {
				if o.Password != "from-the-file-hunter2" {
					t.Errorf("password not read from the file (trailing newline trimmed)")
				}
			}},
		{"tls with CA and server name", RedisConfig{Mode: RedisSingle, Addrs: []string{"10.0.0.5:6380"},
			TLS: RedisTLSConfig{Enabled: true, CAFile: ca, ServerName: "redis.internal"}}, single,
			func(t *testing.T, o *redis.UniversalOptions) {
				tc := o.TLSConfig
				if tc == nil || tc.ServerName != "redis.internal" || tc.RootCAs == nil || tc.InsecureSkipVerify || tc.MinVersion < tls.VersionTLS12 {
					t.Errorf("tls = %+v", tc)
				}
			}},
		{"tls with system roots", RedisConfig{Mode: RedisCluster, Addrs: []string{"c1:6379", "c2:6379"}, TLS: RedisTLSConfig{Enabled: true}}, cluster,
			func(t *testing.T, o *redis.UniversalOptions) {
				tc := o.TLSConfig
				if tc == nil || tc.RootCAs != nil || tc.ServerName != "" || tc.InsecureSkipVerify {
					t.Errorf("tls = %+v", tc)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, valid), nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.redis.KeyPrefix = DefaultRedisKeyPrefix
			c.Redis = tt.redis
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			o, err := c.RedisOptions()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.Addrs, tt.redis.Addrs) || o.ClientName != "tollgate" || !o.ContextTimeoutEnabled ||
				o.ReadTimeout <= 0 || o.DialTimeout <= 0 {
				t.Errorf("common options = %+v", o)
			}
			tt.check(t, o)

			client := redis.NewUniversalClient(o)
			defer client.Close()
			switch cl := client.(type) {
			case *redis.ClusterClient:
				if tt.kind != cluster {
					t.Errorf("got a cluster client")
				}
			case *redis.Client:
				// A Sentinel-backed client is a *redis.Client too; its
				// address is the failover marker instead of a server.
				switch addr := cl.Options().Addr; {
				case tt.kind == sentinel && addr != "FailoverClient",
					tt.kind == single && addr != tt.redis.Addrs[0],
					tt.kind == cluster:
					t.Errorf("got a %T for %s", cl, addr)
				}
			default:
				t.Errorf("got a %T", client)
			}
		})
	}
}

func TestRedisOptionsFileErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	writeFile(t, notPEM, []byte("hunter2 is not a certificate\n"))
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, []byte("\n"))
	tests := []struct {
		name  string
		redis RedisConfig
		want  string
	}{
		{"missing password file", RedisConfig{PasswordFile: filepath.Join(dir, "nope")}, "redis.password_file: open"},
		{"empty password file", RedisConfig{PasswordFile: empty}, "redis.password_file: " + empty + " is empty"},
		{"missing ca file", RedisConfig{TLS: RedisTLSConfig{Enabled: true, CAFile: filepath.Join(dir, "nope.pem")}}, "redis.tls.ca_file: open"},
		{"ca file without certificate", RedisConfig{TLS: RedisTLSConfig{Enabled: true, CAFile: notPEM}}, "redis.tls.ca_file: " + notPEM + " holds no PEM certificate"},
		{"invalid config", RedisConfig{Addrs: []string{"a:1", "b:2"}}, "redis.addrs: must hold exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Redis = tt.redis
			c.Redis.Mode, c.Redis.KeyPrefix = RedisSingle, DefaultRedisKeyPrefix
			if c.Redis.Addrs == nil {
				c.Redis.Addrs = []string{"redis:6379"}
			}
			_, err := c.RedisOptions()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes file content: %v", err)
			}
		})
	}
}

func TestRedisPasswordIsRedacted(t *testing.T) {
	c := Default()
	c.Redis = RedisConfig{Mode: RedisSingle, Addrs: []string{"redis:6379"}, Password: "hunter2-redis", KeyPrefix: "x:"}
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c.Redis), fmt.Sprintf("%#v", c.Redis)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("password printed: %s", s)
		}
	}
}

// TestRedisOptionsConnect dials the machine's Redis with the options of a
// single-mode config.
func TestRedisOptionsConnect(t *testing.T) {
	addr := testenv.RedisAddr(t)
	c := Default()
	c.Redis.Mode, c.Redis.Addrs = RedisSingle, []string{addr}
	o, err := c.RedisOptions()
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewUniversalClient(o)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}
