package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// WrkPath is wrk's path, or "" when it is not installed.
func WrkPath() string {
	p, _ := exec.LookPath("wrk")
	return p
}

// RunWrk runs wrk (2 threads, fewer for one connection; conns connections, for d) with req's method,
// URL and headers, and reads its rate and latency percentiles. Answers
// outside 2xx/3xx and socket errors count as errors (wrk reports no
// finer); callers check one answer's exact status beforehand.
//
// Not for HEAD: wrk (4.1) reads the body a HEAD answer's Content-Length
// announces and so waits for ever; RunWrk refuses HEAD.
func RunWrk(ctx context.Context, wrk string, conns int, d time.Duration, req *http.Request) (Result, error) {
	if req.Method == http.MethodHead {
		return Result{}, fmt.Errorf("wrk cannot drive HEAD requests (it waits for the body Content-Length announces)")
	}
	args := []string{"-t" + strconv.Itoa(min(2, conns)), "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s", "--latency"}
	for k, vs := range req.Header {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	if req.Method != http.MethodGet {
		dir, err := os.MkdirTemp("", "wrk-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(dir)
		script := filepath.Join(dir, "method.lua")
		if err := os.WriteFile(script, []byte(fmt.Sprintf("wrk.method = %q\n", req.Method)), 0o600); err != nil {
			return Result{}, err
		}
		args = append(args, "-s", script)
	}
	args = append(args, req.URL.String())
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, wrk, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseWrk(stdout.String())
}

// parseWrk reads wrk --latency's report.
func parseWrk(out string) (Result, error) {
	var res Result
	var rate float64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && (f[0] == "50%" || f[0] == "90%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return res, err
			}
			*map[string]*time.Duration{"50%": &res.P50, "90%": &res.P90, "99%": &res.P99}[f[0]] = d
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err1 := strconv.Atoi(f[0])
			el, err2 := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err1 != nil || err2 != nil {
				return res, fmt.Errorf("wrk: cannot read %q", sc.Text())
			}
			res.Requests, res.Elapsed = n, el
		case strings.HasPrefix(sc.Text(), "  Socket errors:"):
			// connect N, read N, write N, timeout N
			for _, part := range strings.Split(strings.TrimPrefix(sc.Text(), "  Socket errors:"), ",") {
				if kv := strings.Fields(part); len(kv) == 2 {
					n, _ := strconv.Atoi(kv[1])
					res.Errors += n
					if n > 0 && res.FirstError == "" {
						res.FirstError = "socket " + kv[0] + " errors"
					}
				}
			}
		case strings.HasPrefix(sc.Text(), "  Non-2xx or 3xx responses:"):
			n, _ := strconv.Atoi(f[len(f)-1])
			res.Errors += n
			if n > 0 && res.FirstError == "" {
				res.FirstError = "non-2xx/3xx answers"
			}
		case len(f) == 2 && f[0] == "Requests/sec:":
			rate, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	if res.Requests == 0 || rate == 0 {
		return res, fmt.Errorf("wrk: no figures in its report:\n%s", out)
	}
	// wrk's rate counts every answer over its own clock; keep Rate() the
	// same definition as Run's (successful answers per second).
	res.Elapsed = time.Duration(float64(res.Requests) / rate * float64(time.Second))
	return res, nil
}

// parseWrkDuration reads wrk's "812.00us", "1.99ms", "1.02s", "2.00m".
func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk: bad latency %q", s)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("wrk: bad latency %q", s)
}
