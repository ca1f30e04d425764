package api_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// TestStaleReportNeverUsedAndManyAddresses: never_used lists the tokens
// never used, min_addresses those that pulled from at least that many
// distinct addresses in 30 days; a customer's key sees its own account
// only, and a bad count names the field.
func TestStaleReportNeverUsedAndManyAddresses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cust, def := e.account("acme")
	busy, err := cust.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	tok, a, err := e.svc.Token(ctx, busy.ID)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	var addrs []tollgate.AddressUse
	for i := range 4 {
		addrs = append(addrs, tollgate.AddressUse{Address: fmt.Sprintf("10.0.0.%d", i), Pulls: 1, First: now, Last: now})
	}
	if err := e.svc.RecordPulls(ctx, []tollgate.UsageDelta{{UsageKey: tollgate.UsageKey{Day: now, TokenID: tok.ID, AccountID: a.ID, Kind: tollgate.UsageImage, Repository: "app"},
		Pulls: 4, Addresses: addrs}}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Store.RecordUsage(ctx, []tollgate.TokenUsage{{TokenID: tok.ID, At: now, IP: "10.0.0.3"}}); err != nil {
		t.Fatal(err)
	}
	ids := func(tl *api.TokenList, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tk := range tl.Tokens {
			out = append(out, tk.ID)
		}
		return out
	}
	if got := ids(cust.ListNeverUsedTokens(ctx, "acme")); len(got) != 1 || got[0] != def.ID {
		t.Errorf("never used = %v, want only the default token %s", got, def.ID)
	}
	if got := ids(cust.ListTokensFromManyAddresses(ctx, "acme", 4)); len(got) != 1 || got[0] != busy.ID {
		t.Errorf("from 4+ addresses = %v, want %s", got, busy.ID)
	}
	if got := ids(e.op.ListTokensFromManyAddresses(ctx, "acme", 5)); len(got) != 0 {
		t.Errorf("from 5+ addresses = %v, want none", got)
	}
	e.account("other")
	if _, err := cust.ListNeverUsedTokens(ctx, "other"); tollgate.ErrorCode(err) == "" {
		t.Error("a customer listed another account's tokens")
	}
	if _, err := e.op.ListTokensFromManyAddresses(ctx, "acme", 0); tollgate.ErrorField(err) != "min_addresses" {
		t.Errorf("min_addresses=0: %v, want a min_addresses error", err)
	}
}
