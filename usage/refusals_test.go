package usage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/usage"
)

type refusalStore struct {
	mu    sync.Mutex
	got   []tollgate.TokenRefusal
	calls int
	err   error
}

func (s *refusalStore) RecordRefusals(_ context.Context, rs []tollgate.TokenRefusal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return s.err
	}
	s.got = append(s.got, rs...)
	return nil
}

// TestRefusalHandOffNeverBlocks: a token hammering a refusal fills the
// hand-off and the rest is dropped and counted, never waited for.
func TestRefusalHandOffNeverBlocks(t *testing.T) {
	rec := usage.NewRefusalRecorder(usage.RefusalOptions{Store: &refusalStore{}, Buffer: 8})
	for range 100 {
		rec.Refused(tollgate.TokenRefusal{TokenID: "tok_x", Reason: "paused"})
	}
	if s := rec.Stats(); s.Dropped != 92 {
		t.Errorf("dropped %d of 100 with a buffer of 8, want 92", s.Dropped)
	}
}

// TestRefusalBatchKeepsTheLatestPerToken: one write per flush, with no
// more of a token's refusals than the store keeps (the latest), and a
// failed write is dropped, counted, and not retried forever.
func TestRefusalBatchKeepsTheLatestPerToken(t *testing.T) {
	st := &refusalStore{}
	rec := usage.NewRefusalRecorder(usage.RefusalOptions{Store: st})
	for i := range 50 {
		rec.Refused(tollgate.TokenRefusal{TokenID: "tok_a", UserAgent: fmt.Sprint(i)})
	}
	rec.Refused(tollgate.TokenRefusal{TokenID: "tok_b"})
	if err := rec.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	perToken := map[string]int{}
	for _, r := range st.got {
		perToken[r.TokenID]++
	}
	if st.calls != 1 || perToken["tok_a"] != tollgate.RefusalsKept || perToken["tok_b"] != 1 {
		t.Fatalf("%d writes, per token %v; want 1 write, %d of tok_a and 1 of tok_b", st.calls, perToken, tollgate.RefusalsKept)
	}
	for _, r := range st.got {
		if r.TokenID == "tok_a" && r.UserAgent < "30" && len(r.UserAgent) == 2 {
			t.Fatalf("an older refusal (%s) was kept over a newer one", r.UserAgent)
		}
	}
	st.err = errors.New("store down")
	rec.Refused(tollgate.TokenRefusal{TokenID: "tok_a"})
	if err := rec.Flush(t.Context()); err == nil {
		t.Fatal("a failed write was not reported")
	}
	st.err = nil
	if err := rec.Flush(t.Context()); err != nil || st.calls != 2 {
		t.Errorf("after a failed write: %v, %d writes; want nothing left to write", err, st.calls)
	}
	if s := rec.Stats(); s.Failed != 1 || s.Written != tollgate.RefusalsKept+1 {
		t.Errorf("stats = %+v", s)
	}
}
