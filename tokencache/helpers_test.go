package tokencache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/faultnet"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/postgres"
	"github.com/tollgate/tollgate/store/sqlite"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newKeys(t testing.TB) *tollgate.Keys {
	t.Helper()
	k, err := tollgate.NewKeys(randomBytes(32), randomBytes(32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sqliteStore(t testing.TB) tollgate.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func postgresStore(t testing.TB, dsn string) tollgate.Store {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newClock returns an injectable clock at the current time that moves
// only when told. Pass Now and After together (Options) and the cache's
// retry pacing moves with it.
func newClock() *testenv.Clock { return testenv.NewClock(time.Now().UTC()) }

// redisClient returns a client for addr with short timeouts, as
// config.RedisOptions builds them.
func redisClient(t testing.TB, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{addr}, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		ContextTimeoutEnabled: true, MaxRetries: 1, DialerRetries: 1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// sharedRedis returns a client for the machine's Redis and a key prefix of
// the test's own, whose keys are deleted when the test ends.
func sharedRedis(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	client := redisClient(t, testenv.RedisAddr(t))
	prefix := "tgtest:" + hex.EncodeToString(randomBytes(6)) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, _ := client.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	})
	return client, prefix
}

// redisServer is a redis-server process of the test's own, to kill and
// restart.
type redisServer struct {
	t    testing.TB
	addr string
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRedis starts a redis-server on a free port, without persistence.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if testenv.Required() {
			t.Fatal("redis-server is required: ", err)
		}
		t.Skip("redis-server not installed")
	}
	s := &redisServer{t: t, addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server (again) on its address.
func (s *redisServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: no goodbye to clients) and waits for it.
func (s *redisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// tcpProxy forwards a local port to target; Stop makes the target
// unreachable for real (every connection, open or new, reset), Start
// restores it on the same port.
type tcpProxy struct {
	*faultnet.Link
	addr string
}

func startProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	l, err := faultnet.Listen("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &tcpProxy{Link: l, addr: l.Addr()}
}

func (p *tcpProxy) Start() { p.Set(faultnet.Up) }

func (p *tcpProxy) Stop() { p.Set(faultnet.Reset) }

// proxiedPostgres returns a fresh PostgreSQL schema's DSN reached through
// a proxy the test can stop.
func proxiedPostgres(t testing.TB) (string, *tcpProxy) {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("PostgreSQL DSN is not a URL with a host; cannot proxy it")
	}
	p := startProxy(t, u.Host)
	u.Host = p.addr
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	return u.String(), p
}

// countingStore counts the queries that reach a real store and can slow
// them down; it injects no failures.
type countingStore struct {
	tollgate.Store
	views   atomic.Int64
	delay   time.Duration
	mu      sync.Mutex
	batches [][]tollgate.TokenUsage
}

func (s *countingStore) View(ctx context.Context, fn func(tx tollgate.Tx) error) error {
	s.views.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	return s.Store.View(ctx, fn)
}

func (s *countingStore) RecordUsage(ctx context.Context, usage []tollgate.TokenUsage) error {
	err := s.Store.RecordUsage(ctx, usage)
	if err == nil {
		s.mu.Lock()
		s.batches = append(s.batches, append([]tollgate.TokenUsage(nil), usage...))
		s.mu.Unlock()
	}
	return err
}

// debugLogger logs every level as text into w (a testenv.Buffer).
func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fixture is a store with a service and one account holding one token.
type fixture struct {
	store  tollgate.Store
	keys   *tollgate.Keys
	svc    *tollgate.Service
	acct   *tollgate.Account
	tok    *tollgate.Token
	secret tollgate.Secret
}

func newFixture(t testing.TB, store tollgate.Store) *fixture {
	t.Helper()
	f := &fixture{store: store, keys: newKeys(t)}
	f.svc = tollgate.NewService(store, f.keys)
	var err error
	f.acct, f.tok, f.secret, err = f.svc.CreateAccount(context.Background(), "test", "acme-"+hex.EncodeToString(randomBytes(3)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) hash() []byte { return f.keys.Hash(f.secret) }

// newToken creates another token of the fixture's account.
func (f *fixture) newToken(t testing.TB) (*tollgate.Token, []byte) {
	t.Helper()
	tok, secret, err := f.svc.CreateToken(context.Background(), "test", tollgate.TokenCreate{
		Account: f.acct.Name, Name: "ci-" + hex.EncodeToString(randomBytes(3)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok, f.keys.Hash(secret)
}

func newCache(t testing.TB, o Options) *Cache {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs c.Run until the test ends.
func run(t testing.TB, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := tollgate.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func mustToken(t testing.TB, c *Cache, hash []byte) (*tollgate.Token, *tollgate.Account) {
	t.Helper()
	tok, acct, err := c.Token(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	return tok, acct
}
