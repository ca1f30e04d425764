package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestTokenRefusalsNewestFirstOwnAccountOnly: the refused attempts of a
// token, as the edge recorded them, newest first with time, address,
// client and reason; a customer's key reads its own tokens' only (another
// account's token is not found, and none of its refusals shows), a token
// without any answers an empty array, and no secret is in the answer.
func TestTokenRefusalsNewestFirstOwnAccountOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cust, def := e.account("acme")
	_, otherDef := e.account("other")
	quiet, err := cust.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := e.clock.Now().Add(-time.Hour)
	if err := e.svc.RecordRefusals(ctx, []tollgate.TokenRefusal{
		{TokenID: def.ID, At: t0, Address: "192.0.2.7", UserAgent: "containers/5.30 (github.com/containers/image)", Reason: "address_not_allowed"},
		{TokenID: def.ID, At: t0.Add(2 * time.Minute), Address: "2001:db8::9", UserAgent: "Debian APT-HTTP/1.3 (2.6.1)", Reason: "paused"},
		{TokenID: def.ID, At: t0.Add(time.Minute), Address: "192.0.2.8", UserAgent: "apk-tools/2.14", Reason: "cap_reached"},
		{TokenID: otherDef.ID, At: t0, Address: "198.51.100.66", UserAgent: "crane", Reason: "revoked"},
	}); err != nil {
		t.Fatal(err)
	}

	got, err := cust.TokenRefusals(ctx, def.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Refusal{
		{At: t0.Add(2 * time.Minute), Address: "2001:db8::9", UserAgent: "Debian APT-HTTP/1.3 (2.6.1)", Reason: "paused"},
		{At: t0.Add(time.Minute), Address: "192.0.2.8", UserAgent: "apk-tools/2.14", Reason: "cap_reached"},
		{At: t0, Address: "192.0.2.7", UserAgent: "containers/5.30 (github.com/containers/image)", Reason: "address_not_allowed"},
	}
	if got.Token != def.ID || len(got.Refusals) != len(want) {
		t.Fatalf("refusals = %+v, want %d of token %s", got, len(want), def.ID)
	}
	for i, r := range got.Refusals {
		if !r.At.Equal(want[i].At) || r.Address != want[i].Address || r.UserAgent != want[i].UserAgent || r.Reason != want[i].Reason {
			t.Errorf("refusal %d = %+v, want %+v (newest first)", i, r, want[i])
		}
	}
	if op, err := e.op.TokenRefusals(ctx, otherDef.ID); err != nil || len(op.Refusals) != 1 || op.Refusals[0].Address != "198.51.100.66" {
		t.Errorf("operator reading other's token = %+v, %v", op, err)
	}

	key := cust.Key
	raw := e.do("GET", "/api/v1/tokens/"+quiet.ID+"/refusals", key, nil)
	if raw.status != 200 || !strings.Contains(string(raw.body), `"refusals":[]`) {
		t.Errorf("a token without refusals: %d %s, want an empty array", raw.status, raw.body)
	}
	theirs := e.do("GET", "/api/v1/tokens/"+otherDef.ID+"/refusals", key, nil)
	wantError(t, theirs, 404, tollgate.ENOTFOUND, "")
	if strings.Contains(string(theirs.body), "198.51.100.66") {
		t.Error("another account's refusal shows in the 404")
	}
	wantError(t, e.do("GET", "/api/v1/tokens/tok_nonexistent/refusals", adminKey, nil), 404, tollgate.ENOTFOUND, "")
	wantError(t, e.do("GET", "/api/v1/tokens/"+def.ID+"/refusals", "", nil), 401, tollgate.EUNAUTHORIZED, "")
	mine := e.do("GET", "/api/v1/tokens/"+def.ID+"/refusals", key, nil)
	if strings.Contains(string(mine.body), def.Secret) || strings.Contains(string(mine.body), tollgate.TokenPrefix) {
		t.Errorf("a secret in the refusals answer: %s", mine.body)
	}
}
