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

// BenchmarkSweepExpiry runs the expiry sweep in its steady state: 2000
// tokens of 40 accounts inside the warning window, every warning due
// already written (so each run writes nothing and finds that out token by
// token). The background job runs it every minute.
func BenchmarkSweepExpiry(b *testing.B, s tollgate.Store) {
	ctx := context.Background()
	svc := tollgate.NewService(s, NewKeys(b))
	for a := range 40 {
		acct, _, _, err := svc.CreateAccount(ctx, "operator", fmt.Sprintf("bench%02d", a))
		if err != nil {
			b.Fatal(err)
		}
		for i := range 50 {
			at := time.Now().Add(time.Duration(2+i%20) * 24 * time.Hour)
			if _, _, err := svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: acct.Name, Name: fmt.Sprintf("t%d", i), Expiry: tollgate.Expiry{At: at}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if n, err := svc.SweepExpiry(ctx, nil); err != nil || n != 2000 {
		b.Fatalf("first sweep: %d events, %v; want 2000", n, err)
	}
	b.ResetTimer()
	for b.Loop() {
		if n, err := svc.SweepExpiry(ctx, nil); err != nil || n != 0 {
			b.Fatalf("sweep: %d events, %v; want 0", n, err)
		}
	}
}
