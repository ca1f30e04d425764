package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// TestSuspendedAccountKeyCannotRevealToken: suspending an account stops
// its tokens, but its own API key could still reveal a secret, mint a new
// token or extend one, all of which work again the moment the account is
// resumed, outside the operator's decision. The operator acts as before.
func TestSuspendedAccountKeyCannotRevealToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, def := e.account("acme")
	key := acme.Key
	tok, err := acme.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "ci", ExpiresAt: "2099-01-01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.op.SuspendAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	const msg = "account acme is suspended: tokens cannot be created, revealed or extended"
	for name, r := range map[string]response{
		"reveal": e.do("GET", "/api/v1/tokens/"+def.ID+"?reveal=true", key, nil),
		"create": e.do("POST", "/api/v1/accounts/acme/tokens", key, map[string]any{"name": "more"}),
		"extend": e.do("POST", "/api/v1/tokens/"+tok.ID+"/extend", key, map[string]any{"expires_at": "never"}),
		"edit":   e.do("PATCH", "/api/v1/tokens/"+tok.ID, key, map[string]any{"expires_at": "2100-01-01"}),
	} {
		if d := wantError(t, r, http.StatusForbidden, tollgate.EFORBIDDEN, ""); d.Message != msg {
			t.Errorf("%s: message %q", name, d.Message)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", name, r.header.Get("Cache-Control"))
		}
	}
	// Reading works, without the secret.
	got, err := acme.GetToken(ctx, tok.ID, false)
	if err != nil || got.Secret != "" || got.Status != string(tollgate.TokenSuspended) || got.ExpiresAt.Year() != 2099 {
		t.Fatalf("read: %+v, %v", got, err)
	}
	if l, err := acme.ListTokens(ctx, "acme", ""); err != nil || len(l.Tokens) != 2 {
		t.Fatalf("list: %v, %v", l, err)
	}
	// The operator acts as always.
	if got, err := e.op.GetToken(ctx, def.ID, true); err != nil || got.Secret != def.Secret {
		t.Fatalf("operator reveal: %v", err)
	}
	if _, err := e.op.ExtendToken(ctx, tok.ID, "never"); err != nil {
		t.Fatalf("operator extend: %v", err)
	}
}
