// Command packages (bench/packages) measures what tollgate costs package clients on
// loopback. It runs the real binary (`tollgate dev`, built from this tree,
// in its own process) and compares, against the same files served by the
// same static file server code in this process:
//
//   - a large .deb fetched whole, several interleaved runs each way:
//     median MiB/s direct and through tollgate, and their ratio;
//   - N concurrent clients fetching small index files (InRelease,
//     Packages.gz, APKINDEX.tar.gz) for a while: requests/s and p50/p99
//     latency direct and through tollgate.
//
// Run it with scripts/bench-packages. It prints figures and fails only
// when a fetch fails or returns the wrong bytes, never on a time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/dev/pkgrepo"
)

func main() {
	size := flag.Int("size-mib", 100, "size of the large .deb, MiB")
	runs := flag.Int("runs", 5, "fetches of the large .deb each way")
	clients := flag.Int("clients", 32, "concurrent clients for the small-file test")
	dur := flag.Duration("duration", 10*time.Second, "length of the small-file test, each way")
	quick := flag.Bool("quick", false, "smoke run: 16 MiB, 2 runs, 2 s")
	flag.Parse()
	if *quick {
		*size, *runs, *dur = 16, 2, 2*time.Second
	}
	if err := run(*size, *runs, *clients, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "pkgbench:", err)
		os.Exit(1)
	}
}

func run(sizeMiB, runs, clients int, dur time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp, err := os.MkdirTemp("", "pkgbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "tollgate")
	fmt.Println("building tollgate ...")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tollgate").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(tmp, "data")
	cmd := exec.CommandContext(ctx, bin, "dev", "--data", data, "--listen", addr)
	logf, _ := os.Create(filepath.Join(tmp, "tollgate.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	env, err := waitEnv(filepath.Join(data, "dev.env"), 60*time.Second)
	if err != nil {
		return err
	}
	token := env["TOLLGATE_DEMO_TOKEN"]
	aptURL, apkURL := env["TOLLGATE_APT_URL"], env["TOLLGATE_APK_URL"]

	// The large package, written where dev's upstream serves it from.
	root := filepath.Join(data, "packages", "repos")
	big := pkgrepo.Package{Name: "bench-big", Version: "1.0", Store: true, Files: map[string][]byte{"usr/share/bench/big": randomBytes(sizeMiB << 20)}}
	deb, err := pkgrepo.BuildDeb(big)
	if err != nil {
		return err
	}
	rel := pkgrepo.PoolPath("main", big)
	debPath := filepath.Join(root, "apt", "os", filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(debPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(debPath, deb, 0o644); err != nil {
		return err
	}
	want := sha256.Sum256(deb)
	direct, err := pkgrepo.Serve(root, "")
	if err != nil {
		return err
	}
	defer direct.Close()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2, DisableCompression: true}}
	through := func(u string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.SetBasicAuth("tollgate", token)
		return req
	}
	straight := func(u string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		return req
	}
	directApt, directApk := direct.URL+"/apt/os", direct.URL+"/apk/os"

	// Correctness first: both ways give the same bytes.
	for _, req := range []*http.Request{through(aptURL + "/" + rel), straight(directApt + "/" + rel)} {
		h := sha256.New()
		if _, err := fetch(client, req, h); err != nil {
			return err
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			return errors.New("the large .deb came back different")
		}
	}

	fmt.Printf("\nlarge .deb (%d MiB), %d runs each way, interleaved:\n", sizeMiB, runs)
	var viaT, viaD []float64
	for i := 0; i < runs; i++ {
		for _, way := range []struct {
			req *http.Request
			out *[]float64
		}{{straight(directApt + "/" + rel), &viaD}, {through(aptURL + "/" + rel), &viaT}} {
			start := time.Now()
			n, err := fetch(client, way.req, io.Discard)
			if err != nil {
				return err
			}
			*way.out = append(*way.out, float64(n)/(1<<20)/time.Since(start).Seconds())
		}
	}
	md, mt := median(viaD), median(viaT)
	fmt.Printf("  direct:   median %8.1f MiB/s  %v\n", md, round(viaD))
	fmt.Printf("  tollgate: median %8.1f MiB/s  %v\n", mt, round(viaT))
	fmt.Printf("  ratio tollgate/direct: %.2f (goal >= 0.90)\n", mt/md)

	small := []string{"/dists/stable/InRelease", "/dists/stable/main/binary-amd64/Packages.gz"}
	fmt.Printf("\nsmall index files, %d clients for %v each way:\n", clients, dur)
	for _, way := range []struct {
		name string
		mk   func(i int) *http.Request
	}{
		{"direct", func(i int) *http.Request {
			if i%3 == 2 {
				return straight(directApk + "/x86_64/APKINDEX.tar.gz")
			}
			return straight(directApt + small[i%3])
		}},
		{"tollgate", func(i int) *http.Request {
			if i%3 == 2 {
				return through(apkURL + "/x86_64/APKINDEX.tar.gz")
			}
			return through(aptURL + small[i%3])
		}},
	} {
		n, lat, err := hammer(client, clients, dur, way.mk)
		if err != nil {
			return err
		}
		slices.Sort(lat)
		fmt.Printf("  %-8s  %8.0f req/s   p50 %6.2f ms   p99 %6.2f ms   (%d requests)\n", way.name, float64(n)/dur.Seconds(),
			ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), n)
	}
	return nil
}

func fetch(c *http.Client, req *http.Request, w io.Writer) (int64, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", req.URL.Path, resp.Status)
	}
	return io.Copy(w, resp.Body)
}

// hammer runs clients goroutines fetching mk(i) until dur has passed.
func hammer(c *http.Client, clients int, dur time.Duration, mk func(int) *http.Request) (int, []time.Duration, error) {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs []error
		wg   sync.WaitGroup
	)
	stop := time.Now().Add(dur)
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var mine []time.Duration
			for i := g; time.Now().Before(stop); i++ {
				start := time.Now()
				if _, err := fetch(c, mk(i), io.Discard); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(g)
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, nil, errs[0]
	}
	if len(lat) == 0 {
		return 0, nil, errors.New("no request finished")
	}
	return len(lat), lat, nil
}

func waitEnv(path string, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			env := map[string]string{}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok {
					env[k] = v
				}
			}
			f.Close()
			if env["TOLLGATE_APT_URL"] != "" {
				return env, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("tollgate dev did not write %s in %v", path, timeout)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func round(v []float64) []string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.0f", x))
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
