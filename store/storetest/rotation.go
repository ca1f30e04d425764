package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/testenv"
)

// Rotation (two live secrets) and the notification outbox, through the
// Service, on every store. Identifiers start with "rot".

func testRotation(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore NewStore)
	}{
		{"PreviousSecretWorksUntilGraceEndAndNotAMicrosecondAfter", rotGraceEnds},
		{"SecondRotationKillsTheOldestSecretAtOnce", rotSecondRotation},
		{"RevokeKillsBothSecrets", rotRevokeKillsBoth},
		{"RotateRefusedForSuspendedAccountsCustomer", rotSuspended},
		{"RevealShowsTheNewSecretNotTheOld", rotReveal},
		{"GraceNowStopsTheOldSecretAtOnceAndIsRecordedOnce", rotGraceNow},
		{"PreviousSecretExpiredRecordedOnceAcrossConcurrentSweeps", rotSweepOnce},
		{"ExpiringEventsFireOncePerThresholdAcrossConcurrentSweeps", rotExpiringOnce},
		{"ExpirySweepPagesThroughTokensThatShareAnExpiry", rotExpiryPages},
		{"DeliveryNeverClaimedTwiceWhileLeasedButNeverLost", rotClaimExclusive},
		{"UsageOfPreviousSecretKeptApart", rotUsage},
		{"RotatedEventWrittenInTheSameTransaction", rotEventRollsBack},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

func rotSetup(t *testing.T, newStore NewStore) (*tollgate.Service, *testenv.Clock, *tollgate.Account, *tollgate.Token, tollgate.Secret) {
	t.Helper()
	s, c := newService(t, newStore)
	a, tok, secret, err := s.CreateAccount(t.Context(), "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	return s, c, a, tok, secret
}

// rotDecide authenticates secret as the edge does and judges it at the
// service's now.
func rotDecide(t *testing.T, s *tollgate.Service, secret tollgate.Secret) authz.Reason {
	t.Helper()
	tok, a, err := Authenticate(t.Context(), s, secret.Reveal())
	if tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
		return "unknown"
	}
	if err != nil {
		t.Fatal(err)
	}
	return authz.Decide(tok, a, s.Now(), authz.Resource{Kind: authz.Any, SecretHash: s.Keys.Hash(secret)})
}

func rotGraceEnds(t *testing.T, newStore NewStore) {
	s, c, _, tok, old := rotSetup(t, newStore)
	rotated, fresh, err := s.RotateToken(t.Context(), "operator", tok.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ID != tok.ID || rotated.Name != tok.Name || rotated.SecretVersion != 2 || fresh == old {
		t.Fatalf("rotated = %+v", rotated)
	}
	if p := rotated.Previous; p == nil || p.Version != 1 || !p.ValidUntil.Equal(c.Now().Add(24*time.Hour)) {
		t.Fatalf("previous = %+v", rotated.Previous)
	}
	for _, sec := range []tollgate.Secret{old, fresh} {
		if r := rotDecide(t, s, sec); r != authz.OK {
			t.Fatalf("during grace: %q", r)
		}
	}
	c.Add(24*time.Hour - time.Microsecond)
	if r := rotDecide(t, s, old); r != authz.OK {
		t.Fatalf("last microsecond of grace: %q", r)
	}
	c.Add(time.Microsecond)
	if r := rotDecide(t, s, old); r != authz.Rotated {
		t.Fatalf("grace over: %q, want rotated", r)
	}
	if r := rotDecide(t, s, fresh); r != authz.OK {
		t.Fatalf("new secret after grace: %q", r)
	}
}

func rotSecondRotation(t *testing.T, newStore NewStore) {
	s, _, _, tok, first := rotSetup(t, newStore)
	// What a cache may still hold: the token as it was, found by the
	// first secret's hash.
	_, second, err := s.RotateToken(t.Context(), "operator", tok.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cur, _, third, err := rotRotate(t, s, tok.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r := rotDecide(t, s, first); r != "unknown" {
		t.Fatalf("first secret after two rotations: %q, want unknown to the store", r)
	}
	// A cache that still maps the first hash to the token id gets the
	// fresh token data, and Decide refuses.
	a, err := s.AccountByID(t.Context(), tok.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	if r := authz.Decide(cur, a, s.Now(), authz.Resource{SecretHash: s.Keys.Hash(first)}); r != authz.Rotated {
		t.Fatalf("first secret through a stale mapping: %q", r)
	}
	if r := authz.Decide(cur, a, s.Now(), authz.Resource{SecretVersion: 1}); r != authz.Rotated {
		t.Fatalf("bearer minted from the first secret: %q", r)
	}
	for _, sec := range []tollgate.Secret{second, third} {
		if r := rotDecide(t, s, sec); r != authz.OK {
			t.Fatalf("live secret: %q", r)
		}
	}
}

func rotRotate(t *testing.T, s *tollgate.Service, id string, grace time.Duration) (*tollgate.Token, *tollgate.Account, tollgate.Secret, error) {
	t.Helper()
	tok, secret, err := s.RotateToken(t.Context(), "operator", id, grace)
	if err != nil {
		return nil, nil, "", err
	}
	_, a, err := s.Token(t.Context(), id)
	return tok, a, secret, err
}

func rotRevokeKillsBoth(t *testing.T, newStore NewStore) {
	s, _, _, tok, old := rotSetup(t, newStore)
	_, fresh, err := s.RotateToken(t.Context(), "operator", tok.ID, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeToken(t.Context(), "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	for _, sec := range []tollgate.Secret{old, fresh} {
		if r := rotDecide(t, s, sec); r != authz.Revoked {
			t.Fatalf("after revoke: %q, want revoked", r)
		}
	}
	_, _, err = s.RotateToken(t.Context(), "operator", tok.ID, 0)
	wantCode(t, err, tollgate.ECONFLICT, "")
}

func rotSuspended(t *testing.T, newStore NewStore) {
	s, _, a, tok, _ := rotSetup(t, newStore)
	if _, err := s.SuspendAccount(t.Context(), "operator", a.Name); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.RotateToken(t.Context(), tollgate.AccountActor(a.Name), tok.ID, time.Hour)
	wantCode(t, err, tollgate.EFORBIDDEN, "")
	if _, _, err := s.RotateToken(t.Context(), "operator", tok.ID, time.Hour); err != nil {
		t.Fatalf("operator rotates a suspended account's token: %v", err)
	}
	_, _, err = s.RotateToken(t.Context(), "operator", tok.ID, tollgate.MaxRotationGrace+time.Second)
	wantCode(t, err, tollgate.EINVALID, "grace")
}

func rotReveal(t *testing.T, newStore NewStore) {
	s, _, _, tok, old := rotSetup(t, newStore)
	_, fresh, err := s.RotateToken(t.Context(), "operator", tok.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.RevealToken(t.Context(), "operator", tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reveal() != fresh.Reveal() || got.Reveal() == old.Reveal() {
		t.Fatal("reveal after rotation does not show the new secret")
	}
}

func rotAuditActions(t *testing.T, s *tollgate.Service, account string) []string {
	t.Helper()
	evs, err := s.ListAudit(t.Context(), account, tollgate.AuditPage{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Action)
	}
	return out
}

func rotCount(v []string, x string) int {
	n := 0
	for _, y := range v {
		if y == x {
			n++
		}
	}
	return n
}

func rotGraceNow(t *testing.T, newStore NewStore) {
	s, c, a, tok, old := rotSetup(t, newStore)
	if _, _, err := s.RotateToken(t.Context(), "operator", tok.ID, 0); err != nil {
		t.Fatal(err)
	}
	if r := rotDecide(t, s, old); r != authz.Rotated {
		t.Fatalf("old secret after rotate --grace now: %q", r)
	}
	c.Add(time.Hour)
	if n, err := s.SweepPreviousSecrets(t.Context()); err != nil || n != 0 {
		t.Fatalf("sweep after grace now = %d, %v; want 0", n, err)
	}
	acts := rotAuditActions(t, s, a.Name)
	if rotCount(acts, tollgate.ActionTokenRotated) != 1 || rotCount(acts, tollgate.ActionPreviousExpired) != 1 {
		t.Fatalf("audit = %v", acts)
	}
}

func rotSweepOnce(t *testing.T, newStore NewStore) {
	s, c, a, tok, _ := rotSetup(t, newStore)
	if _, _, err := s.RotateToken(t.Context(), "operator", tok.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepPreviousSecrets(t.Context()); err != nil || n != 0 {
		t.Fatalf("sweep during grace = %d, %v", n, err)
	}
	c.Add(time.Hour)
	// Three replicas sweep at once, twice each.
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 {
				n, err := s.SweepPreviousSecrets(context.Background())
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if total != 1 {
		t.Fatalf("previous_secret_expired recorded %d times, want 1", total)
	}
	if n := rotCount(rotAuditActions(t, s, a.Name), tollgate.ActionPreviousExpired); n != 1 {
		t.Fatalf("audit has %d token.previous_secret_expired", n)
	}
}

// rotExpiringOnce: three sweeps at once on one Service, at every step.
// Separate replicas (a store handle and a Service each) restarted between
// sweeps: store/postgres TestExpiringEventsOnceAcrossThreeReplicasAndRestarts.
func rotExpiringOnce(t *testing.T, newStore NewStore) {
	s, c, a, _, _ := rotSetup(t, newStore)
	ctx := t.Context()
	if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://hooks.example.com/x"}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: a.Name, Name: "ci",
		Expiry: tollgate.Expiry{At: c.Now().Add(40 * 24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	sweep := func() int {
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		for range 3 { // three sweeps at once
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := s.SweepExpiry(context.Background(), nil)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		return total
	}
	steps := []struct {
		advance time.Duration
		want    int
	}{
		{0, 0},                   // 40 days left
		{10 * 24 * time.Hour, 1}, // 30 days left: 30d
		{time.Hour, 0},           // an hour on, nothing new
		{22 * 24 * time.Hour, 0}, // 8 days left
		{24 * time.Hour, 1},      // 7 days left: 7d
		{6 * 24 * time.Hour, 1},  // 1 day left: 1d
		{24 * time.Hour, 1},      // expired
		{24 * time.Hour, 0},
	}
	for i, st := range steps {
		c.Add(st.advance)
		if got := sweep(); got != st.want {
			t.Fatalf("step %d: %d events, want %d", i, got, st.want)
		}
	}
	ds, err := s.ListDeliveries(ctx, a.Name, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		if d.Channel == tollgate.ChannelWebhook && slices.Contains([]string{tollgate.EventTokenExpiring, tollgate.EventTokenExpired}, d.Event.Type) {
			got = append(got, d.Event.Type)
		}
	}
	if len(got) != 4 || rotCount(got, tollgate.EventTokenExpiring) != 3 {
		t.Fatalf("deliveries = %v, want 3 token.expiring and 1 token.expired for %s", got, tok.ID)
	}
}

// rotExpiryPages: the sweep reads tokens a page at a time, and a page
// boundary inside a run of tokens with the same expiry (all those created
// with --expires 2027-01-01) neither skips nor repeats one.
func rotExpiryPages(t *testing.T, newStore NewStore) {
	s, c, a, _, _ := rotSetup(t, newStore)
	ctx := t.Context()
	same := c.Now().Add(3 * 24 * time.Hour).Truncate(time.Second)
	expiries := []time.Time{c.Now().Add(2 * 24 * time.Hour), same, same, same, same, same, c.Now().Add(5 * 24 * time.Hour)}
	want := map[string]bool{}
	for i, at := range expiries {
		tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: a.Name, Name: fmt.Sprintf("t%d", i), Expiry: tollgate.Expiry{At: at}})
		if err != nil {
			t.Fatal(err)
		}
		want[tok.ID] = true
	}
	// The store's pages, two tokens each, in order of expiry then ID.
	var got []*tollgate.Token
	var after tollgate.ExpiryCursor
	for range 10 {
		var page []*tollgate.Token
		err := s.Store.View(ctx, func(tx tollgate.Tx) (err error) {
			page, err = tx.TokensExpiringBy(ctx, c.Now(), c.Now().Add(30*24*time.Hour), after, 2)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 2 {
			break
		}
		last := page[len(page)-1]
		after = tollgate.ExpiryCursor{At: *last.ExpiresAt, ID: last.ID}
	}
	seen := map[string]bool{}
	for i, tok := range got {
		if seen[tok.ID] || !want[tok.ID] {
			t.Fatalf("token %s read twice or not one of the seven", tok.ID)
		}
		seen[tok.ID] = true
		if i > 0 {
			p := got[i-1]
			if tok.ExpiresAt.Before(*p.ExpiresAt) || tok.ExpiresAt.Equal(*p.ExpiresAt) && tok.ID < p.ID {
				t.Fatalf("page order: %s (%s) after %s (%s)", tok.ID, tok.ExpiresAt, p.ID, p.ExpiresAt)
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("the pages read %d of the %d tokens", len(seen), len(want))
	}
	// The sweep, three tokens a transaction: one warning each, once.
	s.ExpiryPage = 3
	if n, err := s.SweepExpiry(ctx, nil); err != nil || n != len(want) {
		t.Fatalf("sweep: %d events, %v; want %d", n, err, len(want))
	}
	if n, err := s.SweepExpiry(ctx, nil); err != nil || n != 0 {
		t.Fatalf("second sweep: %d events, %v; want 0", n, err)
	}
}

func rotClaimExclusive(t *testing.T, newStore NewStore) {
	s, c, a, tok, _ := rotSetup(t, newStore)
	ctx := t.Context()
	if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://hooks.example.com/x"}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, _, err := s.RotateToken(ctx, "operator", tok.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	now := c.Now()
	claim := func(at time.Time) []int64 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ids []int64
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Store.Update(context.Background(), func(tx tollgate.Tx) error {
					ds, err := tx.ClaimDeliveries(context.Background(), at, at.Add(time.Minute), 2)
					mu.Lock()
					defer mu.Unlock()
					for _, d := range ds {
						if d.Event == nil || d.Webhook == nil || len(d.SealedSecret) == 0 {
							t.Errorf("claimed delivery lacks what the deliverer needs: %+v", d)
						}
						ids = append(ids, d.ID)
					}
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		return ids
	}
	first := claim(now)
	slices.Sort(first)
	if len(first) != 5 || len(slices.Compact(slices.Clone(first))) != 5 {
		t.Fatalf("claimed %v, want the 5 deliveries once each", first)
	}
	if again := claim(now.Add(30 * time.Second)); len(again) != 0 {
		t.Fatalf("claimed %v while leased", again)
	}
	// The replica holding them died: once the lease ran out they are
	// claimed again, nothing is lost.
	if again := claim(now.Add(2 * time.Minute)); len(again) != 5 {
		t.Fatalf("after the lease: %v", again)
	}
	// Delivered ones are not.
	err := s.Store.Update(ctx, func(tx tollgate.Tx) error {
		for _, id := range first {
			at := now
			if err := tx.FinishDelivery(ctx, &tollgate.Delivery{ID: id, Status: tollgate.DeliveryDelivered, NextAttemptAt: at, LastCode: 200, DeliveredAt: &at}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if again := claim(now.Add(time.Hour)); len(again) != 0 {
		t.Fatalf("delivered ones claimed again: %v", again)
	}
	if err := s.Redeliver(ctx, "operator", a.Name, first[0]); err != nil {
		t.Fatal(err)
	}
	if again := claim(c.Now()); len(again) != 1 {
		t.Fatalf("redeliver: %v", again)
	}
	wantCode(t, s.Redeliver(ctx, "operator", "acme", 999999), tollgate.ENOTFOUND, "")
}

func rotUsage(t *testing.T, newStore NewStore) {
	s, c, _, tok, _ := rotSetup(t, newStore)
	ctx := t.Context()
	t0 := c.Now()
	if err := s.Store.RecordUsage(ctx, []tollgate.TokenUsage{{TokenID: tok.ID, At: t0, IP: "192.0.2.1", UA: "old-ci", Pulls: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RotateToken(ctx, "operator", tok.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	err := s.Store.RecordUsage(ctx, []tollgate.TokenUsage{
		{TokenID: tok.ID, At: t0.Add(time.Minute), IP: "192.0.2.2", UA: "laggard", Pulls: 1, Previous: true},
		{TokenID: tok.ID, At: t0.Add(2 * time.Minute), IP: "192.0.2.3", UA: "moved", Pulls: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Token(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Previous
	if p == nil || p.LastUsedAt == nil || !p.LastUsedAt.Equal(t0.Add(time.Minute)) || p.LastUsedIP != "192.0.2.2" || p.LastUsedUA != "laggard" {
		t.Fatalf("previous secret's last use = %+v", p)
	}
	if got.LastUsedUA != "moved" || got.Pulls != 3 {
		t.Fatalf("token's last use = %q, pulls %d", got.LastUsedUA, got.Pulls)
	}
}

func rotEventRollsBack(t *testing.T, newStore NewStore) {
	s, _, a, tok, old := rotSetup(t, newStore)
	ctx := t.Context()
	if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://hooks.example.com/x"}); err != nil {
		t.Fatal(err)
	}
	failing := tollgate.BeforeCommit(ctx, func(*tollgate.Token, *tollgate.Account) error {
		return tollgate.Errorf(tollgate.EINTERNAL, "answer could not be made")
	})
	if _, _, err := s.RotateToken(failing, "operator", tok.ID, time.Hour); err == nil {
		t.Fatal("rotate succeeded")
	}
	ds, err := s.ListDeliveries(ctx, a.Name, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 0 {
		t.Fatalf("a rolled-back rotation left %d deliveries", len(ds))
	}
	if r := rotDecide(t, s, old); r != authz.OK {
		t.Fatalf("a rolled-back rotation changed the secret: %q", r)
	}
}
