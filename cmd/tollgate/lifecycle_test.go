package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/faultnet"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/postgres"
)

// serveConfig writes a serve config on PostgreSQL at dsn (passed in the
// environment, as a Secret would be) and returns run's arguments and env.
func serveConfig(t *testing.T, dsn, connectTimeout string) ([]string, env) {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := config.GenerateKeys(keys); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tollgate.yaml")
	os.WriteFile(path, []byte(`
listen: 127.0.0.1:0
public_url: https://registry.example.com
store:
  driver: postgres
  postgres:
    connect_timeout: `+connectTimeout+`
keys:
  dir: `+keys+`
`), 0o600)
	lookup := func(k string) (string, bool) {
		if k == "TOLLGATE_STORE_POSTGRES_DSN" {
			return dsn, true
		}
		return "", false
	}
	return []string{"serve", "--config", path}, lookup
}

// serveExit runs `tollgate serve` as main does and returns its exit
// status, its stderr and how long it took.
func serveExit(t *testing.T, ctx context.Context, args []string, lookup env) (int, string, time.Duration) {
	t.Helper()
	var stdout, stderr testenv.Buffer
	start := time.Now()
	done := make(chan int, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("serve panicked: %v", p)
				done <- -1
			}
		}()
		done <- run(ctx, args, nil, &stdout, &stderr, lookup)
	}()
	select {
	case code := <-done:
		return code, stderr.String(), time.Since(start)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve still running after 30 s; stderr:\n%s", stderr.String())
		return 0, "", 0
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// blackhole accepts connections and never answers (a firewall that
// drops, a server that hangs): it returns its address.
func blackhole(t *testing.T) string {
	l, err := faultnet.ListenBlackhole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr()
}

func checkOneLineReason(t *testing.T, stderr string, want ...string) {
	t.Helper()
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Fatalf("stderr holds a panic:\n%s", stderr)
	}
	if strings.Contains(stderr, "hunter2") {
		t.Fatalf("stderr holds the DSN's password:\n%s", stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 {
		t.Fatalf("want one line on stderr, got %d:\n%s", len(lines), stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Fatalf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

// TestServeWithUnreachableStoreExitsWithReason: PostgreSQL refusing
// connections at start used to panic in postgres.(*DB).Close (a typed nil
// store) and hide the reason. Now serve retries for connect_timeout and
// exits 1 with one line that says why, without the password.
func TestServeWithUnreachableStoreExitsWithReason(t *testing.T) {
	args, lookup := serveConfig(t, "postgres://tollgate:hunter2@"+closedPort(t)+"/test?sslmode=disable", "1s")
	code, stderr, took := serveExit(t, context.Background(), args, lookup)
	t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
	if code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	checkOneLineReason(t, stderr, "tollgate: store: PostgreSQL unreachable", "connection refused", "attempts")
	if took < 500*time.Millisecond {
		t.Errorf("gave up after %v: no retry with back-off", took)
	}
}

// TestServeWithBlackholedStoreExitsWithinDeadline: a store that accepts
// connections and never answers used to hang start-up for minutes without
// a port open. Every attempt is bounded by connect_timeout, and so is the
// whole wait; a signal during it ends start-up at once.
func TestServeWithBlackholedStoreExitsWithinDeadline(t *testing.T) {
	addr := blackhole(t)
	args, lookup := serveConfig(t, "postgres://tollgate:hunter2@"+addr+"/test?sslmode=disable", "1s")
	code, stderr, took := serveExit(t, context.Background(), args, lookup)
	t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
	if code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	checkOneLineReason(t, stderr, "tollgate: store: PostgreSQL unreachable", "timeout")
	if took > 3*time.Second {
		t.Errorf("exited after %v with connect_timeout 1s", took)
	}

	t.Run("SignalDuringStartUp", func(t *testing.T) {
		args, lookup := serveConfig(t, "postgres://tollgate:hunter2@"+addr+"/test?sslmode=disable", "60s")
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel) // SIGTERM
		code, stderr, took := serveExit(t, ctx, args, lookup)
		t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
		if code != 1 || took > 3*time.Second {
			t.Fatalf("exit %d after %v, want 1 soon after the signal", code, took)
		}
		checkOneLineReason(t, stderr, "start-up stopped while waiting for PostgreSQL")
	})
}

// TestMaxConnsApplied: store.postgres.max_conns was parsed and validated
// but the pool kept pgx's default (max(4, CPUs)).
func TestMaxConnsApplied(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	for _, n := range []int{1, 13, 40} {
		cfg := config.Default()
		cfg.Store.Driver = config.DriverPostgres
		cfg.Store.Postgres.DSN = tollgate.Secret(dsn)
		cfg.Store.Postgres.MaxConns = n
		st, err := openStore(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.(*postgres.DB).MaxConns(); got != n {
			t.Errorf("max_conns %d: pool size %d", n, got)
		}
		st.Close()
	}
}

// TestDrainTimeoutSaysStreamsWereCut: a drain that outlived
// ops.shutdown_timeout used to end in "context deadline exceeded". It
// now cuts what is left, logs how many streams it cut and returns an
// error whose exit status is exitDrainCut.
func TestDrainTimeoutSaysStreamsWereCut(t *testing.T) {
	up := newCuttableUpstream(t)
	e := newOpsEnv(t, func(c *config.Config) {
		c.Ops.ShutdownTimeout = config.Duration(500 * time.Millisecond)
		c.Upstream.URL = up.URL
	})
	resp := startBlobPull(t, e)
	defer resp.Body.Close()

	start := time.Now()
	err := e.m.Close()
	took := time.Since(start)
	var cut *drainCutError
	if !errors.As(err, &cut) || cut.streams != 1 {
		t.Fatalf("Close = %v; want a drainCutError with 1 stream", err)
	}
	if code := cut.ExitCode(); code != exitDrainCut {
		t.Fatalf("exit status %d", code)
	}
	if !strings.Contains(e.logs.String(), "1 streams cut") {
		t.Fatalf("no \"1 streams cut\" line:\n%s", e.logs.String())
	}
	t.Logf("closed in %v: %v", took.Round(time.Millisecond), err)
	if took > 5*time.Second {
		t.Errorf("Close took %v with shutdown_timeout 500ms", took)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("the stream was not cut")
	}
}

// cuttableUpstream is an upstream registry whose one blob (blobSize
// bytes, digest blobDigest) sends its first MiB and then waits: for Cut,
// which drops the connection mid-blob, or for the test's end.
type cuttableUpstream struct {
	URL  string
	cut  chan struct{}
	once sync.Once
}

const (
	blobSize   = 64 << 20
	blobDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
)

func newCuttableUpstream(t *testing.T) *cuttableUpstream {
	u := &cuttableUpstream{cut: make(chan struct{})}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(blobSize))
		w.Header().Set("Docker-Content-Digest", blobDigest)
		w.Write(make([]byte, 1<<20))
		w.(http.Flusher).Flush()
		select {
		case <-u.cut:
			panic(http.ErrAbortHandler) // the connection is dropped mid-body
		case <-done:
		case <-r.Context().Done():
		}
	}))
	u.URL = srv.URL
	t.Cleanup(func() { close(done); srv.CloseClientConnections(); srv.Close() })
	return u
}

// Cut drops the blob's connection to tollgate mid-body.
func (u *cuttableUpstream) Cut() { u.once.Do(func() { close(u.cut) }) }

// startBlobPull gets a JWT for demo/big and starts pulling blobDigest,
// reading its first MiB only: the rest stays in flight.
func startBlobPull(t *testing.T, e *opsEnv) *http.Response {
	t.Helper()
	secret := e.demoToken(t)
	base := "http://" + e.host
	q := url.Values{"service": {e.m.Config.Service}, "scope": {"repository:demo/big:pull"}}
	_, body, _ := get(t, base+"/token?"+q.Encode(), map[string]string{"Authorization": "Basic " + basic("u", secret)})
	var tr struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tr); err != nil || tr.Token == "" {
		t.Fatalf("/token: %v %s", err, body)
	}
	req, _ := http.NewRequest("GET", base+"/v2/demo/big/blobs/"+blobDigest, nil)
	req.Header.Set("Authorization", "Bearer "+tr.Token)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("blob GET: %v %v", resp, err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	return resp
}

// accessLine returns the access log line of the request to path, waiting
// for it a little (a cut request is logged as its handler unwinds).
func accessLine(t *testing.T, logs *testenv.Buffer, path string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "request" && rec["path"] == path {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log line for %s:\n%s", path, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCutPullsAreAccounted: a pull cut short (the upstream gone mid-blob,
// the client gone) left no access log line and no request metric, because
// the reverse proxy aborts with http.ErrAbortHandler and the observer
// logged only after a normal return. Both now have their line, with the
// bytes actually sent and why the request ended, and their metrics.
func TestCutPullsAreAccounted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cut     func(up *cuttableUpstream, resp *http.Response)
		outcome string
	}{
		{"UpstreamGoneMidBlob", func(up *cuttableUpstream, resp *http.Response) { up.Cut() }, "aborted"},
		{"ClientGoneMidBlob", func(up *cuttableUpstream, resp *http.Response) { resp.Body.Close() }, "client_gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newCuttableUpstream(t)
			e := newOpsEnv(t, func(c *config.Config) { c.Upstream.URL = up.URL })
			resp := startBlobPull(t, e)
			defer resp.Body.Close()
			tc.cut(up, resp)
			io.Copy(io.Discard, resp.Body)

			path := "/v2/demo/big/blobs/" + blobDigest
			rec := accessLine(t, e.logs, path)
			t.Logf("access line: %v", rec)
			if rec["outcome"] != tc.outcome || rec["status"] != float64(200) || rec["repository"] != "demo/big" || rec["token_id"] == nil {
				t.Errorf("access line %v; want outcome %s, status 200, repository and token", rec, tc.outcome)
			}
			if b := rec["bytes"].(float64); b < 1<<20 || b >= blobSize {
				t.Errorf("bytes %v: want what was sent, at least 1 MiB and less than the blob", b)
			}
			_, body, _ := get(t, e.m.OpsURL+"/metrics", nil)
			for _, series := range []string{
				`tollgate_http_requests_total{code="200",route="v2"}`,
				`tollgate_http_responses_cut_total{outcome="` + tc.outcome + `",route="v2"}`,
				`tollgate_bytes_streamed_total{kind="image"}`,
			} {
				if v, ok := metricValue(body, series); !ok || v == 0 {
					t.Errorf("%s = %v, %v", series, v, ok)
				}
			}
			if v, _ := metricValue(body, `tollgate_inflight_streams`); v != 0 {
				t.Errorf("tollgate_inflight_streams = %v after the cut", v)
			}
		})
	}
}

// TestCacheStateIsExported: the token cache's mode, its invalidation log
// position, lag and reads, replays and ignored Redis entries are on
// /metrics, so that a replica not hearing revocations can be seen.
func TestCacheStateIsExported(t *testing.T) {
	e := newOpsEnv(t, nil)
	secret := e.demoToken(t)
	get(t, "http://"+e.host+"/token?scope=repository:demo/hello:pull", map[string]string{"Authorization": "Basic " + basic("u", secret)})
	if _, err := e.m.Service.SetSubscription(context.Background(), "operator", "acme", tollgate.Subscription{}); err != nil {
		t.Fatal(err) // a narrowing change: one entry in the log
	}
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body, _ = get(t, e.m.OpsURL+"/metrics", nil)
		if v, _ := metricValue(body, `tollgate_cache_invalidation_log_seq`); v > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := map[string]float64{
		`tollgate_cache_mode{mode="normal"}`:       1,
		`tollgate_cache_mode{mode="revalidating"}`: 0,
		`tollgate_cache_mode{mode="stale"}`:        0,
		`tollgate_cache_invalidations_pending`:     0,
	}
	for series, v := range want {
		if got, ok := metricValue(body, series); !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	for _, series := range []string{
		`tollgate_cache_invalidation_log_seq`,
		`tollgate_cache_invalidation_log_reads_total{result="ok"}`,
	} {
		if got, ok := metricValue(body, series); !ok || got == 0 {
			t.Errorf("%s = %v (present %v), want > 0", series, got, ok)
		}
	}
	for _, series := range []string{
		`tollgate_cache_invalidation_log_lag_seconds`, `tollgate_cache_invalidations_replayed_total`,
		`tollgate_cache_redis_repairs_total`, `tollgate_cache_l2_ignored_total`,
		`tollgate_cache_invalidation_log_reads_total{result="error"}`,
		`tollgate_cache_invalidation_log_pruned_total`, `tollgate_cache_pruned_behind_total`,
	} {
		if _, ok := metricValue(body, series); !ok {
			t.Errorf("%s missing", series)
		}
	}
}

// hangingStore is a store whose Ping never answers (a blackholed
// PostgreSQL): it returns when its context ends.
type hangingStore struct{ tollgate.Store }

func (hangingStore) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestReadyzWithHangingStoreStillProbesTheRest: a hanging store used to
// spend the whole 2 s budget of /readyz, which then reported Redis and
// the upstream as unreachable although both were fine. Each dependency
// is now probed at the same time with its own deadline, and a shared
// dependency down keeps the replica ready.
func TestReadyzWithHangingStoreStillProbesTheRest(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	e := newOpsEnv(t, func(c *config.Config) {
		c.Redis.Mode = "single"
		c.Redis.Addrs = []string{redisAddr}
		c.Redis.KeyPrefix = "tgtest-readyz:"
	})
	e.m.Store = hangingStore{e.m.Store}
	start := time.Now()
	code, body, _ := get(t, e.m.OpsURL+"/readyz", nil)
	took := time.Since(start)
	t.Logf("/readyz in %v: %d %q", took.Round(time.Millisecond), code, body)
	for _, want := range []string{"ready\n", "store: unreachable", "redis: ok", "upstream registry: ok"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz body lacks %q", want)
		}
	}
	if code != 200 {
		t.Errorf("/readyz = %d with only the (shared) store hanging", code)
	}
	if took > 2*time.Second {
		t.Errorf("/readyz took %v, more than the probe's budget", took)
	}
}

// TestCloseRightAfterRunNeverPanics: Close as soon as Run returns (a test
// cleanup, a SIGTERM at start-up) must not race with the goroutine that
// starts serving: it once read m.server after Close had cleared it, a nil
// pointer panic, about one run in a hundred under load.
func TestCloseRightAfterRunNeverPanics(t *testing.T) {
	if err := (&Main{Config: config.Default()}).Close(); err != nil {
		t.Fatalf("Close before Run: %v", err)
	}
	for i := range 20 {
		e := newOpsEnv(t, nil)
		if err := e.m.Close(); err != nil {
			t.Fatalf("run %d: Close: %v", i, err)
		}
		if err := e.m.Close(); err != nil {
			t.Fatalf("run %d: a second Close: %v", i, err)
		}
	}
}
