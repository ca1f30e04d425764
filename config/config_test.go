package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate"
)

// valid is a minimal production-shaped config that passes Validate.
const valid = `
public_url: https://registry.example.com
store:
  driver: postgres
  postgres:
    dsn_file: /run/secrets/dsn
keys:
  dir: /run/secrets/keys
admin:
  key_file: /run/secrets/admin.key
`

// writeConfig writes a config file into a fresh directory.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// envMap is an injectable environment.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestLoadValid(t *testing.T) {
	c, err := Load(writeConfig(t, valid), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:5000" || c.Store.Postgres.MaxConns != 20 ||
		c.Tokens.JWTLifetime.Duration() != 15*time.Minute || c.Tokens.JWTLeeway.Duration() != time.Minute ||
		c.Log.Format != "json" || c.Log.Level != "info" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.Service != "registry.example.com" {
		t.Errorf("service = %q", c.Service)
	}
	if c.Keys.LookupKeyFile != "/run/secrets/keys/lookup.key" {
		t.Errorf("lookup_key_file = %q", c.Keys.LookupKeyFile)
	}
}

func TestLoadRejectsUnknownKeys(t *testing.T) {
	const secret = "s3cr3t-v4lue-that-must-not-leak-0123456789"
	tests := []struct {
		name, yaml, want string
	}{
		{"top level", "listn: :5000\n", "listn: unknown key"},
		{"nested", "store:\n  postgres:\n    dsnn: x\n", "store.postgres.dsnn: unknown key"},
		{"misspelt secret", "admin:\n  kye: " + secret + "\n", "admin.kye: unknown key"},
		{"duplicate key", "listen: :1\nlisten: :2\n", "listen: mapping key already defined at line 1"},
		{"unknown section", "upstreem:\n  url: x\n", "upstreem: unknown key"},
		{"flow mapping", "tls: {cert_file: a, keyfile: b}\n", "tls.keyfile: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.yaml), nil)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret[:7]) {
				t.Errorf("error quotes a value: %q", err)
			}
		})
	}
}

func TestLoadTypeErrorsNamePathNotValue(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"int", "store:\n  postgres:\n    max_conns: hunter2\n", "store.postgres.max_conns: cannot unmarshal !!str into int"},
		{"duration", "tokens:\n  jwt_lifetime: hunter2\n", "tokens.jwt_lifetime: not a duration"},
		{"duration mapping", "tokens:\n  jwt_leeway: {a: hunter2}\n", "tokens.jwt_leeway: must be a duration"},
		{"mapping for string", "listen:\n  hunter: 2\n", "listen: cannot unmarshal !!map into string"},
		{"list for string", "store:\n  driver:\n    - hunter2\n", "store.driver: cannot unmarshal !!seq into string"},
		{"list", "keys:\n  jwt_verification_key_files: hunter2\n", "keys.jwt_verification_key_files: cannot unmarshal !!str into []string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.yaml), nil)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter") {
				t.Errorf("error quotes the value: %q", err)
			}
		})
	}
}

func TestLoadFileShapes(t *testing.T) {
	t.Run("empty file means defaults", func(t *testing.T) {
		_, err := Load(writeConfig(t, "# nothing\n"), envMap(map[string]string{
			"TOLLGATE_PUBLIC_URL":   "http://localhost:5000",
			"TOLLGATE_STORE_DRIVER": "sqlite", "TOLLGATE_STORE_SQLITE_PATH": "db",
			"TOLLGATE_KEYS_DIR": "keys",
		}))
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no file means defaults", func(t *testing.T) {
		_, err := Load("", envMap(map[string]string{
			"TOLLGATE_PUBLIC_URL":   "http://localhost:5000",
			"TOLLGATE_STORE_DRIVER": "sqlite", "TOLLGATE_STORE_SQLITE_PATH": "db",
			"TOLLGATE_KEYS_DIR": "keys",
		}))
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("two documents are rejected", func(t *testing.T) {
		_, err := Load(writeConfig(t, valid+"---\nlisten: :1\n"), nil)
		if err == nil || !strings.Contains(err.Error(), "single YAML document") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("syntax error names the file and line", func(t *testing.T) {
		path := writeConfig(t, "listen: [\n")
		_, err := Load(path, nil)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("null section keeps defaults", func(t *testing.T) {
		c, err := Load(writeConfig(t, valid+"tokens:\nlog:\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Tokens.JWTLifetime != Duration(15*time.Minute) || c.Log.Format != LogJSON {
			t.Errorf("defaults lost: %+v %+v", c.Tokens, c.Log)
		}
	})
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(*Config) bool
	}{
		{"string", map[string]string{"TOLLGATE_LISTEN": ":6000"},
			func(c *Config) bool { return c.Listen == ":6000" }},
		{"string overrides file", map[string]string{"TOLLGATE_PUBLIC_URL": "https://other.example.com:8443/"},
			func(c *Config) bool {
				return c.PublicURL == "https://other.example.com:8443" && c.Service == "other.example.com:8443"
			}},
		{"nested string", map[string]string{"TOLLGATE_STORE_POSTGRES_DSN_FILE": "/other/dsn"},
			func(c *Config) bool { return c.Store.Postgres.DSNFile == "/other/dsn" }},
		{"int", map[string]string{"TOLLGATE_STORE_POSTGRES_MAX_CONNS": " 42 "},
			func(c *Config) bool { return c.Store.Postgres.MaxConns == 42 }},
		{"duration", map[string]string{"TOLLGATE_TOKENS_JWT_LIFETIME": "1h30m", "TOLLGATE_TOKENS_JWT_LEEWAY": "0s"},
			func(c *Config) bool {
				return c.Tokens.JWTLifetime.Duration() == 90*time.Minute && c.Tokens.JWTLeeway == 0
			}},
		{"list", map[string]string{"TOLLGATE_KEYS_JWT_VERIFICATION_KEY_FILES": "/a.pem, /b.pem,,"},
			func(c *Config) bool {
				return slices.Equal(c.Keys.JWTVerificationKeyFiles, []string{"/a.pem", "/b.pem"})
			}},
		{"empty clears a string", map[string]string{"TOLLGATE_ADMIN_KEY_FILE": "", "TOLLGATE_ADMIN_KEY": strings.Repeat("k", 40)},
			func(c *Config) bool { return c.Admin.KeyFile == "" && c.Admin.Key.Reveal() == strings.Repeat("k", 40) }},
		{"section", map[string]string{"TOLLGATE_LOG_FORMAT": "text", "TOLLGATE_LOG_LEVEL": "debug"},
			func(c *Config) bool { return c.Log.Format == "text" && c.Log.SlogLevel() == slog.LevelDebug }},
		{"URL is not a setting", map[string]string{"TOLLGATE_URL": "https://elsewhere.example.com"},
			func(c *Config) bool { return c.PublicURL == "https://registry.example.com" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, valid), envMap(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("override not applied: %+v", c)
			}
		})
	}
}

func TestEnvOverrideErrorsNameVariableNotValue(t *testing.T) {
	tests := []struct{ name, value string }{
		{"TOLLGATE_STORE_POSTGRES_MAX_CONNS", "hunter2"},
		{"TOLLGATE_TOKENS_JWT_LIFETIME", "hunter2"},
		{"TOLLGATE_TOKENS_JWT_LEEWAY", "900"},
		{"TOLLGATE_TOKENS_JWT_LEEWAY", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := Load(writeConfig(t, valid), envMap(map[string]string{tt.name: tt.value}))
			if err == nil || !strings.HasPrefix(err.Error(), tt.name+": ") {
				t.Fatalf("err = %v", err)
			}
			if tt.value != "" && strings.Contains(err.Error(), tt.value) {
				t.Errorf("error quotes the value: %q", err)
			}
		})
	}
}

// TestEnvKinds covers the kinds Config does not use yet.
func TestEnvKinds(t *testing.T) {
	type inner struct {
		On    bool     `yaml:"on"`
		Port  uint16   `yaml:"port"`
		Items []string `yaml:"items"`
	}
	var v struct {
		Name    string   `yaml:"name"`
		Count   int64    `yaml:"count"`
		Wait    Duration `yaml:"wait"`
		Inner   inner    `yaml:"inner"`
		Flat    inner    `yaml:",inline"`
		Skipped string   `yaml:"-"`
		Untaged string
		Map     map[string]string `yaml:"map"`
		private string
	}
	err := applyEnv(&v, envMap(map[string]string{
		"TOLLGATE_NAME": "n", "TOLLGATE_COUNT": "-7", "TOLLGATE_WAIT": "2s",
		"TOLLGATE_INNER_ON": "true", "TOLLGATE_INNER_PORT": "8080", "TOLLGATE_INNER_ITEMS": "a,b",
		"TOLLGATE_ON": "1", "TOLLGATE_UNTAGED": "u", "TOLLGATE_SKIPPED": "x",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := inner{On: true, Port: 8080, Items: []string{"a", "b"}}
	if v.Name != "n" || v.Count != -7 || v.Wait.Duration() != 2*time.Second || !reflect.DeepEqual(v.Inner, want) ||
		!v.Flat.On || v.Untaged != "u" || v.Skipped != "" || v.private != "" {
		t.Errorf("got %+v", v)
	}

	for name, value := range map[string]string{
		"TOLLGATE_INNER_ON": "maybe", "TOLLGATE_INNER_PORT": "70000", "TOLLGATE_MAP": "a=b",
	} {
		err := applyEnv(&v, envMap(map[string]string{name: value}))
		if err == nil || !strings.HasPrefix(err.Error(), name+": ") {
			t.Errorf("%s=%s: err = %v", name, value, err)
		}
	}
}

func TestEnvNames(t *testing.T) {
	names := EnvNames()
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("two settings map to %s", n)
		}
		seen[n] = true
	}
	for _, n := range []string{
		"TOLLGATE_LISTEN", "TOLLGATE_PUBLIC_URL", "TOLLGATE_SERVICE", "TOLLGATE_TLS_CERT_FILE",
		"TOLLGATE_STORE_DRIVER", "TOLLGATE_STORE_SQLITE_PATH", "TOLLGATE_STORE_POSTGRES_DSN",
		"TOLLGATE_STORE_POSTGRES_DSN_FILE", "TOLLGATE_STORE_POSTGRES_MAX_CONNS", "TOLLGATE_KEYS_DIR",
		"TOLLGATE_KEYS_JWT_SIGNING_KEY_FILE", "TOLLGATE_KEYS_JWT_VERIFICATION_KEY_FILES",
		"TOLLGATE_KEYS_LOOKUP_KEY_FILE", "TOLLGATE_KEYS_SEAL_KEY_FILE", "TOLLGATE_ADMIN_KEY",
		"TOLLGATE_ADMIN_KEY_FILE", "TOLLGATE_TOKENS_JWT_LIFETIME", "TOLLGATE_TOKENS_JWT_LEEWAY",
		"TOLLGATE_LOG_FORMAT", "TOLLGATE_LOG_LEVEL",
	} {
		if !seen[n] {
			t.Errorf("missing %s", n)
		}
	}
	// The CLI's client settings must not be mistaken for server settings.
	for _, n := range []string{"TOLLGATE_URL", "TOLLGATE_TOKEN", "TOLLGATE_CONFIG"} {
		if seen[n] {
			t.Errorf("%s is a setting", n)
		}
	}
	// Every setting can be set from the environment.
	walkLeaves(reflect.ValueOf(defaults()).Elem(), EnvPrefix, func(name string, f reflect.Value) {
		if !settable(f.Type()) {
			t.Errorf("%s: type %s cannot be set from the environment", name, f.Type())
		}
	})
}

func TestValidateNamesFieldPath(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"listen without port", func(c *Config) { c.Listen = "localhost" }, "listen: must be host:port"},
		{"listen bad port", func(c *Config) { c.Listen = ":99999" }, "listen: must be host:port"},
		{"public_url missing", func(c *Config) { c.PublicURL = "" }, "public_url: required"},
		{"public_url relative", func(c *Config) { c.PublicURL = "registry.example.com" }, "public_url: must be an absolute http or https URL"},
		{"public_url ftp", func(c *Config) { c.PublicURL = "ftp://registry.example.com" }, "public_url: must be an absolute http or https URL"},
		{"public_url query", func(c *Config) { c.PublicURL = "https://registry.example.com?a=b" }, "public_url: must not have a query or fragment"},
		{"public_url fragment", func(c *Config) { c.PublicURL = "https://registry.example.com#x" }, "public_url: must not have a query or fragment"},
		{"public_url path", func(c *Config) { c.PublicURL = "https://example.com/registry" }, "public_url: must not have a path"},
		{"public_url credentials", func(c *Config) { c.PublicURL = "https://u:hunter2@example.com" }, "public_url: must not contain credentials"},
		{"service quote", func(c *Config) { c.Service = `a"b` }, "service: must not contain"},
		{"tls half", func(c *Config) { c.TLS.CertFile = "/c.pem" }, "tls: set both cert_file and key_file, or neither"},
		{"driver missing", func(c *Config) { c.Store.Driver = "" }, "store.driver: required"},
		{"driver unknown", func(c *Config) { c.Store.Driver = "mysql" }, "store.driver: must be sqlite or postgres"},
		{"sqlite path", func(c *Config) { c.Store = StoreConfig{Driver: "sqlite"} }, "store.sqlite.path: required"},
		{"postgres both", func(c *Config) { c.Store.Postgres.DSN = "postgres://x" }, "store.postgres: set exactly one of dsn and dsn_file"},
		{"postgres neither", func(c *Config) { c.Store.Postgres.DSNFile = "" }, "store.postgres: set exactly one of dsn and dsn_file"},
		{"max_conns", func(c *Config) { c.Store.Postgres.MaxConns = 0 }, "store.postgres.max_conns: must be at least 1"},
		{"keys missing", func(c *Config) { c.Keys = KeysConfig{} }, "keys.jwt_signing_key_file: required (or set keys.dir)"},
		{"keys one missing", func(c *Config) { c.Keys = KeysConfig{JWTSigningKeyFile: "a", LookupKeyFile: "b"} }, "keys.seal_key_file: required"},
		{"keys same file", func(c *Config) { c.Keys = KeysConfig{JWTSigningKeyFile: "a", LookupKeyFile: "b", SealKeyFile: "./b"} }, "keys.seal_key_file: must not be the same file"},
		{"verification empty", func(c *Config) { c.Keys.JWTVerificationKeyFiles = []string{"a", ""} }, "keys.jwt_verification_key_files[1]: must not be empty"},
		{"admin both", func(c *Config) { c.Admin.Key = tollgate.Secret(strings.Repeat("k", 32)) }, "admin: set exactly one of key and key_file"},
		{"admin neither", func(c *Config) { c.Admin.KeyFile, c.Keys.Dir = "", "" }, "admin: set exactly one of key and key_file"},
		{"admin short", func(c *Config) { c.Admin = AdminConfig{Key: "hunter2"} }, "admin.key: must be at least 32 characters, got 7"},
		{"admin space", func(c *Config) { c.Admin = AdminConfig{Key: tollgate.Secret(strings.Repeat("k", 32) + " x")} }, "admin.key: must not contain whitespace"},
		{"lifetime short", func(c *Config) { c.Tokens.JWTLifetime = Duration(30 * time.Second) }, "tokens.jwt_lifetime: must be between 1m and 24h"},
		{"lifetime long", func(c *Config) { c.Tokens.JWTLifetime = Duration(25 * time.Hour) }, "tokens.jwt_lifetime: must be between 1m and 24h"},
		{"leeway negative", func(c *Config) { c.Tokens.JWTLeeway = Duration(-time.Second) }, "tokens.jwt_leeway: must be between 0s and 5m"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format: must be json or text"},
		{"log level", func(c *Config) { c.Log.Level = "trace" }, "log.level: must be debug, info, warn or error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, valid), nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(c)
			err = c.Validate()
			if err == nil {
				t.Fatal("valid")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(tt.want, fe.Path+":") {
				t.Errorf("FieldError = %+v", fe)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes a secret: %q", err)
			}
		})
	}
}

func TestValidateBoundaries(t *testing.T) {
	c, err := Load(writeConfig(t, valid), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{time.Minute, 24 * time.Hour} {
		c.Tokens.JWTLifetime = Duration(d)
		if err := c.Validate(); err != nil {
			t.Errorf("jwt_lifetime %v: %v", d, err)
		}
	}
	c.Tokens.JWTLeeway = 0
	c.Listen = ":0"
	c.PublicURL = "http://[::1]:5000/"
	c.Service = ""
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	if c.Service != "" || c.PublicURL != "http://[::1]:5000/" {
		t.Error("Validate changed the config")
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := Load(writeConfig(t, "log:\n  format: xml\n"), envMap(map[string]string{"TOLLGATE_TOKENS_JWT_LIFETIME": "10s"}))
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{"public_url:", "store.driver:", "keys.lookup_key_file:", "admin:", "tokens.jwt_lifetime:", "log.format:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"15m", 15 * time.Minute, true},
		{"90s", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{`"2m"`, 2 * time.Minute, true},
		{"0s", 0, true},
		{"0", 0, true},
		{"-1s", -time.Second, true},
		{"900", 0, false},
		{"1.5", 0, false},
		{"fifteen", 0, false},
		{"", 0, true}, // null: the value is kept
		{"[1m]", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if tt.ok && v.D.Duration() != tt.want {
				t.Errorf("got %v, want %v", v.D, tt.want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", 24 * time.Hour: "24h", 90 * time.Second: "1m30s", 0: "0s",
		time.Hour + time.Second: "1h0m1s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("%v: got %q, want %q", d, got, want)
		}
		out, err := yaml.Marshal(struct{ D Duration }{Duration(d)})
		if err != nil {
			t.Fatal(err)
		}
		var back struct{ D Duration }
		if err := yaml.Unmarshal(out, &back); err != nil || back.D != Duration(d) {
			t.Errorf("%v: round trip gave %v, %v", d, back.D, err)
		}
	}
}

func TestNormalize(t *testing.T) {
	c := &Config{PublicURL: "https://r.example.com:8443/", Keys: KeysConfig{Dir: "/k", SealKeyFile: "/other/seal.key"}}
	c.Normalize()
	want := &Config{
		PublicURL: "https://r.example.com:8443",
		Service:   "r.example.com:8443",
		Keys: KeysConfig{Dir: "/k", JWTSigningKeyFile: "/k/jwt-signing.pem",
			LookupKeyFile: "/k/lookup.key", SealKeyFile: "/other/seal.key"},
		Admin: AdminConfig{KeyFile: "/k/admin.key"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}

	c = &Config{PublicURL: "https://r.example.com", Service: "custom", Admin: AdminConfig{Key: "x"}, Keys: KeysConfig{Dir: "/k"}}
	c.Normalize()
	if c.Service != "custom" || c.Admin.KeyFile != "" {
		t.Errorf("set fields changed: %+v", c)
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Normalize()
	if c.Service != "127.0.0.1:5000" || c.Admin.KeyFile != filepath.Join("tollgate-data", "keys", "admin.key") {
		t.Errorf("%+v", c)
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	const dsn = "postgres://tollgate:hunter2hunter2@db/tollgate"
	adminKey := strings.Repeat("A", 40)
	c := Default()
	c.Store = StoreConfig{Driver: DriverPostgres, Postgres: PostgresConfig{DSN: dsn, MaxConns: 1}}
	c.Admin.Key = tollgate.Secret(adminKey)

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", c, "dsn", c.Store.Postgres.DSN)
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.Admin.Key),
		fmt.Sprintf("%s %q %x", c.Admin.Key, c.Admin.Key, c.Admin.Key), string(y), logged.String(),
	} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, adminKey) {
			t.Errorf("secret shown: %s", out)
		}
	}
	if got, _ := c.PostgresDSN(); got.Reveal() != dsn {
		t.Errorf("PostgresDSN = %q", got)
	}
	if got, _ := c.AdminKey(); got.Reveal() != adminKey {
		t.Errorf("AdminKey = %q", got)
	}
}

// TestSecretsStayOutOfErrors: settings holding secrets, loaded from the
// file and the environment, are tollgate.Secret values, and no problem
// found with them or beside them quotes them.
func TestSecretsStayOutOfErrors(t *testing.T) {
	yml := `
public_url: https://registry.example.com
store:
  driver: postgres
  postgres:
    dsn: postgres://tg:hunter2-dsn@db/tollgate
    dsn_file: /run/secrets/dsn
admin:
  key: hunter2-admin
upstream:
  password: hunter2-upstream
redis:
  password: hunter2-redis
  password_file: /run/secrets/redis
packages:
  repositories:
    - {format: apt, name: os, url: "https://apt.example.com/debian", password: hunter2-package}
`
	env := map[string]string{"TOLLGATE_UPSTREAM_PASSWORD": "hunter2-env-upstream"}
	_, err := Load(writeConfig(t, yml), envMap(env))
	if err == nil {
		t.Fatal("Load accepted the broken config")
	}
	for _, want := range []string{"admin.key", "store.postgres", "upstream", "redis", "packages.repositories[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no problem named %s in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("an error quotes a secret:\n%v", err)
	}

	// Well-formed, the same settings load as secrets that redact themselves.
	c, err := Load(writeConfig(t, valid), envMap(map[string]string{
		"TOLLGATE_STORE_POSTGRES_DSN_FILE": "", "TOLLGATE_STORE_POSTGRES_DSN": "postgres://tg:hunter2-dsn@db/tollgate",
		"TOLLGATE_UPSTREAM_URL": "https://upstream.example.com", "TOLLGATE_UPSTREAM_USERNAME": "tg",
		"TOLLGATE_UPSTREAM_PASSWORD": "hunter2-upstream",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var _ tollgate.Secret = c.Upstream.Password
	if dsn, err := c.PostgresDSN(); err != nil || dsn.Reveal() != "postgres://tg:hunter2-dsn@db/tollgate" {
		t.Errorf("PostgresDSN = %v", err)
	}
	if pw, err := c.UpstreamPassword(); err != nil || pw.Reveal() != "hunter2-upstream" {
		t.Errorf("UpstreamPassword = %v", err)
	}
	if out := fmt.Sprintf("%v %+v", c, c); strings.Contains(out, "hunter2") {
		t.Errorf("a loaded secret is printed: %s", out)
	}
}

func TestAdminKeyAndDSNFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := strings.Repeat("x", 43)
	c := &Config{
		Admin: AdminConfig{KeyFile: write("admin", key+"\r\n")},
		Store: StoreConfig{Postgres: PostgresConfig{DSNFile: write("dsn", "host=db user=tg\n")}},
	}
	if got, err := c.AdminKey(); err != nil || got.Reveal() != key {
		t.Errorf("AdminKey = %q, %v", got, err)
	}
	if got, err := c.PostgresDSN(); err != nil || got.Reveal() != "host=db user=tg" {
		t.Errorf("PostgresDSN = %q, %v", got, err)
	}

	// keys.dir/admin.key when admin is unset.
	kd := filepath.Join(dir, "keys")
	if err := GenerateKeys(kd); err != nil {
		t.Fatal(err)
	}
	c = &Config{Keys: KeysConfig{Dir: kd}}
	if got, err := c.AdminKey(); err != nil || len(got.Reveal()) != 43 {
		t.Errorf("AdminKey from keys.dir = %d chars, %v", len(got.Reveal()), err)
	}

	tests := []struct {
		name string
		c    *Config
		call func(*Config) (tollgate.Secret, error)
		want string
	}{
		{"admin short", &Config{Admin: AdminConfig{KeyFile: write("short", "hunter2\n")}}, (*Config).AdminKey,
			"admin.key_file: must be at least 32 characters, got 7"},
		{"admin empty", &Config{Admin: AdminConfig{KeyFile: write("empty", "\n\n")}}, (*Config).AdminKey,
			"admin.key_file: " + filepath.Join(dir, "empty") + " is empty"},
		{"admin missing", &Config{Admin: AdminConfig{KeyFile: filepath.Join(dir, "nope")}}, (*Config).AdminKey,
			"admin.key_file: open " + filepath.Join(dir, "nope")},
		{"admin unset", &Config{}, (*Config).AdminKey, "admin: set exactly one of key and key_file"},
		{"dsn both", &Config{Store: StoreConfig{Postgres: PostgresConfig{DSN: "hunter2", DSNFile: "x"}}}, (*Config).PostgresDSN,
			"store.postgres: set exactly one of dsn and dsn_file"},
		{"dsn empty", &Config{Store: StoreConfig{Postgres: PostgresConfig{DSNFile: write("dsn-empty", "")}}}, (*Config).PostgresDSN,
			"store.postgres.dsn_file: " + filepath.Join(dir, "dsn-empty") + " is empty"},
		{"dsn too large", &Config{Store: StoreConfig{Postgres: PostgresConfig{DSNFile: write("dsn-big", "hunter2"+strings.Repeat(" ", 70000)+"x")}}}, (*Config).PostgresDSN,
			"store.postgres.dsn_file: " + filepath.Join(dir, "dsn-big") + " is larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.call(tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes the secret: %q", err)
			}
		})
	}
}

func TestLoggerFollowsConfig(t *testing.T) {
	var buf bytes.Buffer
	LogConfig{Format: LogText, Level: LevelWarn}.NewLogger(&buf).Info("hidden")
	LogConfig{Format: LogText, Level: LevelWarn}.NewLogger(&buf).Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "level=WARN msg=shown") {
		t.Errorf("text log = %q", out)
	}
	buf.Reset()
	LogConfig{Format: LogJSON, Level: LevelDebug}.NewLogger(&buf).Debug("d")
	if !strings.HasPrefix(buf.String(), `{"time":`) {
		t.Errorf("json log = %q", buf.String())
	}
}
