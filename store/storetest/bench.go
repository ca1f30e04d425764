package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// BenchmarkRecordPulls writes what one replica's recorder flushes after
// a busy interval: 4096 aggregates (512 tokens × 8 repositories), each
// with 3 client addresses and 2 user agents, in one transaction, on the
// same keys every time (the rows exist after the first batch, as they do
// during a day). Stores run it from their own benchmarks.
func BenchmarkRecordPulls(b *testing.B, s tollgate.Store) {
	ctx := context.Background()
	svc := tollgate.NewService(s, nil)
	day := tollgate.Day(time.Now())
	var batch []tollgate.UsageDelta
	for tk := range 512 {
		for r := range 8 {
			at := day.Add(time.Duration(tk) * time.Second)
			d := tollgate.UsageDelta{
				UsageKey: tollgate.UsageKey{Day: day, TokenID: fmt.Sprintf("tok_bench%05d", tk), AccountID: fmt.Sprintf("acct_bench%03d", tk%64),
					Kind: tollgate.UsageImage, Repository: fmt.Sprintf("team/app-%d", r)},
				Pulls: 3, Manifests: 6, Bytes: 300 << 20,
			}
			for a := range 3 {
				d.Addresses = append(d.Addresses, tollgate.AddressUse{Address: fmt.Sprintf("10.%d.%d.%d", tk/256, tk%256, a), Pulls: 1, First: at, Last: at})
			}
			d.Agents = []tollgate.AgentUse{{UserAgent: "containerd/2.0.0", Pulls: 2}, {UserAgent: "docker/27.3", Pulls: 1}}
			batch = append(batch, d)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if err := svc.RecordPulls(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(batch)), "µs/aggregate")
}
