package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// The invalidation log: Tx.AppendInvalidation, InvalidationsAfter,
// LastInvalidation, and the Service writes that append to it. Every
// identifier of this file starts with "inv".

func testInvalidations(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tollgate.Store)
	}{
		{"EmptyLogHasNothingAfterZero", invEmpty},
		{"AppendAssignsIncreasingSeqAndRoundTrips", invAppend},
		{"AfterIsExclusiveAndLimited", invAfterLimit},
		{"RolledBackAppendLeavesNoEntry", invRollback},
		{"ViewRejectsAppend", invViewReadOnly},
		{"ConcurrentAppendsAreNeverSkippedByAReader", invConcurrentNoSkip},
		{"PruneDeletesAPrefixAndKeepsItsMarkAndTheHead", invPrune},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
	t.Run("ServiceLogsEveryChangeWithItsTransaction", func(t *testing.T) { invService(t, newStore) })
}

func invAppendOne(t *testing.T, s tollgate.Store, inv *tollgate.Invalidation) {
	t.Helper()
	if err := s.Update(t.Context(), func(tx tollgate.Tx) error { return tx.AppendInvalidation(t.Context(), inv) }); err != nil {
		t.Fatal(err)
	}
}

func invRead(t *testing.T, s tollgate.Store, after int64, limit int) ([]tollgate.Invalidation, int64) {
	t.Helper()
	var out []tollgate.Invalidation
	var last int64
	err := s.View(t.Context(), func(tx tollgate.Tx) (err error) {
		if out, err = tx.InvalidationsAfter(t.Context(), after, limit); err != nil {
			return err
		}
		last, err = tx.LastInvalidation(t.Context())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, last
}

func invEmpty(t *testing.T, s tollgate.Store) {
	got, last := invRead(t, s, 0, 0)
	if len(got) != 0 || last != 0 {
		t.Errorf("empty log: %+v, last %d", got, last)
	}
}

func invAppend(t *testing.T, s tollgate.Store) {
	want := []tollgate.Invalidation{
		{At: txT0, AccountID: "acc_1", TokenIDs: []string{"tok_1"}},
		{At: txT0.Add(time.Second), AccountID: "acc_1"},
		{At: txT0.Add(2 * time.Second), AccountID: "acc_2", TokenIDs: []string{"tok_2", "tok_3"}},
	}
	var prev int64
	for i := range want {
		invAppendOne(t, s, &want[i])
		if want[i].Seq <= prev {
			t.Fatalf("append %d: seq %d after %d", i, want[i].Seq, prev)
		}
		prev = want[i].Seq
	}
	got, last := invRead(t, s, 0, 0)
	if last != prev {
		t.Errorf("LastInvalidation = %d, want %d", last, prev)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || !g.At.Equal(w.At) || g.At.Location() != time.UTC || g.AccountID != w.AccountID || !slices.Equal(g.TokenIDs, w.TokenIDs) {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
}

func invAfterLimit(t *testing.T, s tollgate.Store) {
	var seqs []int64
	for i := range 5 {
		inv := &tollgate.Invalidation{At: txT0, AccountID: fmt.Sprintf("acc_%d", i)}
		invAppendOne(t, s, inv)
		seqs = append(seqs, inv.Seq)
	}
	got, _ := invRead(t, s, seqs[1], 2)
	if len(got) != 2 || got[0].Seq != seqs[2] || got[1].Seq != seqs[3] {
		t.Errorf("after %d limit 2: %+v, want seqs %v", seqs[1], got, seqs[2:4])
	}
	if got, _ := invRead(t, s, seqs[4], 0); len(got) != 0 {
		t.Errorf("after the last: %+v", got)
	}
}

func invRollback(t *testing.T, s tollgate.Store) {
	kept := &tollgate.Invalidation{At: txT0, AccountID: "acc_kept"}
	invAppendOne(t, s, kept)
	boom := errors.New("boom")
	err := s.Update(t.Context(), func(tx tollgate.Tx) error {
		if err := tx.AppendInvalidation(t.Context(), &tollgate.Invalidation{At: txT0, AccountID: "acc_gone"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v", err)
	}
	after := &tollgate.Invalidation{At: txT0, AccountID: "acc_after"}
	invAppendOne(t, s, after)
	got, last := invRead(t, s, 0, 0)
	if len(got) != 2 || got[0].AccountID != "acc_kept" || got[1].AccountID != "acc_after" || last != after.Seq || after.Seq <= kept.Seq {
		t.Errorf("log after a rolled-back append: %+v, last %d", got, last)
	}
}

func invPrune(t *testing.T, s tollgate.Store) {
	prune := func(before time.Time) int64 {
		t.Helper()
		var n int64
		err := s.Update(t.Context(), func(tx tollgate.Tx) (err error) {
			n, err = tx.PruneInvalidations(t.Context(), before)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := prune(txT0.Add(time.Hour)); n != 0 {
		t.Errorf("pruning an empty log deleted %d", n)
	}
	var seqs []int64
	for _, d := range []time.Duration{0, time.Second, 2 * time.Second, 10 * time.Second} {
		inv := &tollgate.Invalidation{At: txT0.Add(d), AccountID: "acc_1"}
		invAppendOne(t, s, inv)
		seqs = append(seqs, inv.Seq)
	}
	// Entries before txT0+5s: the first three. The newest of them stays
	// as the mark; the two before it go.
	if n := prune(txT0.Add(5 * time.Second)); n != 2 {
		t.Errorf("prune deleted %d entries, want 2", n)
	}
	got, last := invRead(t, s, 0, 0)
	if len(got) != 2 || got[0].Seq != seqs[2] || got[1].Seq != seqs[3] || last != seqs[3] {
		t.Errorf("after pruning: %+v, last %d; want seqs %v", got, last, seqs[2:])
	}
	if n := prune(txT0.Add(5 * time.Second)); n != 0 {
		t.Errorf("pruning again deleted %d", n)
	}
	// Everything is old: only the head stays, and the next append still
	// gets a higher seq.
	prune(txT0.Add(time.Hour))
	if got, last := invRead(t, s, 0, 0); len(got) != 1 || got[0].Seq != seqs[3] || last != seqs[3] {
		t.Errorf("after pruning everything old: %+v, last %d; want only the head %d", got, last, seqs[3])
	}
	next := &tollgate.Invalidation{At: txT0, AccountID: "acc_2"}
	invAppendOne(t, s, next)
	if next.Seq <= seqs[3] {
		t.Errorf("append after pruning got seq %d, not above %d", next.Seq, seqs[3])
	}
	err := s.View(t.Context(), func(tx tollgate.Tx) error {
		_, err := tx.PruneInvalidations(t.Context(), txT0.Add(time.Hour))
		return err
	})
	if tollgate.ErrorCode(err) != tollgate.EINTERNAL {
		t.Errorf("prune inside View: %v, want EINTERNAL", err)
	}
}

func invViewReadOnly(t *testing.T, s tollgate.Store) {
	err := s.View(t.Context(), func(tx tollgate.Tx) error {
		return tx.AppendInvalidation(t.Context(), &tollgate.Invalidation{At: txT0, AccountID: "acc_1"})
	})
	if tollgate.ErrorCode(err) != tollgate.EINTERNAL {
		t.Errorf("append inside View: %v, want EINTERNAL", err)
	}
	if got, _ := invRead(t, s, 0, 0); len(got) != 0 {
		t.Errorf("View appended: %+v", got)
	}
}

// invConcurrentNoSkip: writers append and linger before committing while
// a reader polls "after the last seq I saw", as a cache does. If a seq
// could become visible after a higher one, the reader would skip it for
// good and a revocation would be lost.
func invConcurrentNoSkip(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	done := make(chan struct{})
	var seen []int64
	var readErr error
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var after int64
		poll := func() bool {
			var got []tollgate.Invalidation
			err := s.View(ctx, func(tx tollgate.Tx) (err error) {
				got, err = tx.InvalidationsAfter(ctx, after, 0)
				return err
			})
			if err != nil {
				readErr = err
				return false
			}
			for _, inv := range got {
				seen = append(seen, inv.Seq)
				after = inv.Seq
			}
			return true
		}
		for {
			select {
			case <-done:
				poll()
				return
			default:
				if !poll() {
					return
				}
			}
		}
	}()
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				err := s.Update(ctx, func(tx tollgate.Tx) error {
					if err := tx.AppendInvalidation(ctx, &tollgate.Invalidation{At: txT0, AccountID: fmt.Sprintf("acc_%d_%d", w, i)}); err != nil {
						return err
					}
					time.Sleep(time.Duration(w%3) * time.Millisecond)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	<-readerDone
	if readErr != nil {
		t.Fatal(readErr)
	}
	all, _ := invRead(t, s, 0, 0)
	if len(all) != writers*each {
		t.Fatalf("%d entries, want %d", len(all), writers*each)
	}
	if len(seen) != len(all) {
		t.Errorf("a reader polling after its last seq saw %d of %d entries: some became visible after a higher seq", len(seen), len(all))
	}
}

// invService: every Service write that changes a token or an account
// appends one entry naming it, in its own transaction, and hands the same
// entry (with its Seq) to Changed; a write that changes nothing or fails
// appends nothing.
func invService(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s, _ := newService(t, newStore)
	var heard []tollgate.Invalidation
	s.Changed = func(_ context.Context, inv tollgate.Invalidation) { heard = append(heard, inv) }
	a, tok, _, err := s.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	last := func() int64 {
		_, l := invRead(t, s.Store, 0, 0)
		return l
	}
	steps := []struct {
		name   string
		do     func() error
		tokens []string // nil: the account only
		logged bool
	}{
		{"revoke", func() error { _, err := s.RevokeToken(ctx, "op", tok.ID); return err }, []string{tok.ID}, true},
		{"revoke again changes nothing", func() error { _, err := s.RevokeToken(ctx, "op", tok.ID); return err }, nil, false},
		{"suspend", func() error { _, err := s.SuspendAccount(ctx, "op", a.Name); return err }, nil, true},
		{"suspend again changes nothing", func() error { _, err := s.SuspendAccount(ctx, "op", a.Name); return err }, nil, false},
		{"subscription", func() error {
			_, err := s.SetSubscription(ctx, "op", a.Name, tollgate.Subscription{Images: []string{"team/**"}})
			return err
		}, nil, true},
		{"deny packages", func() error { _, err := s.DenyPackages(ctx, "op", a.Name); return err }, nil, true},
	}
	for _, st := range steps {
		before, nHeard := last(), len(heard)
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !st.logged {
			if last() != before || len(heard) != nHeard {
				t.Errorf("%s: logged or told Changed although nothing changed", st.name)
			}
			continue
		}
		got, _ := invRead(t, s.Store, before, 0)
		if len(got) != 1 || got[0].AccountID != a.ID || !slices.Equal(got[0].TokenIDs, st.tokens) {
			t.Fatalf("%s: logged %+v", st.name, got)
		}
		if len(heard) != nHeard+1 || heard[nHeard].Seq != got[0].Seq || heard[nHeard].AccountID != a.ID {
			t.Errorf("%s: Changed heard %+v, log has %+v", st.name, heard[nHeard:], got[0])
		}
	}

	// Edits of another token, and a failed one.
	tok2, _, err := s.CreateToken(ctx, "op", tollgate.TokenCreate{Account: a.Name, Name: "ci"})
	if err == nil {
		before := last()
		if _, err := s.EditToken(ctx, "op", tok2.ID, tollgate.TokenEdit{Expiry: &tollgate.Expiry{Now: true}}); err != nil {
			t.Fatal(err)
		}
		if got, _ := invRead(t, s.Store, before, 0); len(got) != 1 || !slices.Equal(got[0].TokenIDs, []string{tok2.ID}) {
			t.Errorf("expire now: logged %+v", got)
		}
	}
	before := last()
	if _, err := s.EditToken(ctx, "op", tok.ID, tollgate.TokenEdit{Name: ptr("renamed")}); tollgate.ErrorCode(err) != tollgate.ECONFLICT {
		t.Fatalf("editing a revoked token: %v", err)
	}
	if last() != before {
		t.Error("a failed write left an entry in the log")
	}
}
