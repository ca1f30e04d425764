package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/bench/internal/proc"
	"github.com/tollgate/tollgate/internal/dev/upstream"
	"github.com/tollgate/tollgate/internal/faultnet"
	"github.com/tollgate/tollgate/internal/testenv"
)

const replicas = 3

// env is everything the soak runs: redis-server, the schema, the
// upstream, the replicas and the links between them.
type env struct {
	dir, bin, adminKey string
	out                io.Writer

	redisAddr string
	redisMu   sync.Mutex
	redis     *proc.Process

	pgBase, schema string

	up *upstream.Registry

	reps []*replica

	// Set up by setup.
	control  []*cred   // never narrowed
	targets  []*target // one per change, in order
	random   []*cred   // unknown secrets and forged JWTs
	allCreds []*cred
	current  atomic.Pointer[target] // the target of the latest change: asked more often
	keep     bool
}

// replica is one `tollgate serve` and its links.
type replica struct {
	i               int
	host, url       string
	config, log     string
	redisLink, pgLk *faultnet.Link
	api             *api.Client
	http            *http.Client

	mu   sync.Mutex
	p    *proc.Process
	down bool // killed, stopped or restarting: transport errors expected
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startEnv(ctx context.Context, o options, out io.Writer) (*env, error) {
	dir, err := os.MkdirTemp("", "tollgate-soak-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, out: out, keep: o.keep}
	if o.keep {
		fmt.Fprintf(out, "working directory: %s\n", dir)
	}
	if e.bin, err = proc.Build(ctx, dir, o.tollgate); err != nil {
		return e, err
	}
	if out, err := exec.CommandContext(ctx, e.bin, "keys", "generate", "--dir", filepath.Join(dir, "keys")).CombinedOutput(); err != nil {
		return e, fmt.Errorf("tollgate keys generate: %w: %s", err, out)
	}
	key, err := os.ReadFile(filepath.Join(dir, "keys", "admin.key"))
	if err != nil {
		return e, err
	}
	e.adminKey = strings.TrimSpace(string(key))

	if _, err := exec.LookPath("redis-server"); err != nil {
		return e, errors.New("redis-server is needed (apt-get install redis-server)")
	}
	if e.redisAddr, err = freeAddr(); err != nil {
		return e, err
	}
	if err := e.startRedis(ctx); err != nil {
		return e, err
	}

	pgAddr, dsn, err := e.createSchema(ctx, o.postgres)
	if err != nil {
		return e, err
	}

	if e.up, err = upstream.Start(ctx, upstream.Options{}); err != nil {
		return e, err
	}
	if _, err := upstream.SeedDemo(ctx, e.up); err != nil {
		return e, err
	}

	for i := range replicas {
		r, err := e.newReplica(i, pgAddr, dsn)
		if err != nil {
			return e, err
		}
		e.reps = append(e.reps, r)
		// One at a time: the first runs the migrations.
		if err := r.start(ctx, e.bin); err != nil {
			return e, err
		}
	}
	return e, nil
}

// startRedis starts (or restarts) redis-server on its address, without
// persistence: a restarted Redis is empty, as a failed-over one may be.
func (e *env) startRedis(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(e.redisAddr)
	rdir := filepath.Join(e.dir, "redis")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return err
	}
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", rdir)
	p, err := proc.Start(ctx, cmd, e.redisAddr, filepath.Join(e.dir, "redis.log"))
	if err != nil {
		return err
	}
	e.redisMu.Lock()
	e.redis = p
	e.redisMu.Unlock()
	return nil
}

func (e *env) killRedis() {
	e.redisMu.Lock()
	p := e.redis
	e.redis = nil
	e.redisMu.Unlock()
	if p != nil {
		p.Signal(syscall.SIGKILL)
		p.Wait()
	}
}

// createSchema makes a schema of the soak's own in the test database and
// returns the database's host:port and a DSN whose host the links
// replace.
func (e *env) createSchema(ctx context.Context, dsn string) (string, string, error) {
	candidates := testenv.PostgresCandidates()
	if dsn != "" {
		candidates = []string{dsn}
	}
	var conn *pgx.Conn
	var err error
	for _, c := range candidates {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err = pgx.Connect(cctx, c)
		cancel()
		if err == nil {
			dsn = c
			break
		}
	}
	if conn == nil {
		return "", "", fmt.Errorf("PostgreSQL: %w (set -postgres or TOLLGATE_TEST_POSTGRES_DSN)", err)
	}
	defer conn.Close(context.Background())
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "", "", errors.New("PostgreSQL: the DSN must be a postgres:// URL with a host")
	}
	schema := "soak_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", "", fmt.Errorf("PostgreSQL: %w", err)
	}
	e.pgBase, e.schema = dsn, schema
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	return host, testenv.WithSearchPath(dsn, schema), nil
}

func (e *env) newReplica(i int, pgAddr, dsn string) (*replica, error) {
	host, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r := &replica{i: i, host: host, url: "http://" + host,
		config: filepath.Join(e.dir, fmt.Sprintf("replica%d.yaml", i)),
		log:    filepath.Join(e.dir, fmt.Sprintf("replica%d.log", i))}
	if r.redisLink, err = faultnet.Listen("127.0.0.1:0", e.redisAddr); err != nil {
		return nil, err
	}
	if r.pgLk, err = faultnet.Listen("127.0.0.1:0", pgAddr); err != nil {
		return nil, err
	}
	u, _ := url.Parse(dsn)
	u.Host = r.pgLk.Addr()
	// The settings: short TTLs so that a lost invalidation would
	// show within the run.
	cfg := fmt.Sprintf(`listen: %s
public_url: http://registry.soak.test
keys:
  dir: %s
store:
  driver: postgres
  postgres:
    dsn: %q
    connect_timeout: 5s
redis:
  mode: single
  addrs: [%s]
  key_prefix: "soak:"
cache:
  l1_ttl: 5s
  redis_ttl: 60s
  max_stale: 30s
tokens:
  jwt_lifetime: 24h
upstream:
  url: %s
log:
  format: json
  level: info
ops:
  listen: ""
  shutdown_timeout: 5s
`, host, filepath.Join(e.dir, "keys"), u.String(), r.redisLink.Addr(), e.up.URL)
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	r.http = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	r.api = &api.Client{BaseURL: r.url, Key: e.adminKey, HTTP: &http.Client{Timeout: 5 * time.Second}}
	return r, nil
}

func (r *replica) start(ctx context.Context, bin string) error {
	p, err := proc.Start(ctx, exec.Command(bin, "serve", "--config", r.config), r.host, r.log)
	if err != nil {
		return fmt.Errorf("replica %d: %w", r.i, err)
	}
	r.mu.Lock()
	r.p, r.down = p, false
	r.mu.Unlock()
	return nil
}

func (r *replica) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *replica) process() *proc.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// stopReplicas stops every replica with SIGTERM and reports those that
// did not exit 0.
func (e *env) stopReplicas() error {
	var errs []error
	for _, r := range e.reps {
		p := r.process()
		if p == nil {
			continue
		}
		p.Signal(syscall.SIGCONT)
		if err := p.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("replica %d: %w", r.i, err))
		} else if err := p.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("replica %d exited: %v", r.i, err))
		}
		r.mu.Lock()
		r.p = nil
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (e *env) close() error {
	var errs []error
	for _, r := range e.reps {
		if p := r.process(); p != nil {
			p.Signal(syscall.SIGCONT)
			errs = append(errs, p.Stop())
		}
		r.redisLink.Close()
		r.pgLk.Close()
	}
	e.killRedis()
	if e.up != nil {
		errs = append(errs, e.up.Close())
	}
	if e.schema != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, e.pgBase); err != nil {
			errs = append(errs, err)
		} else {
			_, err := conn.Exec(ctx, "DROP SCHEMA "+e.schema+" CASCADE")
			errs = append(errs, err, conn.Close(ctx))
		}
	}
	if !e.keep {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// accessLogs reads every replica's log and returns, per replica, the
// request ids of its access-log lines.
func (e *env) accessLogs() ([]map[string]bool, error) {
	var out []map[string]bool
	for _, r := range e.reps {
		f, err := os.Open(r.log)
		if err != nil {
			return nil, err
		}
		ids := map[string]bool{}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				ID string `json:"request_id"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.ID != "" {
				ids[line.ID] = true
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
		out = append(out, ids)
	}
	return out, nil
}
