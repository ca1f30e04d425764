package usage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/usage"
)

// memStore keeps what RecordPulls got, merged.
type memStore struct {
	mu     sync.Mutex
	fail   error
	deltas []tollgate.UsageDelta
	pruned int
}

func (m *memStore) RecordPulls(_ context.Context, ds []tollgate.UsageDelta) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.deltas = tollgate.MergeUsage(append(m.deltas, ds...))
	return nil
}

func (m *memStore) PruneUsage(context.Context, time.Duration, time.Duration) (int64, error) {
	m.mu.Lock()
	m.pruned++
	m.mu.Unlock()
	return 0, nil
}

func (m *memStore) get() []tollgate.UsageDelta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deltas
}

var t0 = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

func ev(kind tollgate.PullKind, repo string, at time.Time, bytes int64) tollgate.PullEvent {
	return tollgate.PullEvent{Kind: kind, TokenID: "tok_a", AccountID: "acct_a", Account: "acme", Repository: repo,
		Reference: "latest", Status: 200, Bytes: bytes, Complete: true, ClientIP: "192.0.2.7", UserAgent: "containerd/2.0", At: at}
}

func newRecorder(t *testing.T, o usage.Options) (*usage.Recorder, *memStore) {
	t.Helper()
	st := &memStore{}
	if o.Store == nil {
		o.Store = st
	}
	r, err := usage.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

func TestIndexAndPlatformManifestAreOnePull(t *testing.T) {
	r, st := newRecorder(t, usage.Options{})
	r.Pull(ev(tollgate.PullManifest, "app", t0, 500))                  // the index
	r.Pull(ev(tollgate.PullManifest, "app", t0.Add(time.Second), 700)) // the platform manifest
	r.Pull(ev(tollgate.PullBlob, "app", t0.Add(2*time.Second), 10_000))
	r.Pull(ev(tollgate.PullManifest, "app", t0.Add(time.Hour), 500)) // a later pull
	p := ev(tollgate.PullPackage, "apk/os", t0, 123)
	r.Pull(p)
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := st.get()
	if len(got) != 2 {
		t.Fatalf("deltas = %+v, want an image and a package aggregate", got)
	}
	img, pkg := got[0], got[1]
	if img.Kind != tollgate.UsageImage || img.Pulls != 2 || img.Manifests != 3 || img.Bytes != 11_700 {
		t.Errorf("image = %+v, want 2 pulls, 3 manifests, 11700 bytes", img)
	}
	if pkg.Kind != tollgate.UsagePackage || pkg.Pulls != 1 || pkg.Bytes != 123 || pkg.Repository != "apk/os" {
		t.Errorf("package = %+v", pkg)
	}
	if len(img.Addresses) != 1 || img.Addresses[0].Pulls != 2 || !img.Addresses[0].First.Equal(t0) || !img.Addresses[0].Last.Equal(t0.Add(time.Hour)) {
		t.Errorf("addresses = %+v", img.Addresses)
	}
	if len(img.Agents) != 1 || img.Agents[0] != (tollgate.AgentUse{UserAgent: "containerd/2.0", Pulls: 2}) {
		t.Errorf("agents = %+v", img.Agents)
	}
}

func TestRefusedAnswersAreNotCounted(t *testing.T) {
	r, st := newRecorder(t, usage.Options{})
	e := ev(tollgate.PullManifest, "app", t0, 100)
	e.Status = 404
	r.Pull(e)
	r.Flush(t.Context())
	if got := st.get(); len(got) != 0 {
		t.Errorf("a 404 was counted: %+v", got)
	}
}

func TestFullBufferDropsAndCountsWithoutBlocking(t *testing.T) {
	r, _ := newRecorder(t, usage.Options{Buffer: 4})
	done := make(chan struct{})
	go func() {
		for range 100 {
			r.Pull(ev(tollgate.PullBlob, "app", t0, 1))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pull blocked on a full buffer")
	}
	if s := r.Stats(); s.Dropped != 96 || s.Pending != 4 {
		t.Errorf("stats = %+v, want 96 dropped, 4 pending", s)
	}
}

func TestTooManyKeysAreDroppedAndCounted(t *testing.T) {
	r, st := newRecorder(t, usage.Options{MaxKeys: 2})
	for _, repo := range []string{"a", "b", "c"} {
		r.Pull(ev(tollgate.PullPackage, repo, t0, 1))
	}
	r.Flush(t.Context())
	if got := len(st.get()); got != 2 || r.Stats().Dropped != 1 {
		t.Errorf("%d aggregates, %d dropped; want 2 and 1", got, r.Stats().Dropped)
	}
}

func TestRefusedBatchIsKeptForTheNextWrite(t *testing.T) {
	r, st := newRecorder(t, usage.Options{})
	st.fail = tollgate.Unavailable("store", errors.New("down"))
	r.Pull(ev(tollgate.PullPackage, "apt/main", t0, 10))
	if err := r.Flush(t.Context()); err == nil {
		t.Fatal("Flush hid the store's error")
	}
	r.Pull(ev(tollgate.PullPackage, "apt/main", t0, 10))
	st.fail = nil
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := st.get(); len(got) != 1 || got[0].Pulls != 2 || got[0].Bytes != 20 {
		t.Errorf("after recovery = %+v, want both downloads", got)
	}
}

func TestRunWritesOnItsIntervalAndCloseWritesTheRest(t *testing.T) {
	r, st := newRecorder(t, usage.Options{FlushInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	r.Pull(ev(tollgate.PullPackage, "apt/main", t0, 10))
	deadline := time.Now().Add(5 * time.Second)
	for len(st.get()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	r.Pull(ev(tollgate.PullPackage, "apt/main", t0, 10))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := st.get(); len(got) != 1 || got[0].Pulls != 2 {
		t.Errorf("stored = %+v, want 2 pulls", got)
	}
	if st.pruned == 0 {
		t.Error("retention never ran")
	}
}

func TestStreamLinesAreVersionedJSON(t *testing.T) {
	var buf bytes.Buffer
	r, _ := newRecorder(t, usage.Options{Stream: &buf})
	e := ev(tollgate.PullManifest, "app", t0, 42)
	e.Digest = "sha256:" + strings.Repeat("a", 64)
	r.Pull(e)
	r.Flush(t.Context())
	var l usage.Line
	if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	want := usage.Line{V: 1, Time: t0, Kind: "manifest", Token: "tok_a", Account: "acme", Repository: "app", Reference: "latest",
		Digest: e.Digest, Status: 200, Bytes: 42, Complete: true, ClientIP: "192.0.2.7", UserAgent: "containerd/2.0"}
	if l != want {
		t.Errorf("line = %+v\nwant %+v", l, want)
	}
	if !strings.HasSuffix(buf.String(), "}\n") || strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("not one JSON line: %q", buf.String())
	}
}

// discardStore counts what it is given.
type discardStore struct{ deltas int }

func (d *discardStore) RecordPulls(_ context.Context, ds []tollgate.UsageDelta) error {
	d.deltas += len(ds)
	return nil
}

func (d *discardStore) PruneUsage(context.Context, time.Duration, time.Duration) (int64, error) {
	return 0, nil
}

// BenchmarkEventHandOff is the edge's cost per event. "accepted": the
// event goes into the buffer (the buffer is emptied outside the timer);
// "full": the buffer is full and the event is dropped and counted;
// "parallel": many goroutines hand off while Run drains (what is dropped
// is reported: Run folds slower than a tight loop can send).
func BenchmarkEventHandOff(b *testing.B) {
	e := ev(tollgate.PullBlob, "app", t0, 4096)
	b.Run("accepted", func(b *testing.B) {
		const chunk = 1 << 16
		r, _ := usage.New(usage.Options{Store: &discardStore{}, Buffer: chunk})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%chunk == chunk-1 {
				b.StopTimer()
				r.Flush(context.Background())
				b.StartTimer()
			}
			r.Pull(e)
		}
		if r.Stats().Dropped != 0 {
			b.Fatal("dropped")
		}
	})
	b.Run("full", func(b *testing.B) {
		r, _ := usage.New(usage.Options{Store: &discardStore{}, Buffer: 1})
		b.ReportAllocs()
		for b.Loop() {
			r.Pull(e)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		r, _ := usage.New(usage.Options{Store: &discardStore{}, FlushInterval: time.Hour, PruneInterval: -1})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.Pull(e)
			}
		})
		b.StopTimer()
		cancel()
		<-done
		b.ReportMetric(float64(r.Stats().Dropped)/float64(b.N), "dropped/op")
	})
}

// BenchmarkAggregate1M folds a million events (676 tokens × 10
// repositories × 10 addresses) and writes the aggregates in batches of
// what the default buffer holds; ns/event is the recorder's cost.
func BenchmarkAggregate1M(b *testing.B) {
	const n = 1_000_000
	events := make([]tollgate.PullEvent, 0, 4096)
	for i := range 4096 {
		e := ev(tollgate.PullManifest, "repo-"+string(rune('a'+i%10)), t0.Add(time.Duration(i)*time.Minute), 1000)
		e.TokenID = "tok_" + string(rune('A'+i%26)) + string(rune('a'+(i/26)%26))
		e.ClientIP = "10.0.0." + string(rune('0'+i%10))
		events = append(events, e)
	}
	for b.Loop() {
		r, _ := usage.New(usage.Options{Store: &discardStore{}})
		for i := range n {
			if i%usage.DefaultBuffer == usage.DefaultBuffer-1 {
				r.Flush(context.Background())
			}
			r.Pull(events[i%len(events)])
		}
		if err := r.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		if r.Stats().Dropped != 0 {
			b.Fatal("dropped")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
