// Package load drives HTTP load for the benchmark programs: a fixed number
// of keep-alive connections, each sending one request after another for a
// fixed time (what wrk does), and the rate and latency percentiles that
// came of it. It checks every answer's status, so a fast stream of errors
// never passes for throughput.
package load

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Result is what one run measured.
type Result struct {
	Requests      int
	Errors        int // transport errors and unexpected statuses
	Elapsed       time.Duration
	P50, P90, P99 time.Duration
	FirstError    string
}

// Rate is successful requests per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%8.0f req/s  p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  errors %d",
		r.Rate(), ms(r.P50), ms(r.P90), ms(r.P99), r.Errors)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Run sends newRequest's requests over conns connections for d and
// expects status want from each.
func Run(ctx context.Context, conns int, d time.Duration, want int, newRequest func() *http.Request) Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var t tally
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Go(func() {
			tr := &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true,
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			var lat []time.Duration
			var n, errs int
			var first string
			for ctx.Err() == nil {
				req := newRequest().WithContext(ctx)
				t0 := time.Now()
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					break // cut by the deadline: not a sample
				}
				n++
				lat = append(lat, time.Since(t0))
				if err != nil || resp.StatusCode != want {
					errs++
					if first == "" {
						if err != nil {
							first = err.Error()
						} else {
							first = resp.Status
						}
					}
				}
			}
			t.add(lat, n, errs, first)
		})
	}
	wg.Wait()
	return t.result(start)
}

// tally gathers what the connections of one run measured.
type tally struct {
	mu  sync.Mutex
	all []time.Duration
	res Result
}

// add merges one connection's latencies, request and error counts and
// first error.
func (t *tally) add(lat []time.Duration, n, errs int, first string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all = append(t.all, lat...)
	t.res.Requests += n
	t.res.Errors += errs
	if t.res.FirstError == "" {
		t.res.FirstError = first
	}
}

// result ends the run that began at start.
func (t *tally) result(start time.Time) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	res := t.res
	res.Elapsed = time.Since(start)
	slices.Sort(t.all)
	res.P50, res.P90, res.P99 = pct(t.all, 50), pct(t.all, 90), pct(t.all, 99)
	return res
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}
