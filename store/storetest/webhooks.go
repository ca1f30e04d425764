package storetest

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// Webhook management and the lifecycle events of the outbox, through the
// Service, on every store. Identifiers start with "wh".

func testWebhooks(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore NewStore)
	}{
		{"CustomerCannotDeleteTheOperatorsWebhook", whManagedBy},
		{"LifecycleChangesAreEventsWrittenWithTheChange", whLifecycleEvents},
		{"RefusalIsOneEventPerTokenAnHourAcrossReplicas", whRefusalOnce},
		{"TestSendReachesThatWebhookAloneWhateverItsFilter", whTestSend},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

func whManagedBy(t *testing.T, newStore NewStore) {
	s, _, a, _, _ := rotSetup(t, newStore)
	ctx := t.Context()
	customer := tollgate.UserActor("boss@acme.example")
	ops, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://ops.example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	own, _, err := s.CreateWebhook(ctx, customer, tollgate.WebhookCreate{Account: a.Name, URL: "https://hooks.acme.example/x", Format: tollgate.WebhookSlack})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListWebhooks(ctx, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	managers := map[string]string{}
	for _, w := range list {
		managers[w.ID] = w.ManagedBy + "/" + w.Format
	}
	if len(list) != 2 || managers[ops.ID] != "operator/json" || managers[own.ID] != "customer/slack" {
		t.Fatalf("webhooks: %v", managers)
	}
	wantCode(t, s.DeleteWebhook(ctx, customer, a.Name, ops.ID), tollgate.EFORBIDDEN, "")
	if err := s.DeleteWebhook(ctx, customer, a.Name, own.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWebhook(ctx, "operator", a.Name, ops.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.DeleteWebhook(ctx, "operator", a.Name, ops.ID), tollgate.ENOTFOUND, "")
	acts := rotAuditActions(t, s, a.Name)
	if rotCount(acts, tollgate.ActionWebhookCreated) != 2 || rotCount(acts, tollgate.ActionWebhookDeleted) != 2 {
		t.Fatalf("audit = %v", acts)
	}
}

// whEvents returns the payloads delivered to the account's webhooks, oldest first.
func whEvents(t *testing.T, s *tollgate.Service, account string) []tollgate.Payload {
	t.Helper()
	ds, err := s.ListDeliveries(t.Context(), account, 200)
	if err != nil {
		t.Fatal(err)
	}
	var out []tollgate.Payload
	for _, d := range slices.Backward(ds) {
		if d.Channel != tollgate.ChannelWebhook {
			continue
		}
		var p tollgate.Payload
		if err := json.Unmarshal(d.Event.Payload, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func whTypes(ps []tollgate.Payload) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Type)
	}
	return out
}

func whLifecycleEvents(t *testing.T, newStore NewStore) {
	s, _, a, _, _ := rotSetup(t, newStore)
	ctx := t.Context()
	if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://hooks.example.com/x"}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: a.Name, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() error{
		func() error { _, err := s.PauseToken(ctx, "operator", tok.ID); return err },
		func() error { _, err := s.PauseToken(ctx, "operator", tok.ID); return err }, // no change, no event
		func() error { _, err := s.RevokeToken(ctx, "operator", tok.ID); return err },
		func() error { _, err := s.RequestPackages(ctx, tollgate.AccountActor(a.Name), a.Name); return err },
		func() error { _, err := s.GrantPackages(ctx, "operator", a.Name); return err },
		func() error { _, err := s.DenyPackages(ctx, "operator", a.Name); return err },
		func() error { _, err := s.PauseAllTokens(ctx, "operator", a.Name); return err }, // the default token
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	// A change that fails writes no event.
	if _, err := s.PauseToken(ctx, "operator", tok.ID); tollgate.ErrorCode(err) != tollgate.ECONFLICT {
		t.Fatalf("pausing a revoked token: %v", err)
	}
	ps := whEvents(t, s, a.Name)
	want := []string{tollgate.EventTokenCreated, tollgate.EventTokenPaused, tollgate.EventTokenRevoked,
		tollgate.EventPackagesRequested, tollgate.EventPackagesGranted, tollgate.EventPackagesDenied, tollgate.EventTokenPaused}
	if got := whTypes(ps); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if ps[0].Token.ID != tok.ID || ps[0].Token.Name != "ci" || ps[3].Token.ID != "" || ps[4].PackageAccess != string(tollgate.PackageAccessGranted) {
		t.Fatalf("payloads: %+v / %+v / %+v", ps[0], ps[3], ps[4])
	}
	if ps[6].Token.Name != tollgate.DefaultTokenName {
		t.Fatalf("pause-all event is about %q", ps[6].Token.Name)
	}
}

func whRefusalOnce(t *testing.T, newStore NewStore) {
	s, c, a, tok, _ := rotSetup(t, newStore)
	ctx := t.Context()
	if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://hooks.example.com/x",
		Events: []string{tollgate.EventTokenRefused}}); err != nil {
		t.Fatal(err)
	}
	refuse := func() int {
		var wg sync.WaitGroup
		var mu sync.Mutex
		n := 0
		for range 6 { // three replicas, each refusing twice
			wg.Add(1)
			go func() {
				defer wg.Done()
				wrote, err := s.RecordRefusal(context.Background(), tok.ID, "paused", "203.0.113.7", c.Now())
				if err != nil {
					t.Error(err)
				}
				if wrote {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return n
	}
	if n := refuse(); n != 1 {
		t.Fatalf("%d token.refused events, want 1", n)
	}
	c.Add(tollgate.RefusalEvery)
	if n := refuse(); n != 1 {
		t.Fatalf("an hour later: %d token.refused events, want 1", n)
	}
	ps := whEvents(t, s, a.Name)
	if len(ps) != 2 || ps[0].Type != tollgate.EventTokenRefused || ps[0].Reason != "paused" || ps[0].Client != "203.0.113.7" || ps[0].Token.ID != tok.ID {
		t.Fatalf("deliveries = %+v", ps)
	}
	_, err := s.RecordRefusal(ctx, "tok_unknown", "revoked", "203.0.113.7", c.Now())
	wantCode(t, err, tollgate.ENOTFOUND, "")
}

func whTestSend(t *testing.T, newStore NewStore) {
	s, c, a, _, _ := rotSetup(t, newStore)
	ctx := t.Context()
	quiet, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://quiet.example.com/x",
		Events: []string{tollgate.EventTokenExpired}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://other.example.com/x",
		Events: []string{tollgate.EventTokenExpired}}); err != nil {
		t.Fatal(err)
	}
	d, err := s.TestWebhook(ctx, tollgate.UserActor("boss@acme.example"), a.Name, quiet.ID)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := s.ListDeliveries(ctx, a.Name, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].ID != d.ID || ds[0].Target != quiet.ID || ds[0].Event.Type != tollgate.EventWebhookTest || ds[0].Status != tollgate.DeliveryPending {
		t.Fatalf("deliveries = %+v", ds)
	}
	var claimed []*tollgate.Delivery
	if err := s.Store.Update(ctx, func(tx tollgate.Tx) (err error) {
		claimed, err = tx.ClaimDeliveries(ctx, c.Now(), c.Now().Add(time.Minute), 10)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || claimed[0].Webhook == nil || claimed[0].Webhook.ManagedBy != tollgate.ManagedByOperator {
		t.Fatalf("claimed = %+v", claimed)
	}
	_, err = s.TestWebhook(ctx, "operator", a.Name, "wh_unknown")
	wantCode(t, err, tollgate.ENOTFOUND, "")
	if rotCount(rotAuditActions(t, s, a.Name), tollgate.ActionWebhookTested) != 1 {
		t.Fatal("test send not audited")
	}
}
