// Command pull (bench/pull) measures what tollgate costs a large blob pull on
// loopback: the same blob pulled straight from the upstream registry and
// through a `tollgate serve` process, several interleaved runs each, median
// throughput and their ratio; and, with -rss, tollgate's peak resident
// memory (VmHWM) after pulling a small and a large blob, each in a fresh
// process, to show that the proxy streams instead of buffering.
//
// The upstream is an in-process distribution registry (filesystem storage
// in a temporary directory, HTTP Basic); tollgate is the real binary, built
// from this tree, configured with SQLite and freshly generated keys, and
// set up through its own CLI. Run it with scripts/bench-pull; see
// docs/benchmarks.md. It prints figures and fails only when a pull fails
// or returns the wrong bytes, never on a time.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/bench/internal/load"
	"github.com/tollgate/tollgate/bench/internal/proc"
	"github.com/tollgate/tollgate/internal/dev/upstream"
)

const (
	mib  = 1 << 20
	repo = "bench/blob"
	// copyBuf is the client's read buffer: large, so that the client is
	// not what limits a loopback pull.
	copyBuf = 1 << 20
)

func main() {
	if os.Getenv(driverEnv) != "" {
		if err := load.ServeEpollJob(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench-pull load driver:", err)
			os.Exit(1)
		}
		return
	}
	if mode := os.Getenv(controlEnv); mode != "" {
		if err := serveControl(mode, os.Getenv(controlListenEnv), os.Getenv(controlUpstreamEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "bench-pull control proxy:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "edge" {
		err = runEdge(ctx, os.Args[2:], os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout)
	}
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			fmt.Fprintln(os.Stderr, "bench-pull: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench-pull:", err)
		os.Exit(1)
	}
}

type options struct {
	size     int64
	runs     int
	rss      bool
	rssSizes []int64
	tollgate string // prebuilt binary; empty: go build ./cmd/tollgate
	keep     bool
	controls bool
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench-pull", flag.ContinueOnError)
	size := fs.String("size", "256MiB", "blob size for the throughput runs (B, KiB, MiB, GiB)")
	runs := fs.Int("runs", 5, "timed pulls per path (direct, tollgate), interleaved")
	rss := fs.Bool("rss", true, "measure tollgate's peak RSS after pulling each of -rss-sizes in a fresh process")
	rssSizes := fs.String("rss-sizes", "64MiB,512MiB", "blob sizes for -rss, comma separated")
	quick := fs.Bool("quick", false, "smoke mode: -size 64MiB -runs 2, and -rss only if given")
	bin := fs.String("tollgate", "", "use this tollgate binary instead of building ./cmd/tollgate")
	keep := fs.Bool("keep", false, "keep the temporary directory (printed) for inspection")
	controls := fs.Bool("controls", false, "also pull through two control proxies in their own processes: a bare httputil.ReverseProxy and a TCP relay")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["size"] {
			*size = "64MiB"
		}
		if !set["runs"] {
			*runs = 2
		}
		if !set["rss"] {
			*rss = false
		}
	}
	o := options{runs: *runs, rss: *rss, tollgate: *bin, keep: *keep, controls: *controls}
	var err error
	if o.size, err = parseSize(*size); err != nil {
		return options{}, fmt.Errorf("-size: %w", err)
	}
	for _, s := range strings.Split(*rssSizes, ",") {
		n, err := parseSize(s)
		if err != nil {
			return options{}, fmt.Errorf("-rss-sizes: %w", err)
		}
		o.rssSizes = append(o.rssSizes, n)
	}
	if o.runs < 1 {
		return options{}, errors.New("-runs: must be at least 1")
	}
	return o, nil
}

// parseSize reads "256MiB", "1GiB", "64KiB" or a byte count.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size like 256MiB", s)
	}
	return n * mult, nil
}

func fmtSize(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%mib == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d B", n)
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-pull-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			fmt.Fprintln(out, "kept", tmp)
			return
		}
		err = errors.Join(err, os.RemoveAll(tmp))
	}()

	fmt.Fprintf(out, "bench-pull: %d CPUs (GOMAXPROCS %d), %s/%s, %s; nothing pinned: client, tollgate and upstream share these CPUs\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	printLoad(out)

	fmt.Fprintln(out, "building ./cmd/tollgate")
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

	blobs := map[int64]string{} // size -> digest
	sizes := []int64{o.size}
	if o.rss {
		sizes = append(sizes, o.rssSizes...)
	}
	for _, n := range sizes {
		if _, ok := blobs[n]; ok {
			continue
		}
		start := time.Now()
		d, err := upstream.PushBlob(ctx, reg, repo, n)
		if err != nil {
			return err
		}
		blobs[n] = d
		fmt.Fprintf(out, "pushed %s blob %s… in %.1fs\n", fmtSize(n), d[:19], time.Since(start).Seconds())
	}

	tg, err := newTollgate(ctx, tmp, bin, reg.URL, creds)
	if err != nil {
		return err
	}
	var procs []*proc.Process // stopped on the way out
	defer func() {
		for _, p := range procs {
			err = errors.Join(err, p.Stop())
		}
	}()
	tp, err := tg.start(ctx)
	if err != nil {
		return err
	}
	procs = append(procs, tp)
	secret, err := tg.setup(ctx)
	if err != nil {
		return err
	}

	client := &http.Client{Transport: &http.Transport{
		DisableCompression: true,
		ReadBufferSize:     256 << 10,
		MaxIdleConns:       8,
		IdleConnTimeout:    time.Minute,
	}}
	defer client.CloseIdleConnections()
	buf := make([]byte, copyBuf)
	// basic pulls with the upstream's own credentials from base, which is
	// the upstream or a control proxy that passes them on.
	basic := func(base string) pullFunc {
		return func(ctx context.Context, n int64, verify bool) (time.Duration, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+blobs[n], nil)
			if err != nil {
				return 0, err
			}
			req.SetBasicAuth(creds.User, creds.Password)
			return pull(client, req, n, blobs[n], verify, buf)
		}
	}
	proxied := func(ctx context.Context, n int64, verify bool) (time.Duration, error) {
		jwt, err := tg.bearer(ctx, client, secret)
		if err != nil {
			return 0, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, tg.url+"/v2/"+repo+"/blobs/"+blobs[n], nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+jwt)
		return pull(client, req, n, blobs[n], verify, buf)
	}
	paths := []*path{
		{name: "direct", pull: basic(reg.URL)},
		{name: "tollgate", pull: proxied, proc: tp},
	}
	if o.controls {
		for _, mode := range []string{controlReverseProxy, controlTCP} {
			p, url, err := startControl(ctx, tmp, mode, reg.URL)
			if err != nil {
				return err
			}
			procs = append(procs, p)
			paths = append(paths, &path{name: mode, pull: basic(url), proc: p})
		}
	}

	// One untimed pull each: checks the sha256, warms the page cache, the
	// connections and tollgate's token cache.
	for _, p := range paths {
		if _, err := p.pull(ctx, o.size, true); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	fmt.Fprintf(out, "\nthroughput: %s blob, %d runs per path, interleaved (sha256 checked on a warm-up pull of each path)\n", fmtSize(o.size), o.runs)
	fmt.Fprintf(out, "%-4s", "run")
	for _, p := range paths {
		fmt.Fprintf(out, " %18s", p.name+" MiB/s")
	}
	fmt.Fprintln(out)
	for i := range o.runs {
		fmt.Fprintf(out, "%-4d", i+1)
		// Rotate which path goes first so that drift (page cache, CPU
		// frequency, GC) does not favour one.
		for j := range paths {
			p := paths[(i+j)%len(paths)]
			if err := p.measure(ctx, o.size); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
		for _, p := range paths {
			fmt.Fprintf(out, " %18.0f", p.rates[i])
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "%-4s", "med")
	for _, p := range paths {
		fmt.Fprintf(out, " %18.0f", median(p.rates))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-4s", "CPU")
	for _, p := range paths {
		fmt.Fprintf(out, " %18s", p.cpuPerGiB())
	}
	fmt.Fprintln(out, "   (CPU s per GiB: client+upstream[+proxy])")
	direct := median(paths[0].rates)
	for _, p := range paths[1:] {
		fmt.Fprintf(out, "ratio %s/direct (medians): %.2f", p.name, median(p.rates)/direct)
		if p.name == "tollgate" {
			fmt.Fprint(out, " (goal >= 0.95)")
		}
		fmt.Fprintln(out)
	}
	if o.controls {
		// What tollgate itself costs, beyond the hop any proxy pays.
		fmt.Fprintf(out, "ratio tollgate/%s (medians): %.2f\n", controlReverseProxy, median(paths[1].rates)/median(paths[2].rates))
	}

	printLoad(out)

	for _, p := range procs {
		err = errors.Join(err, p.Stop())
	}
	procs = nil
	if err != nil || !o.rss {
		return err
	}

	fmt.Fprintf(out, "\npeak RSS of tollgate (VmHWM), one pull per fresh process:\n")
	fmt.Fprintf(out, "%-8s %14s %14s %12s\n", "blob", "before pull", "after pull", "pull MiB/s")
	seen := map[int64]bool{}
	for _, n := range o.rssSizes {
		if seen[n] {
			continue
		}
		seen[n] = true
		p, err := tg.start(ctx)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		// The token endpoint's work is part of "before": the pull's own
		// cost is the difference.
		if _, err := tg.bearer(ctx, client, secret); err != nil {
			return err
		}
		before, err := p.HWM()
		if err != nil {
			return err
		}
		d, err := proxied(ctx, n, false)
		if err != nil {
			return err
		}
		after, err := p.HWM()
		if err != nil {
			return err
		}
		procs = nil
		if err := p.Stop(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%-8s %11.1f MiB %11.1f MiB %12.0f\n", fmtSize(n), float64(before)/mib, float64(after)/mib, float64(n)/mib/d.Seconds())
	}
	return nil
}

type pullFunc func(ctx context.Context, size int64, verify bool) (time.Duration, error)

// path is one way to the blob, with what its timed pulls measured.
type path struct {
	name  string
	pull  pullFunc
	proc  *proc.Process // the proxy in between, if any
	rates []float64
	bytes int64
	// CPU time used during the timed pulls by this process (client and
	// upstream) and by the proxy.
	selfCPU, proxyCPU time.Duration
}

// measure does one timed pull and records its rate and CPU time.
func (p *path) measure(ctx context.Context, size int64) error {
	s0, p0, err := p.cpuNow()
	if err != nil {
		return err
	}
	d, err := p.pull(ctx, size, false)
	if err != nil {
		return err
	}
	s1, p1, err := p.cpuNow()
	if err != nil {
		return err
	}
	p.rates = append(p.rates, float64(size)/mib/d.Seconds())
	p.bytes += size
	p.selfCPU += s1 - s0
	p.proxyCPU += p1 - p0
	return nil
}

func (p *path) cpuNow() (self, proxy time.Duration, err error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, err
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if p.proc != nil {
		if proxy, err = p.proc.CPUTime(); err != nil {
			return 0, 0, err
		}
	}
	return self, proxy, nil
}

// cpuPerGiB is "client+upstream CPU s/GiB" plus "+proxy CPU s/GiB".
func (p *path) cpuPerGiB() string {
	if p.bytes == 0 {
		return "-"
	}
	gib := float64(p.bytes) / (1 << 30)
	s := fmt.Sprintf("%.2f", p.selfCPU.Seconds()/gib)
	if p.proc != nil {
		s += fmt.Sprintf("+%.2f", p.proxyCPU.Seconds()/gib)
	}
	return s
}

// pull sends req and reads the body to the end with buf, checking the
// status, the length and, when verify is set, the digest. The time runs
// from sending the request to the last byte.
func pull(c *http.Client, req *http.Request, size int64, digest string, verify bool, buf []byte) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return 0, fmt.Errorf("GET %s: %s: %s", req.URL.Redacted(), resp.Status, bytes.TrimSpace(msg))
	}
	h := sha256.New()
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if verify {
			h.Write(buf[:k])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("GET %s: after %d bytes: %w", req.URL.Redacted(), n, err)
		}
	}
	d := time.Since(start)
	if n != size {
		return 0, fmt.Errorf("GET %s: got %d bytes, want %d", req.URL.Redacted(), n, size)
	}
	if verify {
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
			return 0, fmt.Errorf("GET %s: body digest %s, want %s", req.URL.Redacted(), got, digest)
		}
	}
	return d, nil
}

// printLoad prints the load average: other work on the machine skews
// every figure here, and a load near the CPU count means it did.
func printLoad(out io.Writer) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		fmt.Fprintf(out, "load average (1, 5, 15 min): %s %s %s\n", f[0], f[1], f[2])
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tollgate is the configuration of the tollgate processes: one config,
// one database and one set of keys, shared by every process started.
type tollgate struct {
	dir, bin, config, log string
	url, host             string
	adminKey              string
}

func newTollgate(ctx context.Context, dir, bin, upstreamURL string, creds upstream.BasicAuth) (*tollgate, error) {
	return newTollgateWith(ctx, dir, bin, upstreamURL, creds, "", "")
}

// newTollgateWith is newTollgate with the store section replaced (""
// keeps SQLite in dir) and extra top-level YAML appended.
func newTollgateWith(ctx context.Context, dir, bin, upstreamURL string, creds upstream.BasicAuth, storeYAML, extraYAML string) (*tollgate, error) {
	t := &tollgate{dir: dir, bin: bin, config: filepath.Join(dir, "tollgate.yaml"), log: filepath.Join(dir, "tollgate.log")}
	keys := filepath.Join(dir, "keys")
	if out, err := exec.CommandContext(ctx, bin, "keys", "generate", "--dir", keys).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tollgate keys generate: %w: %s", err, out)
	}
	key, err := os.ReadFile(filepath.Join(keys, "admin.key"))
	if err != nil {
		return nil, err
	}
	t.adminKey = strings.TrimSpace(string(key))
	pwFile := filepath.Join(dir, "upstream-password")
	if err := os.WriteFile(pwFile, []byte(creds.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	// A free port, chosen once: every process started listens on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.host = ln.Addr().String()
	ln.Close()
	t.url = "http://" + t.host
	if storeYAML == "" {
		storeYAML = fmt.Sprintf("store:\n  driver: sqlite\n  sqlite:\n    path: %s\n", filepath.Join(dir, "tollgate.db"))
	}
	cfg := fmt.Sprintf(`listen: %s
public_url: %s
%skeys:
  dir: %s
log:
  format: text
  level: warn
upstream:
  url: %s
  username: %s
  password_file: %s
`, t.host, t.url, storeYAML, keys, upstreamURL, creds.User, pwFile) + extraYAML
	if err := os.WriteFile(t.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return t, nil
}

// start runs `tollgate serve` and waits until it accepts connections
// (it listens only once its store and keys are ready).
func (t *tollgate) start(ctx context.Context) (*proc.Process, error) {
	return proc.Start(ctx, exec.Command(t.bin, "serve", "--config", t.config), t.host, t.log)
}

// setup creates the account, entitles it to bench/** and creates a
// token, through the CLI as an operator would; it returns the secret.
func (t *tollgate) setup(ctx context.Context) (string, error) {
	if _, err := t.cli(ctx, "account", "create", "bench", "-o", "json"); err != nil {
		return "", err
	}
	if _, err := t.cli(ctx, "account", "entitle", "bench", "--images", "bench/**"); err != nil {
		return "", err
	}
	out, err := t.cli(ctx, "token", "create", "--account", "bench", "--name", "b", "-o", "json")
	if err != nil {
		return "", err
	}
	var tok struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.Secret == "" {
		return "", fmt.Errorf("tollgate token create: no secret in its JSON output (%v)", err)
	}
	return tok.Secret, nil
}

func (t *tollgate) cli(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, t.bin, args...)
	cmd.Env = append(os.Environ(), "TOLLGATE_URL="+t.url, "TOLLGATE_ADMIN_KEY="+t.adminKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tollgate %s: %w: %s", strings.Join(args[:2], " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// bearer fetches a pull JWT for the bench repository with the registry
// token as the Basic password, as docker login + pull would.
func (t *tollgate) bearer(ctx context.Context, c *http.Client, secret string) (string, error) {
	u := t.url + "/token?service=" + t.host + "&scope=repository:" + repo + ":pull"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("bench", secret)
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET /token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /token: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.Token == "" {
		return "", fmt.Errorf("GET /token: no token in the answer")
	}
	return tr.Token, nil
}
