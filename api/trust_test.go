package api_test

import (
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// TestTrustPolicyOfAnotherAccountLooksMissing: a customer's key can
// neither read, replace nor delete another account's trust policy, nor
// learn that it exists; its own it manages.
func TestTrustPolicyOfAnotherAccountLooksMissing(t *testing.T) {
	e := newEnv(t)
	acme, _ := e.account("acme")
	evil, _ := e.account("evil")
	in := api.TrustPolicy{Name: "ci", Issuer: "https://token.actions.githubusercontent.com",
		Claims: []api.ClaimRule{{Claim: "repository", Value: "acme/app"}}, Lifetime: "30m"}
	p, err := acme.CreateTrustPolicy(t.Context(), "acme", in)
	if err != nil {
		t.Fatal(err)
	}
	if p.Audience != "tollgate:acme" || p.Lifetime != "30m0s" || len(p.Scope) != 1 {
		t.Fatalf("created %+v", p)
	}
	if _, err := evil.TrustPolicy(t.Context(), p.ID); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("get: %v", err)
	}
	if _, err := evil.ReplaceTrustPolicy(t.Context(), p.ID, in); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("put: %v", err)
	}
	if err := evil.DeleteTrustPolicy(t.Context(), p.ID); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("delete: %v", err)
	}
	if _, err := evil.ListTrustPolicies(t.Context(), "acme"); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("list: %v", err)
	}
	// Nor take acme's audience.
	in.Audience = "tollgate:acme"
	if _, err := evil.CreateTrustPolicy(t.Context(), "evil", in); tollgate.ErrorCode(err) != tollgate.ECONFLICT || tollgate.ErrorField(err) != "audience" {
		t.Fatalf("taking another account's audience: %v", err)
	}
	in.Lifetime = "forever"
	if _, err := acme.CreateTrustPolicy(t.Context(), "acme", in); tollgate.ErrorField(err) != "lifetime" {
		t.Fatalf("bad lifetime: %v", err)
	}
	if err := acme.DeleteTrustPolicy(t.Context(), p.ID); err != nil {
		t.Fatal(err)
	}
}
