package storetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate"
)

// Refused attempts and tokens' distinct addresses (tollgate.PolicyTx),
// through Service as the recorder and the console use them.

func testRefusals(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tollgate.Store)
	}{
		{"NewestFirstAndOnlyTheLastKeptPerToken", refusalsKeepLast},
		{"ConcurrentReplicasKeepTheBound", refusalsConcurrent},
		{"OneTokensRefusalsNeverShowOnAnother", refusalsIsolation},
		{"SeveralTokensReadInOneQueryWithTheLimitPerToken", refusalsSeveral},
		{"TextIsClippedToValidUTF8", refusalsClipped},
		{"UnknownTokenIsNotFound", refusalsUnknownToken},
		{"ViewRejectsRefusalWrites", refusalsViewReadOnly},
		{"AddressCountsAreDistinctPerTokenAndPeriod", refusalsAddressCounts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func refusalAt(tok txStoredToken, at time.Time, addr string) tollgate.TokenRefusal {
	return tollgate.TokenRefusal{TokenID: tok.ID, At: at, Address: addr, UserAgent: "containers/5.30 (github.com/containers/image)", Reason: "address_not_allowed"}
}

func refusalsRecord(t *testing.T, svc *tollgate.Service, rs ...tollgate.TokenRefusal) {
	t.Helper()
	if err := svc.RecordRefusals(t.Context(), rs); err != nil {
		t.Fatalf("RecordRefusals: %v", err)
	}
}

func refusalsOf(t *testing.T, svc *tollgate.Service, id string) []tollgate.TokenRefusal {
	t.Helper()
	rs, err := svc.Refusals(t.Context(), id)
	if err != nil {
		t.Fatalf("Refusals: %v", err)
	}
	return rs
}

func refusalsKeepLast(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	svc := usageService(s, usageDay0)
	// Two batches, the first out of order: the newest come back first.
	var batch []tollgate.TokenRefusal
	for i := 14; i >= 0; i-- {
		batch = append(batch, refusalAt(tok, txT0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("192.0.2.%d", i)))
	}
	refusalsRecord(t, svc, batch...)
	batch = batch[:0]
	for i := 15; i < 30; i++ {
		batch = append(batch, refusalAt(tok, txT0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("192.0.2.%d", i)))
	}
	refusalsRecord(t, svc, batch...)
	rs := refusalsOf(t, svc, tok.ID)
	if len(rs) != tollgate.RefusalsKept {
		t.Fatalf("kept %d refusals, want the last %d", len(rs), tollgate.RefusalsKept)
	}
	for i, r := range rs {
		want := 29 - i
		if r.Address != fmt.Sprintf("192.0.2.%d", want) || !r.At.Equal(txT0.Add(time.Duration(want)*time.Minute)) {
			t.Fatalf("refusal %d = %+v, want 192.0.2.%d (newest first)", i, r, want)
		}
	}
	if r := rs[0]; r.TokenID != tok.ID || r.Reason != "address_not_allowed" || r.UserAgent != "containers/5.30 (github.com/containers/image)" {
		t.Errorf("refusal = %+v, want its token, reason and client kept", r)
	}
}

// Three replicas flush refusals of the same tokens at once: none fails,
// and each token keeps at most RefusalsKept.
func refusalsConcurrent(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	toks := []txStoredToken{txInsertToken(t, s, a, "a", txT0), txInsertToken(t, s, a, "b", txT0)}
	svc := usageService(s, usageDay0)
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for r := range 3 {
		wg.Go(func() {
			for i := range 10 {
				batch := []tollgate.TokenRefusal{
					refusalAt(toks[r%2], txT0.Add(time.Duration(i)*time.Second), "198.51.100.1"),
					refusalAt(toks[(r+1)%2], txT0.Add(time.Duration(i)*time.Second), "198.51.100.2"),
				}
				if err := svc.RecordRefusals(t.Context(), batch); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("RecordRefusals: %v", err)
	}
	for _, tok := range toks {
		if n := len(refusalsOf(t, svc, tok.ID)); n != tollgate.RefusalsKept {
			t.Errorf("token %s keeps %d refusals, want %d", tok.Name, n, tollgate.RefusalsKept)
		}
	}
}

func refusalsIsolation(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "other")
	mine, theirs := txInsertToken(t, s, a, "mine", txT0), txInsertToken(t, s, b, "theirs", txT0)
	svc := usageService(s, usageDay0)
	refusalsRecord(t, svc, refusalAt(theirs, txT0, "203.0.113.9"))
	if rs := refusalsOf(t, svc, mine.ID); len(rs) != 0 {
		t.Errorf("token without refusals shows %+v", rs)
	}
	if rs := refusalsOf(t, svc, theirs.ID); len(rs) != 1 {
		t.Errorf("refusals = %+v, want one", rs)
	}
}

func refusalsSeveral(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	x, y, z := txInsertToken(t, s, a, "x", txT0), txInsertToken(t, s, a, "y", txT0), txInsertToken(t, s, a, "z", txT0)
	var rs []tollgate.TokenRefusal
	for i := range 25 {
		rs = append(rs, refusalAt(x, txT0.Add(time.Duration(i)*time.Second), fmt.Sprintf("192.0.2.%d", i)))
	}
	rs = append(rs, refusalAt(y, txT0, "198.51.100.1"), refusalAt(z, txT0, "203.0.113.1"))
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.(tollgate.PolicyTx).AddRefusals(t.Context(), rs, 100) })
	var got []tollgate.TokenRefusal
	err := s.View(t.Context(), func(tx tollgate.Tx) (err error) {
		got, err = tx.(tollgate.PolicyTx).TokenRefusals(t.Context(), []string{x.ID, y.ID}, 20)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range got {
		per[r.TokenID]++
	}
	if per[x.ID] != 20 || per[y.ID] != 1 || per[z.ID] != 0 {
		t.Fatalf("per token = %v, want x 20 (the limit), y 1, z none (not asked)", per)
	}
	if got[0].TokenID == x.ID && got[0].Address != "192.0.2.24" {
		t.Errorf("x's first = %+v, want the newest", got[0])
	}
	m, err := usageService(s, usageDay0).RefusalsOf(t.Context(), []string{y.ID, z.ID})
	if err != nil || len(m[y.ID]) != 1 || len(m[z.ID]) != 1 || len(m[x.ID]) != 0 {
		t.Errorf("RefusalsOf = %v, %v", m, err)
	}
}

func refusalsClipped(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	svc := usageService(s, usageDay0)
	r := refusalAt(tok, txT0, "192.0.2.1")
	r.UserAgent = strings.Repeat("é", 300) + "\xff"
	refusalsRecord(t, svc, r)
	got := refusalsOf(t, svc, tok.ID)[0].UserAgent
	if len(got) > 256 || !utf8.ValidString(got) || !strings.HasPrefix(got, "éé") {
		t.Errorf("user agent stored as %d bytes (valid UTF-8: %v), want at most 256 valid bytes", len(got), utf8.ValidString(got))
	}
}

func refusalsUnknownToken(t *testing.T, s tollgate.Store) {
	svc := usageService(s, usageDay0)
	if _, err := svc.Refusals(t.Context(), "tok_missing"); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Errorf("Refusals(unknown) = %v, want ENOTFOUND", err)
	}
}

func refusalsViewReadOnly(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	err := s.View(t.Context(), func(tx tollgate.Tx) error {
		return tx.(tollgate.PolicyTx).AddRefusals(t.Context(), []tollgate.TokenRefusal{refusalAt(tok, txT0, "192.0.2.1")}, 5)
	})
	if tollgate.ErrorCode(err) != tollgate.EINTERNAL {
		t.Errorf("AddRefusals inside View = %v, want EINTERNAL", err)
	}
}

// The distinct addresses of each token, over the days asked only: an
// address seen on two days or in two repositories counts once.
func refusalsAddressCounts(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "other")
	busy, quiet, theirs := txInsertToken(t, s, a, "busy", txT0), txInsertToken(t, s, a, "quiet", txT0), txInsertToken(t, s, b, "theirs", txT0)
	now := usageDay0.AddDate(0, 0, 40).Add(12 * time.Hour)
	svc := usageService(s, now)
	today := tollgate.Day(now)
	usageRecord(t, svc,
		usageDelta(busy, "app", today, "10.0.0.1", "ua"),
		usageDelta(busy, "lib", today, "10.0.0.1", "ua"),
		usageDelta(busy, "app", today.AddDate(0, 0, -3), "10.0.0.1", "ua"),
		usageDelta(busy, "app", today.AddDate(0, 0, -3), "10.0.0.2", "ua"),
		usageDelta(busy, "app", today.AddDate(0, 0, -5), "2001:db8::1", "ua"),
		usageDelta(busy, "app", today.AddDate(0, 0, -31), "10.9.9.9", "ua"), // before the period
		usageDelta(quiet, "app", today, "10.0.0.7", "ua"),
		usageDelta(theirs, "app", today, "10.0.0.8", "ua"),
	)
	got, err := svc.TokenAddressCounts(t.Context(), "acme", 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[busy.ID] != 3 || got[quiet.ID] != 1 {
		t.Errorf("address counts = %v, want busy 3, quiet 1 and no other account's token", got)
	}
	if _, err := svc.TokenAddressCounts(t.Context(), "nobody", 30); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Errorf("unknown account: %v, want ENOTFOUND", err)
	}
}
