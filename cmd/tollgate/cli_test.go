package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/storetest"
)

// cli runs tollgate command lines against one server.
type cli struct {
	t   *testing.T
	env map[string]string
}

func (c *cli) lookup(k string) (string, bool) { v, ok := c.env[k]; return v, ok }

// run returns stdout, stderr and the exit status.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb, c.lookup)
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("tollgate %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// fail runs a command that must fail and returns its stderr.
func (c *cli) fail(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code == 0 {
		c.t.Fatalf("tollgate %s succeeded, want failure; stdout: %s", strings.Join(args, " "), out)
	}
	return errs
}

func (c *cli) json(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	// Decode into a fresh value: unmarshalling into a used map would keep
	// keys the new output does not have.
	rv := reflect.ValueOf(v).Elem()
	rv.Set(reflect.Zero(rv.Type()))
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("tollgate %s: bad JSON %v: %s", strings.Join(args, " "), err, out)
	}
}

func startDev(t *testing.T, data string, logs *testenv.Buffer) *devServer {
	t.Helper()
	d := &devServer{Data: data, Listen: "127.0.0.1:0", Out: &bytes.Buffer{}}
	d.logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Main.Close() })
	return d
}

func TestDevLifecycleThroughCLI(t *testing.T) {
	data := t.TempDir()
	logs := &testenv.Buffer{}
	d := startDev(t, data, logs)

	// dev.env holds what a newcomer needs.
	raw, err := os.ReadFile(filepath.Join(data, "dev.env"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	for _, k := range []string{"TOLLGATE_URL", "TOLLGATE_ADMIN_KEY", "TOLLGATE_DEMO_ACCOUNT", "TOLLGATE_DEMO_TOKEN"} {
		if env[k] == "" {
			t.Fatalf("dev.env lacks %s: %s", k, raw)
		}
	}
	if fi, _ := os.Stat(filepath.Join(data, "dev.env")); fi.Mode().Perm() != 0o600 {
		t.Errorf("dev.env mode = %v, want 0600", fi.Mode().Perm())
	}
	demoToken := env["TOLLGATE_DEMO_TOKEN"]
	if _, _, err := storetest.Authenticate(context.Background(), d.Main.Service, demoToken); err != nil {
		t.Fatalf("demo token does not authenticate: %v", err)
	}
	c := &cli{t: t, env: env}
	var secrets []string
	secrets = append(secrets, demoToken, env["TOLLGATE_ADMIN_KEY"])

	// Accounts.
	var created struct {
		Account struct{ Name, Status string } `json:"account"`
		Token   map[string]any                `json:"token"`
	}
	c.json(&created, "account", "create", "acme")
	if created.Account.Name != "acme" || created.Token["name"] != "default" || created.Token["secret"] == nil {
		t.Fatalf("account create = %+v", created)
	}
	secrets = append(secrets, created.Token["secret"].(string))
	if msg := c.fail("account", "create", "acme"); !strings.Contains(msg, "account acme already exists") {
		t.Fatalf("duplicate account message = %q", msg)
	}
	if msg := c.fail("account", "create", "Bad_Name"); !strings.Contains(msg, "name: may contain only a-z, 0-9 and '-'") {
		t.Fatalf("bad name message = %q", msg)
	}
	if out := c.ok("account", "list"); !strings.Contains(out, "acme") || !strings.Contains(out, "demo") {
		t.Fatalf("account list = %s", out)
	}
	c.ok("account", "entitle", "acme", "--images", "nginx,python*,team-a/*", "--packages", "os")
	var acct struct {
		Subscription  struct{ Images, Packages []string } `json:"subscription"`
		PackageAccess string                              `json:"package_access"`
		Status        string                              `json:"status"`
	}
	c.json(&acct, "account", "show", "acme")
	if !slices.Equal(acct.Subscription.Images, []string{"nginx", "python*", "team-a/*"}) || !slices.Equal(acct.Subscription.Packages, []string{"os"}) {
		t.Fatalf("subscription = %+v", acct.Subscription)
	}
	if msg := c.fail("account", "entitle", "acme", "--images", "Bad Pattern"); !strings.Contains(msg, "images[0]") {
		t.Fatalf("bad pattern message = %q", msg)
	}

	// Tokens: packages scope needs the grant.
	if msg := c.fail("token", "create", "--account", "acme", "--name", "pk", "--scope", "packages"); !strings.Contains(msg, "scope: the packages scope needs package access") {
		t.Fatalf("packages scope message = %q", msg)
	}
	c.ok("account", "request-packages", "acme")
	c.json(&acct, "account", "grant-packages", "acme")
	if acct.PackageAccess != "granted" {
		t.Fatalf("package access = %q", acct.PackageAccess)
	}
	var tok map[string]any
	c.json(&tok, "token", "create", "--account", "acme", "--name", "ci", "--description", "CI pulls", "--scope", "images,packages", "--expires", "2099-12-31")
	wantKeys := []string{"account", "created_at", "description", "expires_at", "id", "last_used_at", "max_bytes", "max_pulls", "name", "paused_at", "restrictions", "revoked_at", "scope", "secret", "status", "updated_at", "valid_from"}
	if keys := sortedKeys(tok); !slices.Equal(keys, wantKeys) {
		t.Fatalf("token JSON keys = %v, want %v", keys, wantKeys)
	}
	id := tok["id"].(string)
	secrets = append(secrets, tok["secret"].(string))
	if tok["expires_at"] != "2099-12-31T23:59:59Z" || tok["status"] != "active" || !slices.Equal(anyStrings(tok["scope"]), []string{"images", "packages"}) {
		t.Fatalf("created token = %v", tok)
	}
	c.json(&tok, "token", "show", id)
	if _, has := tok["secret"]; has {
		t.Fatal("token show without --reveal shows the secret")
	}
	if keys := sortedKeys(tok); !slices.Equal(keys, slices.DeleteFunc(slices.Clone(wantKeys), func(k string) bool { return k == "secret" })) {
		t.Fatalf("token show keys = %v", keys)
	}
	c.json(&tok, "token", "show", id, "--reveal")
	if tok["secret"] != secrets[len(secrets)-1] {
		t.Fatal("revealed secret differs from the created one")
	}
	show := c.ok("token", "show", id, "--reveal")
	for _, want := range []string{
		"docker login 127.0.0.1:", "kubectl create secret docker-registry", "--docker-password='" + secrets[len(secrets)-1] + "'",
		"/etc/apk/repositories", "HTTP_AUTH", "/etc/apt/auth.conf.d/", "'URIs: " + env["TOLLGATE_URL"] + "/apt/os' 'Suites: stable' 'Components: main'",
		"[signed-by=/etc/apt/keyrings/tollgate-os.gpg] " + env["TOLLGATE_URL"] + "/apt/os stable main", env["TOLLGATE_URL"] + "/keys/apt/os/key.gpg",
	} {
		if !strings.Contains(show, want) {
			t.Errorf("token show lacks %q:\n%s", want, show)
		}
	}
	if msg := c.fail("token", "create", "--account", "acme", "--name", "old", "--expires", "2001-01-01"); !strings.Contains(msg, "expires: must be in the future") {
		t.Fatalf("past expiry message = %q", msg)
	}
	if msg := c.fail("token", "create", "--account", "acme", "--name", "x", "--expires", "soon"); !strings.Contains(msg, "expires: ") {
		t.Fatalf("bad expiry message = %q", msg)
	}
	if msg := c.fail("token", "create", "--account", "acme", "--name", strings.Repeat("n", 101)); !strings.Contains(msg, "name: must be at most 100 characters") {
		t.Fatalf("long name message = %q", msg)
	}

	// Edit every field, expire now, extend, revoke.
	c.json(&tok, "token", "edit", id, "--name", "ci-2", "--description", "", "--scope", "images", "--expires", "never")
	if tok["name"] != "ci-2" || tok["description"] != "" || tok["expires_at"] != nil || !slices.Equal(anyStrings(tok["scope"]), []string{"images"}) {
		t.Fatalf("edited token = %v", tok)
	}
	c.json(&tok, "token", "edit", id, "--expires", "now")
	if tok["status"] != "expired" {
		t.Fatalf("after expire now: %v", tok)
	}
	var list []map[string]any
	c.json(&list, "token", "list", "--account", "acme", "--status", "expired")
	if len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("expired list = %v", list)
	}
	if out := c.ok("token", "show", id); !strings.Contains(out, "work again once it is extended") || !strings.Contains(out, "tollgate token extend "+id+" --expires") {
		t.Fatalf("an expired token's show does not offer extend:\n%s", out)
	}
	if msg := c.fail("token", "extend", id, "--expires", "2001-01-01"); !strings.Contains(msg, "expires: must be in the future") {
		t.Fatalf("extend into the past: %q", msg)
	}
	c.json(&tok, "token", "extend", id, "--expires", time.Now().Add(72*time.Hour).UTC().Format(time.RFC3339))
	if tok["status"] != "active" {
		t.Fatalf("extended token = %v", tok)
	}
	c.json(&tok, "token", "revoke", id)
	if tok["status"] != "revoked" || tok["revoked_at"] == nil {
		t.Fatalf("revoked token = %v", tok)
	}
	if msg := c.fail("token", "edit", id, "--name", "back"); !strings.Contains(msg, "revocation is final") {
		t.Fatalf("edit after revoke: %q", msg)
	}
	if out := c.ok("token", "list", "--account", "acme"); !strings.Contains(out, "1 of 100 tokens in use (revoked tokens don't count)") {
		t.Fatalf("token list footer: %s", out)
	}
	var all, unfiltered []map[string]any
	c.json(&all, "token", "list", "--account", "acme", "--status", "all")
	c.json(&unfiltered, "token", "list", "--account", "acme")
	if len(all) != 2 || len(all) != len(unfiltered) {
		t.Fatalf("--status all = %d tokens, no filter = %d", len(all), len(unfiltered))
	}

	// Suspension.
	c.ok("account", "suspend", "acme")
	c.json(&list, "token", "list", "--account", "acme", "--status", "suspended")
	if len(list) != 1 || list[0]["name"] != "default" {
		t.Fatalf("suspended tokens = %v", list)
	}
	c.ok("account", "resume", "acme")
	c.ok("account", "deny-packages", "acme")

	// Audit, newest first, paginated.
	var page struct {
		Events []struct {
			ID     int64  `json:"id"`
			Action string `json:"action"`
		} `json:"events"`
		NextBefore *int64 `json:"next_before"`
	}
	c.json(&page, "audit", "list", "--account", "acme", "--limit", "3")
	if len(page.Events) != 3 || page.Events[0].Action != "account.packages_denied" || page.NextBefore == nil {
		t.Fatalf("audit page = %+v", page)
	}
	if out := c.ok("audit", "list", "--account", "acme", "--limit", "500"); !strings.Contains(out, "token.revoked") || !strings.Contains(out, "account.created") {
		t.Fatalf("audit list = %s", out)
	}

	// Client errors name what is wrong; no server → a clear message.
	if msg := c.fail("token", "show", "tok_nope"); !strings.Contains(msg, "token tok_nope not found") {
		t.Fatalf("missing token: %q", msg)
	}
	bad := &cli{t: t, env: map[string]string{"TOLLGATE_URL": env["TOLLGATE_URL"], "TOLLGATE_ADMIN_KEY": strings.Repeat("x", 40)}}
	if msg := bad.fail("account", "list"); !strings.Contains(msg, "invalid API key") {
		t.Fatalf("bad admin key: %q", msg)
	}
	if msg := (&cli{t: t, env: map[string]string{}}).fail("account", "list"); !strings.Contains(msg, "TOLLGATE_URL") {
		t.Fatalf("no URL: %q", msg)
	}

	// No secret in the server's logs.
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("a secret appears in the logs")
		}
	}
	if logs.String() == "" {
		t.Fatal("no logs captured; the leak check would prove nothing")
	}

	// A second start reuses the data directory and its data.
	d.Main.Close()
	d2 := startDev(t, data, logs)
	if d2.Env["TOLLGATE_DEMO_TOKEN"] != demoToken || d2.Env["TOLLGATE_ADMIN_KEY"] != env["TOLLGATE_ADMIN_KEY"] {
		t.Fatal("second start changed the demo token or the admin key")
	}
	c2 := &cli{t: t, env: d2.Env}
	if out := c2.ok("account", "show", "acme"); !strings.Contains(out, "acme") {
		t.Fatalf("acme lost after restart: %s", out)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestServeWithPostgres runs `serve`'s Main with the PostgreSQL store and
// drives it with the CLI.
func TestServeWithPostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := config.GenerateKeys(keys); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "tollgate.yaml")
	os.WriteFile(cfgPath, []byte(`
listen: 127.0.0.1:0
public_url: https://registry.example.com
store:
  driver: postgres
keys:
  dir: `+keys+`
`), 0o600)
	lookup := func(k string) (string, bool) {
		if k == "TOLLGATE_STORE_POSTGRES_DSN" {
			return dsn, true
		}
		return "", false
	}
	cfg, err := loadConfig(lookup, cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"migrate", "--config", cfgPath}, nil, &out, &out, lookup); code != 0 {
		t.Fatalf("migrate: %s", out.String())
	}
	logs := &testenv.Buffer{}
	m := &Main{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c := &cli{t: t, env: map[string]string{"TOLLGATE_URL": m.URL, "TOLLGATE_ADMIN_KEY": m.AdminKey.Reveal()}}
	c.ok("account", "create", "pg-acme")
	var tok map[string]any
	c.json(&tok, "token", "create", "--account", "pg-acme", "--name", "ci")
	c.json(&tok, "token", "revoke", tok["id"].(string))
	if tok["status"] != "revoked" {
		t.Fatalf("revoke on postgres: %v", tok)
	}
	if out := c.ok("token", "show", tok["id"].(string)); strings.Contains(out, "docker login") {
		t.Fatal("a revoked token's show offers set-up commands")
	}
	var list []map[string]any
	c.json(&list, "token", "list", "--account", "pg-acme")
	if len(list) != 2 {
		t.Fatalf("tokens on postgres = %v", list)
	}
}

// TestTokenPolicyThroughCLI: restrictions, networks, valid-from, pause and
// resume from the command line; a bad flag names its field.
func TestTokenPolicyThroughCLI(t *testing.T) {
	c, _ := devCLI(t) // webhooks_test.go
	var tok struct {
		ID           string
		Status       string
		Restrictions struct{ Images, Packages, Networks []string }
	}
	c.json(&tok, "token", "create", "--account", "demo", "--name", "ci", "--restrict-images", "demo/hello",
		"--networks", "10.0.0.0/8,2001:db8::1", "-o", "json")
	if tok.Status != "active" || len(tok.Restrictions.Images) != 1 || len(tok.Restrictions.Networks) != 2 {
		t.Fatalf("created = %+v", tok)
	}
	show := c.ok("token", "show", tok.ID)
	for _, want := range []string{"Images:", "demo/hello", "Networks:", "10.0.0.0/8, 2001:db8::1/128", "every package repository of the subscription"} {
		if !strings.Contains(show, want) {
			t.Errorf("token show lacks %q:\n%s", want, show)
		}
	}
	if out := c.ok("token", "pause", tok.ID); !strings.Contains(out, "paused") {
		t.Fatalf("pause: %s", out)
	}
	if out := c.ok("token", "list", "--account", "demo", "--status", "paused"); !strings.Contains(out, tok.ID) {
		t.Fatalf("paused list: %s", out)
	}
	if out := c.ok("token", "resume", tok.ID); !strings.Contains(out, "active") {
		t.Fatalf("resume: %s", out)
	}
	if out := c.ok("token", "edit", tok.ID, "--networks", "", "--valid-from", "2099-01-01"); !strings.Contains(out, "scheduled") {
		t.Fatalf("edit: %s", out)
	}
	if msg := c.fail("token", "create", "--account", "demo", "--name", "x", "--networks", "10.0.0.0/99"); !strings.Contains(msg, "networks[0]") {
		t.Fatalf("bad network message = %q", msg)
	}
	// The stale-token report: nothing here has gone unused for 90 days.
	if out := c.ok("token", "list", "--account", "demo", "--unused-for", "90d"); !strings.Contains(out, "0 tokens not used for 90d") {
		t.Fatalf("stale report: %s", out)
	}
	if out := c.ok("token", "list", "--account", "demo", "--never-used"); !strings.Contains(out, tok.ID) || !strings.Contains(out, "tokens never used") {
		t.Fatalf("never-used report: %s", out)
	}
	if out := c.ok("token", "list", "--account", "demo", "--min-addresses", "5"); !strings.Contains(out, "0 tokens used from 5 or more addresses") {
		t.Fatalf("many-addresses report: %s", out)
	}
	if msg := c.fail("token", "list", "--account", "demo", "--min-addresses", "many"); !strings.Contains(msg, "min-addresses") {
		t.Fatalf("bad --min-addresses: %q", msg)
	}
	if out := c.ok("account", "policy", "demo", "--max-lifetime", "90d", "--networks", "10.0.0.0/8"); !strings.Contains(out, "expire within 90d; networks 10.0.0.0/8") {
		t.Fatalf("account policy: %s", out)
	}
	if msg := c.fail("token", "create", "--account", "demo", "--name", "forever"); !strings.Contains(msg, "requires tokens to expire within 90 days") {
		t.Fatalf("token past the account's lifetime: %q", msg)
	}
	c.ok("account", "policy", "demo")
	if out := c.ok("token", "pause-all", "--account", "demo"); !strings.Contains(out, "tokens of account demo paused") {
		t.Fatalf("pause-all: %s", out)
	}
	if out := c.ok("token", "revoke-all", "--account", "demo"); !strings.Contains(out, "tokens of account demo revoked") {
		t.Fatalf("revoke-all: %s", out)
	}
	if out := c.ok("token", "list", "--account", "demo", "--status", "active"); strings.Contains(out, "tok_") {
		t.Fatalf("a token survived revoke-all: %s", out)
	}
}
