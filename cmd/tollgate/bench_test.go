package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/api"
)

// BenchmarkTokenIssueHTTP measures GET /token end to end over loopback
// HTTP against one replica backed by the real PostgreSQL and Redis, with
// a warm cache, from 32 concurrent clients. It reports ops/s and the p99
// latency.
func BenchmarkTokenIssueHTTP(b *testing.B) {
	m := startReplicas(b, 1)[0]
	ctx := context.Background()
	cl := &api.Client{BaseURL: m.URL, Key: m.AdminKey.Reveal()}
	if _, _, err := cl.CreateAccount(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	cl.SetSubscription(ctx, "bench", []string{"demo/**"}, nil)
	tok, err := cl.CreateToken(ctx, "bench", api.CreateTokenRequest{Name: "b"})
	if err != nil {
		b.Fatal(err)
	}
	q := url.Values{"service": {m.Config.Service}, "scope": {"repository:demo/hello:pull"}}
	target := m.URL + "/token?" + q.Encode()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func() (time.Duration, error) {
		req, _ := http.NewRequest("GET", target, nil)
		req.SetBasicAuth("tollgate", tok.Secret)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	for range 100 { // warm the cache and the connections
		if _, err := get(); err != nil {
			b.Fatal(err)
		}
	}
	const clients = 32
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for range work {
				d, err := get()
				if err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "tokens/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
