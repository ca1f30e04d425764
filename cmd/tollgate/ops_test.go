package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/dev/upstream"
	"github.com/tollgate/tollgate/internal/testenv"
)

// opsEnv is one server (SQLite, no Redis) with an upstream, its ops
// listener and captured JSON logs.
type opsEnv struct {
	m    *Main
	up   *upstream.Registry
	logs *testenv.Buffer
	host string
}

func newOpsEnv(t *testing.T, mod func(*config.Config)) *opsEnv {
	t.Helper()
	dir := t.TempDir()
	if err := config.GenerateKeys(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	up, err := upstream.Start(context.Background(), upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	if _, err := upstream.SeedDemo(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	opsLn, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = "http://" + ln.Addr().String()
	cfg.Store.SQLite.Path = filepath.Join(dir, "t.db")
	cfg.Keys.Dir = filepath.Join(dir, "keys")
	cfg.Upstream.URL = up.URL
	if mod != nil {
		mod(cfg)
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &opsEnv{up: up, logs: &testenv.Buffer{}, host: ln.Addr().String()}
	e.m = &Main{Config: cfg, Listener: ln, OpsListener: opsLn, Logger: slog.New(slog.NewJSONHandler(e.logs, nil))}
	if err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.m.Close() })
	return e
}

func (e *opsEnv) demoToken(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	if _, err := e.m.Service.Account(ctx, "acme"); err != nil {
		e.m.Service.CreateAccount(ctx, "operator", "acme")
		e.m.Service.SetSubscription(ctx, "operator", "acme", tollgate.Subscription{Images: []string{"demo/**"}})
	}
	_, secret, err := e.m.Service.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return secret.Reveal()
}

func get(t *testing.T, u string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestMetricsMoveWithTraffic(t *testing.T) {
	e := newOpsEnv(t, nil)
	secret := e.demoToken(t)
	opts := []crane.Option{crane.Insecure, crane.WithAuth(&authn.Basic{Username: "u", Password: secret})}
	if _, err := crane.Pull(e.host+"/demo/hello:latest", opts...); err != nil {
		t.Fatal(err)
	}
	img, _ := crane.Pull(e.host+"/demo/hello:latest", opts...)
	layers, _ := img.Layers()
	rc, _ := layers[0].Compressed()
	io.Copy(io.Discard, rc)
	rc.Close()
	bad := tollgate.NewSecret(tollgate.TokenPrefix).Reveal()
	crane.Digest(e.host+"/demo/hello:latest", crane.Insecure, crane.WithAuth(&authn.Basic{Username: "u", Password: bad}))

	code, body, _ := get(t, e.m.OpsURL+"/metrics", nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`tollgate_http_requests_total{code="200",route="v2"}`,
		`tollgate_http_requests_total{code="200",route="token"}`,
		`tollgate_http_requests_total{code="401",route="token"}`,
		`tollgate_auth_decisions_total{reason="bad_credentials",result="denied"}`,
		`tollgate_auth_decisions_total{reason="ok",result="ok"}`,
		`tollgate_bytes_streamed_total{kind="image"}`,
		`tollgate_token_issue_duration_seconds_count`,
		`tollgate_authorization_duration_seconds_count`,
		`tollgate_upstream_request_duration_seconds_count{upstream="registry"}`,
		`tollgate_cache_lookups_total{layer="l1",result="hit"}`,
		`tollgate_cache_lookups_total{layer="store",result="hit"}`,
		`tollgate_inflight_streams 0`,
	} {
		v, ok := metricValue(body, want)
		if !ok {
			t.Errorf("metric %s missing", want)
		} else if v == 0 && !strings.HasSuffix(want, " 0") {
			t.Errorf("metric %s did not move", want)
		}
	}
	for _, leak := range []string{secret, bad, "acme", "tok_"} {
		if strings.Contains(body, leak) {
			t.Errorf("metrics expose %q", leak[:min(6, len(leak))])
		}
	}
	// Metrics are not on the public listener unless configured.
	if code, _, _ := get(t, "http://"+e.host+"/metrics", nil); code == 200 {
		t.Fatal("/metrics is served on the public listener")
	}
}

// metricValue finds a sample by its name and labels prefix.
func metricValue(body, series string) (float64, bool) {
	series = strings.TrimSuffix(series, " 0")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") || strings.HasPrefix(line, series) && !strings.Contains(series, "{") && strings.HasPrefix(line, series+"{") {
			var v float64
			fields := strings.Fields(line)
			fmt.Sscan(fields[len(fields)-1], &v)
			return v, true
		}
	}
	return 0, false
}

func TestAccessLog(t *testing.T) {
	e := newOpsEnv(t, nil)
	secret := e.demoToken(t)
	if _, err := crane.Digest(e.host+"/demo/hello:latest", crane.Insecure, crane.WithAuth(&authn.Basic{Username: "u", Password: secret})); err != nil {
		t.Fatal(err)
	}
	get(t, "http://"+e.host+"/v2/demo/hello/tags/list", map[string]string{"Authorization": "Basic " + basic("u", secret), "X-Request-Id": "req-42"})
	var sawPull, sawTagged bool
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, secret) || strings.Contains(strings.ToLower(line), "authorization") {
			t.Fatalf("log line holds a secret or an Authorization header: %s", line)
		}
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "request" {
			continue
		}
		if rec["route"] == "v2" && rec["status"] == float64(200) && rec["repository"] == "demo/hello" && strings.HasPrefix(fmt.Sprint(rec["token_id"]), "tok_") &&
			rec["account"] == "acme" && rec["client_ip"] == "127.0.0.1" && rec["request_id"] != "" && rec["user_agent"] != "" {
			sawPull = true
		}
		if rec["request_id"] == "req-42" {
			sawTagged = true
		}
	}
	if !sawPull || !sawTagged {
		t.Fatalf("no complete access line for the pull (%v) or the tagged request (%v):\n%s", sawPull, sawTagged, e.logs.String())
	}
}

func basic(u, p string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(u, p)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestHealthAndReadiness(t *testing.T) {
	e := newOpsEnv(t, nil)
	if code, _, _ := get(t, e.m.OpsURL+"/healthz", nil); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body, _ := get(t, e.m.OpsURL+"/readyz", nil); code != 200 {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	// A shared dependency down is reported, but does not take every
	// replica out of the load balancer at once.
	e.up.Close()
	code, body, _ := get(t, e.m.OpsURL+"/readyz", nil)
	if code != 200 || !strings.Contains(body, "upstream registry: unreachable") {
		t.Fatalf("/readyz with the upstream down = %d %q", code, body)
	}
	if code, _, _ := get(t, e.m.OpsURL+"/healthz", nil); code != 200 {
		t.Fatal("liveness must not depend on the upstream")
	}
	// The store gone, even past max_stale, does not either: every replica
	// shares it and would flip at the same instant.
	e.m.Config.Cache.MaxStale = 0
	e.m.Store.Close()
	code, body, _ = get(t, e.m.OpsURL+"/readyz", nil)
	if code != 200 || !strings.Contains(body, "store: unreachable") || !strings.Contains(body, "past cache.max_stale") {
		t.Fatalf("/readyz with the store gone = %d %q", code, body)
	}
	// Draining (SIGTERM) makes it unready at once.
	e.m.draining.Store(true)
	if code, body, _ := get(t, e.m.OpsURL+"/readyz", nil); code != 503 || !strings.Contains(body, "shutting down") {
		t.Fatalf("/readyz while draining = %d %q", code, body)
	}
}

func TestBruteForceIsLimitedPerClient(t *testing.T) {
	e := newOpsEnv(t, func(c *config.Config) {
		c.Ops.TrustedProxies = []string{"127.0.0.1"}
		c.Limits = config.LimitsConfig{AuthFailuresPerMinute: 6, AuthFailureBurst: 5}
	})
	secret := e.demoToken(t)
	q := url.Values{"service": {e.m.Config.Service}, "scope": {"repository:demo/hello:pull"}}
	tokenURL := "http://" + e.host + "/token?" + q.Encode()
	// A good client pulls from 10.0.0.9 before the attack; its JWT keeps
	// working even from the attacker's own address.
	_, body, _ := get(t, tokenURL, map[string]string{"Authorization": "Basic " + basic("u", secret), "X-Forwarded-For": "10.0.0.9"})
	var tr struct{ Token string }
	json.Unmarshal([]byte(body), &tr)

	limited := 0
	for i := range 30 {
		bad := tollgate.NewSecret(tollgate.TokenPrefix).Reveal()
		code, _, hdr := get(t, tokenURL, map[string]string{"Authorization": "Basic " + basic("u", bad), "X-Forwarded-For": "10.0.0.1"})
		switch code {
		case 401:
			if limited > 0 {
				t.Fatalf("attempt %d: 401 after being limited", i)
			}
		case 429:
			limited++
			if hdr.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("attempt %d: status %d", i, code)
		}
		// The good client, from another address, is never slowed.
		if code, _, _ := get(t, tokenURL, map[string]string{"Authorization": "Basic " + basic("u", secret), "X-Forwarded-For": "10.0.0.2"}); code != 200 {
			t.Fatalf("good client got %d during the attack", code)
		}
	}
	if limited < 20 {
		t.Fatalf("only %d of 30 bad attempts were limited (burst 5)", limited)
	}
	// The limit refuses only attempts that fail: a valid secret passes
	// even from the attacker's own address (a cluster behind one NAT)…
	if code, _, _ := get(t, tokenURL, map[string]string{"Authorization": "Basic " + basic("u", secret), "X-Forwarded-For": "10.0.0.1"}); code != 200 {
		t.Fatalf("limited address with a good secret at /token: %d", code)
	}
	// …and so does a valid JWT.
	code, _, _ := get(t, "http://"+e.host+"/v2/demo/hello/tags/list", map[string]string{"Authorization": "Bearer " + tr.Token, "X-Forwarded-For": "10.0.0.1"})
	if code != 200 {
		t.Fatalf("valid JWT from a limited address: %d", code)
	}
	// Registry routes answer in the OCI envelope.
	code, body, _ = get(t, "http://"+e.host+"/v2/demo/hello/tags/list", map[string]string{"Authorization": "Basic " + basic("u", "x"), "X-Forwarded-For": "10.0.0.1"})
	if code != 429 || !strings.Contains(body, "TOOMANYREQUESTS") {
		t.Fatalf("v2 while limited: %d %s", code, body)
	}
	_, metrics, _ := get(t, e.m.OpsURL+"/metrics", nil)
	if v, _ := metricValue(metrics, `tollgate_auth_decisions_total{reason="rate_limited",result="denied"}`); v < 20 {
		t.Fatalf("rate_limited decisions = %v", v)
	}
}

// TestSIGTERMLetsAPullFinish runs the real binary, starts a large blob
// pull, sends SIGTERM in the middle of it, and checks that the pull
// completes and the process exits 0.
func TestSIGTERMLetsAPullFinish(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tollgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	up, err := upstream.Start(context.Background(), upstream.Options{Dir: filepath.Join(dir, "registry")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	const size = 256 << 20
	digest, err := upstream.PushBlob(context.Background(), up, "demo/big", size)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	config.GenerateKeys(keys)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "tollgate.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
listen: %s
public_url: http://%s
store: {driver: sqlite, sqlite: {path: %s}}
keys: {dir: %s}
upstream: {url: %s}
ops: {shutdown_timeout: 60s}
`, addr, addr, filepath.Join(dir, "t.db"), keys, up.URL)), 0o600)
	var stderr testenv.Buffer
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	base := "http://" + addr
	for i := 0; ; i++ {
		if code, _, _ := tryGet(base + "/healthz"); code == 200 {
			break
		}
		if i > 100 {
			t.Fatalf("server did not come up: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	adminKey, _ := os.ReadFile(filepath.Join(keys, "admin.key"))
	c := &cli{t: t, env: map[string]string{"TOLLGATE_URL": base, "TOLLGATE_ADMIN_KEY": strings.TrimSpace(string(adminKey))}}
	c.ok("account", "create", "acme")
	c.ok("account", "entitle", "acme", "--images", "demo/**")
	var tok map[string]any
	c.json(&tok, "token", "create", "--account", "acme", "--name", "big")
	q := url.Values{"service": {addr}, "scope": {"repository:demo/big:pull"}}
	_, body, _ := get(t, base+"/token?"+q.Encode(), map[string]string{"Authorization": "Basic " + basic("u", tok["secret"].(string))})
	var tr struct{ Token string }
	json.Unmarshal([]byte(body), &tr)

	req, _ := http.NewRequest("GET", base+"/v2/demo/big/blobs/"+digest, nil)
	req.Header.Set("Authorization", "Bearer "+tr.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("blob GET: %v %v", resp, err)
	}
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the server is draining now
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the server still accepts connections after SIGTERM")
	}
	rest, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || int64(len(first))+rest != size {
		t.Fatalf("pull during shutdown got %d of %d bytes: %v", int64(len(first))+rest, size, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not exit after the pull finished")
	}
}

func tryGet(u string) (int, string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestRequestSizeLimits(t *testing.T) {
	e := newOpsEnv(t, nil)
	big := strings.Repeat("a", 70<<10)
	code, _, _ := get(t, "http://"+e.host+"/v2/", map[string]string{"X-Padding": big})
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("70 KiB of headers: %d, want 431", code)
	}
	form := url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {big + big}}
	resp, err := http.PostForm("http://"+e.host+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("140 KiB token body: %d, want 400", resp.StatusCode)
	}
}
