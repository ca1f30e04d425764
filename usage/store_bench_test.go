package usage_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/sqlite"
	"github.com/tollgate/tollgate/usage"
)

// BenchmarkAggregate1MSQLite is BenchmarkAggregate1M writing to a real
// SQLite store: a million events from 676 tokens × 10 repositories × 10
// addresses, flushed every 65 536 events as a busy replica would.
func BenchmarkAggregate1MSQLite(b *testing.B) {
	const n = 1_000_000
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "t.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	svc := tollgate.NewService(db, nil)
	events := make([]tollgate.PullEvent, 0, 4096)
	for i := range 4096 {
		e := ev(tollgate.PullManifest, "repo-"+string(rune('a'+i%10)), t0.Add(time.Duration(i)*time.Minute), 1000)
		e.TokenID = "tok_" + string(rune('A'+i%26)) + string(rune('a'+(i/26)%26))
		e.ClientIP = "10.0.0." + string(rune('0'+i%10))
		events = append(events, e)
	}
	for b.Loop() {
		r, _ := usage.New(usage.Options{Store: svc})
		for i := range n {
			if i%usage.DefaultBuffer == usage.DefaultBuffer-1 {
				if err := r.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			r.Pull(events[i%len(events)])
		}
		if err := r.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
