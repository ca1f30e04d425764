package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/usage"
)

// countingStore takes the recorder's batches and keeps nothing.
type countingStore struct{}

func (countingStore) RecordPulls(context.Context, []tollgate.UsageDelta) error { return nil }
func (countingStore) PruneUsage(context.Context, time.Duration, time.Duration) (int64, error) {
	return 0, nil
}

// BenchmarkPullRecording is the throughput check: authorized manifest
// and blob GETs through the edge to the in-process upstream, with pull
// recording off and on (a running usage.Recorder). The difference is
// what recording costs a pull.
func BenchmarkPullRecording(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			var opts []envOption
			var rec *usage.Recorder
			if mode == "on" {
				rec, _ = usage.New(usage.Options{Store: countingStore{}, PruneInterval: -1})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { rec.Run(ctx); close(done) }()
				b.Cleanup(func() { cancel(); <-done })
				opts = append(opts, withEvents(rec))
			}
			e := newEnv(b, opts...)
			_, secret := e.token(tollgate.TokenCreate{})
			jwt := e.bearer(secret, "repository:demo/hello:pull")
			paths := []string{"/v2/demo/hello/manifests/latest", "/v2/demo/hello/blobs/" + e.hello.Layers[0]}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					req := httptest.NewRequest("GET", paths[i%2], nil)
					req.Header.Set("Authorization", "Bearer "+jwt)
					req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
					w := httptest.NewRecorder()
					e.edge.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d", w.Code)
					}
					i++
				}
			})
			b.StopTimer()
			if rec != nil {
				s := rec.Stats()
				b.ReportMetric(float64(s.Dropped), "dropped")
			}
		})
	}
}
