package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/bench/internal/chart"
	"github.com/tollgate/tollgate/bench/internal/load"
	"github.com/tollgate/tollgate/bench/internal/proc"
	"github.com/tollgate/tollgate/internal/dev/upstream"
)

// The edge suite (`bench-pull edge`, run by scripts/bench): request rates
// side by side, each target in its own process on the same CPUs as the
// load driver, with the load shape of wrk (fixed connections, fixed time):
//
//   - token issue: tollgate's GET /token (SQLite; with -postgres also
//     PostgreSQL + Redis) against a constant-answer HTTP server, the
//     ceiling of any HTTP handler here;
//   - HEAD manifest by tag (kubelet's imagePullPolicy: Always): the
//     upstream registry direct, a bare httputil.ReverseProxy, a TCP relay,
//     tollgate without and with its manifest cache.
//
// It prints a table and writes SVG charts; it fails only when a target
// answers wrongly, never on a time.

type edgeOptions struct {
	duration time.Duration
	conns    int
	charts   string
	postgres string // DSN; "" skips the PostgreSQL + Redis token run
	redis    string
	tollgate string
	driver   string // "wrk" or "go"
	// tokenRate: also measure tollgate's /token at this offered rate
	// (raw driver, latency from each request's due time).
	tokenRate float64
}

func runEdge(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("bench-pull edge", flag.ContinueOnError)
	var o edgeOptions
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "load time per target")
	fs.IntVar(&o.conns, "conns", 32, "concurrent keep-alive connections")
	fs.StringVar(&o.charts, "charts", "", "write SVG charts into this directory (e.g. docs/benchmarks)")
	fs.StringVar(&o.postgres, "postgres", "", "also measure /token on PostgreSQL (this DSN) + Redis (-redis)")
	fs.StringVar(&o.redis, "redis", "127.0.0.1:6379", "Redis address for the -postgres run")
	fs.StringVar(&o.tollgate, "tollgate", "", "use this tollgate binary instead of building ./cmd/tollgate")
	fs.Float64Var(&o.tokenRate, "token-rate", 20000, "also measure tollgate's /token latency at this offered rate, the goal's (tokens/s; 0: skip)")
	defaultDriver := "go"
	if load.WrkPath() != "" {
		defaultDriver = "wrk"
	}
	fs.StringVar(&o.driver, "driver", defaultDriver, "load driver: wrk (GET with wrk -t2, HEAD with this program's epoll driver in a process of its own, built as wrk is, since wrk cannot read HEAD answers; the default when wrk is installed) or go (net/http clients, wrk's load shape)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.driver != "wrk" && o.driver != "go" {
		return fmt.Errorf("-driver: want wrk or go, not %q", o.driver)
	}
	if o.driver == "wrk" && load.WrkPath() == "" {
		return errors.New("-driver wrk: wrk is not installed (apt-get install wrk), or use -driver go")
	}
	tmp, err := os.MkdirTemp("", "bench-edge-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	fmt.Fprintf(out, "bench edge: %d CPUs (GOMAXPROCS %d), %s/%s, %s; load driver %s, %d connections, %v per target; nothing pinned: load driver and targets share these CPUs\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), map[string]string{"wrk": "wrk (GET), epoll driver process (HEAD)", "go": "net/http"}[o.driver], o.conns, o.duration)
	if rev, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		fmt.Fprintf(out, "commit %s\n", strings.TrimSpace(string(rev)))
	}

	bin, err := proc.Build(ctx, tmp, o.tollgate)
	if err != nil {
		return err
	}
	creds := upstream.BasicAuth{User: "bench", Password: randomHex(16)}
	reg, err := upstream.Start(ctx, upstream.Options{Dir: filepath.Join(tmp, "registry"), BasicAuth: &creds})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	if _, err := upstream.Seed(ctx, reg, "bench/img:latest", upstream.SeedOptions{Seed: 7}); err != nil {
		return err
	}

	var procs []*proc.Process
	defer func() {
		for _, p := range procs {
			err = errors.Join(err, p.Stop())
		}
	}()
	start := func(name, storeYAML, extraYAML string) (*tollgate, string, error) {
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", err
		}
		tg, err := newTollgateWith(ctx, dir, bin, reg.URL, creds, storeYAML, extraYAML)
		if err != nil {
			return nil, "", err
		}
		p, err := tg.start(ctx)
		if err != nil {
			return nil, "", err
		}
		procs = append(procs, p)
		secret, err := tg.setup(ctx)
		return tg, secret, err
	}
	cached, cachedSecret, err := start("cached", "", "")
	if err != nil {
		return err
	}
	uncached, uncachedSecret, err := start("uncached", "", "cache:\n  manifest_bytes: 0\n")
	if err != nil {
		return err
	}
	controls := map[string]string{}
	for _, mode := range []string{controlReverseProxy, controlTCP, controlConstant} {
		p, url, err := startControl(ctx, tmp, mode, reg.URL)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		controls[mode] = url
	}

	basicReq := func(method, url, user, pass string, hdr ...string) func() *http.Request {
		return func() *http.Request {
			r, _ := http.NewRequest(method, url, nil)
			if user != "" {
				r.SetBasicAuth(user, pass)
			}
			for i := 0; i+1 < len(hdr); i += 2 {
				r.Header.Set(hdr[i], hdr[i+1])
			}
			return r
		}
	}
	type target struct {
		name   string
		method string
		req    func() *http.Request
		rate   float64 // offered requests/s (raw driver); 0: as fast as answered
	}
	measure := func(title string, targets []target) ([]chart.Bar, []chart.Row, error) {
		fmt.Fprintf(out, "\n%s\n", title)
		var bars []chart.Bar
		var rows []chart.Row
		for _, t := range targets {
			var res load.Result
			if t.rate > 0 {
				load.RunRaw(ctx, o.conns, o.duration/5, http.StatusOK, t.req()) // the warm-up
				res = load.RunRawAt(ctx, o.conns, o.duration, t.rate, http.StatusOK, t.req())
			} else if o.driver == "wrk" && t.method == http.MethodGet {
				// wrk only tells 2xx/3xx from the rest: one request
				// first, whose status must be exactly 200.
				if err := expectStatus(ctx, t.req(), http.StatusOK); err != nil {
					return nil, nil, fmt.Errorf("%s: %w", t.name, err)
				}
				if _, err := load.RunWrk(ctx, load.WrkPath(), o.conns, time.Second, t.req()); err != nil {
					return nil, nil, fmt.Errorf("%s: %w", t.name, err) // the warm-up
				}
				if res, err = load.RunWrk(ctx, load.WrkPath(), o.conns, o.duration, t.req()); err != nil {
					return nil, nil, fmt.Errorf("%s: %w", t.name, err)
				}
			} else if o.driver == "wrk" {
				// HEAD: wrk cannot read HEAD answers. The epoll driver is
				// built as wrk is (-t2), and runs in a process of its
				// own as wrk does, never in the upstream's runtime.
				for _, d := range []time.Duration{o.duration / 5, o.duration} { // the warm-up, then the run
					if res, err = runDriver(ctx, o.conns, d, t.req()); err != nil {
						return nil, nil, fmt.Errorf("%s: %w", t.name, err)
					}
				}
			} else {
				// A short warm-up (connections, caches, JIT of nothing).
				load.Run(ctx, o.conns, o.duration/5, http.StatusOK, t.req)
				res = load.Run(ctx, o.conns, o.duration, http.StatusOK, t.req)
			}
			fmt.Fprintf(out, "  %-34s %s\n", t.name, res)
			if res.Errors > 0 {
				return nil, nil, fmt.Errorf("%s: %d of %d requests failed (first: %s)", t.name, res.Errors, res.Requests, res.FirstError)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			bars = append(bars, chart.Bar{Label: t.name, Value: res.Rate(), Note: fmt.Sprintf("p99 %.1f ms", ms(res.P99))})
			rows = append(rows, chart.Row{Label: t.name, Values: []float64{ms(res.P50), ms(res.P90), ms(res.P99)}})
		}
		return bars, rows, nil
	}

	scope := "repository:bench/img:pull"
	tokenTargets := []target{
		{"tollgate /token (SQLite)", "GET", basicReq("GET", cached.url+"/token?service="+cached.host+"&scope="+scope, "bench", cachedSecret), 0},
		{constantTarget, "GET", basicReq("GET", controls[controlConstant]+"/token", "", ""), 0},
	}
	if o.postgres != "" {
		// A schema of its own, dropped at the end: runs never meet.
		schema := "bench_" + randomHex(6)
		conn, err := pgx.Connect(ctx, o.postgres)
		if err != nil {
			return fmt.Errorf("-postgres: %w", err)
		}
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			conn.Close(ctx)
			return fmt.Errorf("-postgres: %w", err)
		}
		defer func() {
			_, derr := conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			err = errors.Join(err, derr, conn.Close(context.Background()))
		}()
		dsn := o.postgres + map[bool]string{true: "&", false: "?"}[strings.Contains(o.postgres, "?")] + "search_path=" + schema
		pg, pgSecret, err := start("postgres", fmt.Sprintf("store:\n  driver: postgres\n  postgres:\n    dsn: %q\n", dsn),
			fmt.Sprintf("redis:\n  mode: single\n  addrs: [%q]\n  key_prefix: \"bench-%s:\"\n", o.redis, randomHex(4)))
		if err != nil {
			return err
		}
		tokenTargets = append(tokenTargets[:1], append([]target{{"tollgate /token (PostgreSQL+Redis)",
			"GET", basicReq("GET", pg.url+"/token?service="+pg.host+"&scope="+scope, "bench", pgSecret), 0}}, tokenTargets[1:]...)...)
	}
	if o.tokenRate > 0 {
		// Latency at a given load, not at saturation: what a fleet
		// asking for that many tokens a second sees.
		var at []target
		for _, t := range tokenTargets {
			if strings.HasPrefix(t.name, "tollgate") {
				at = append(at, target{fmt.Sprintf("%s at %s/s", t.name, chart.Number(o.tokenRate)), t.method, t.req, o.tokenRate})
			}
		}
		tokenTargets = append(tokenTargets, at...)
	}
	tokenBars, tokenRows, err := measure("GET /token, Basic, one scope (tokens/s)", tokenTargets)
	if err != nil {
		return err
	}

	accept := "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"
	bearer := func(tg *tollgate, secret string) (string, error) {
		c := &http.Client{Timeout: 10 * time.Second}
		u := tg.url + "/token?service=" + tg.host + "&scope=" + scope
		r, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		r.SetBasicAuth("bench", secret)
		resp, err := c.Do(r)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var tr struct{ Token string }
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tr); err != nil || tr.Token == "" {
			return "", fmt.Errorf("GET /token: %s", resp.Status)
		}
		return tr.Token, nil
	}
	// JWTs live 15 minutes: longer than the whole run.
	cachedJWT, err := bearer(cached, cachedSecret)
	if err != nil {
		return err
	}
	uncachedJWT, err := bearer(uncached, uncachedSecret)
	if err != nil {
		return err
	}
	if o.driver == "wrk" {
		// The HEAD driver against wrk, on what both can drive: GET
		// from the constant-answer server.
		res, err := runDriver(ctx, o.conns, o.duration, basicReq("GET", controls[controlConstant]+"/token", "", "")())
		if err != nil {
			return err
		}
		for _, b := range tokenBars {
			if b.Label == constantTarget {
				fmt.Fprintf(out, "  %-34s %s; wrk: %.0f req/s\n", "HEAD driver, GET constant answer", res, b.Value)
			}
		}
	}
	manifest := "/v2/bench/img/manifests/latest"
	manifestBars, manifestRows, err := measure("HEAD manifest by tag (requests/s)", []target{
		{"upstream direct (distribution)", "HEAD", basicReq("HEAD", reg.URL+manifest, creds.User, creds.Password, "Accept", accept), 0},
		{"bare httputil.ReverseProxy", "HEAD", basicReq("HEAD", controls[controlReverseProxy]+manifest, creds.User, creds.Password, "Accept", accept), 0},
		{"TCP relay (splice)", "HEAD", basicReq("HEAD", controls[controlTCP]+manifest, creds.User, creds.Password, "Accept", accept), 0},
		{"tollgate, no manifest cache", "HEAD", basicReq("HEAD", uncached.url+manifest, "", "", "Accept", accept, "Authorization", "Bearer "+uncachedJWT), 0},
		{"tollgate, manifest cache", "HEAD", basicReq("HEAD", cached.url+manifest, "", "", "Accept", accept, "Authorization", "Bearer "+cachedJWT), 0},
	})
	if err != nil {
		return err
	}
	if direct, withCache := manifestBars[0].Value, manifestBars[len(manifestBars)-1].Value; direct > 0 {
		fmt.Fprintf(out, "  tollgate with the manifest cache / upstream direct: %.2f (goal >= 3)\n", withCache/direct)
	}
	printLoad(out)

	if o.charts != "" {
		if err := os.MkdirAll(o.charts, 0o755); err != nil {
			return err
		}
		shape := fmt.Sprintf("%d connections, 2 shared CPUs", o.conns)
		charts := map[string]func(io.Writer) error{
			"tokens.svg": func(w io.Writer) error {
				return chart.Bars(w, "GET /token, Basic, one scope: "+shape, "tokens/s", tokenBars)
			},
			"manifests.svg": func(w io.Writer) error {
				return chart.Bars(w, "HEAD manifest by tag: "+shape, "req/s", manifestBars)
			},
			"tokens-latency.svg": func(w io.Writer) error {
				return chart.Grouped(w, "GET /token latency: "+shape, "ms", []string{"p50", "p90", "p99"}, tokenRows)
			},
			"manifests-latency.svg": func(w io.Writer) error {
				return chart.Grouped(w, "HEAD manifest latency: "+shape, "ms", []string{"p50", "p90", "p99"}, manifestRows)
			},
		}
		for name, draw := range charts {
			f, err := os.Create(filepath.Join(o.charts, name))
			if err != nil {
				return err
			}
			err = draw(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "charts written to %s (tokens.svg, manifests.svg, tokens-latency.svg, manifests-latency.svg)\n", o.charts)
	}
	return nil
}

const constantTarget = "constant-answer server (ceiling)"

// runDriver runs the HEAD load driver (load.RunEpollProcess) in a
// process of its own: this program again.
func runDriver(ctx context.Context, conns int, d time.Duration, req *http.Request) (load.Result, error) {
	self, err := os.Executable()
	if err != nil {
		return load.Result{}, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), driverEnv+"=1")
	return load.RunEpollProcess(ctx, cmd, 2, conns, d, http.StatusOK, req)
}

// expectStatus sends req once and checks its status.
func expectStatus(ctx context.Context, req *http.Request, want int) error {
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("answered %s, want %d", resp.Status, want)
	}
	return nil
}
