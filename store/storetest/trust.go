package storetest

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// trustPolicy is a GitHub-Actions-shaped policy for account acme.
func trustPolicy() tollgate.TrustPolicy {
	return tollgate.TrustPolicy{
		Name:   "ci",
		Issuer: "https://token.actions.githubusercontent.com",
		Rules: []tollgate.ClaimRule{
			{Claim: "repository", Value: "acme/app"},
			{Claim: "ref", Value: "refs/heads/*", Glob: true},
		},
		Restrict: tollgate.TokenPolicy{Images: []string{"acme/**"}, Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
	}
}

func exchangeOf(p *tollgate.TrustPolicy, exp time.Time) tollgate.Exchange {
	return tollgate.Exchange{PolicyID: p.ID, Issuer: p.Issuer, Subject: "repo:acme/app:ref:refs/heads/main",
		Claims: map[string]string{"repository": "acme/app", "ref": "refs/heads/main"}, ExpiresAt: exp, Client: "10.1.2.3"}
}

// testTrust: trust policies and the ephemeral credentials they issue.
func testTrust(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("PolicyRoundTripsEveryField", func(t *testing.T) {
		s, _ := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		in := trustPolicy()
		in.JWKS = `{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}`
		p := must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", in))
		if p.Audience != "tollgate:acme" || p.Lifetime != 15*time.Minute || p.Scope != tollgate.ScopeImages {
			t.Fatalf("defaults: %+v", p)
		}
		got := must[*tollgate.TrustPolicy](t)(s.TrustPolicy(ctx, p.ID))
		if got.Name != "ci" || got.Issuer != in.Issuer || got.JWKS != in.JWKS || got.AccountName != "acme" ||
			!slices.Equal(got.Rules, in.Rules) || !slices.Equal(got.Restrict.Images, []string{"acme/**"}) ||
			len(got.Restrict.Networks) != 1 || !got.CreatedAt.Equal(p.CreatedAt) {
			t.Fatalf("read back %+v, wrote %+v", got, p)
		}
		list := must[[]*tollgate.TrustPolicy](t)(s.ListTrustPolicies(ctx, "acme"))
		byAud := must[[]*tollgate.TrustPolicy](t)(s.TrustPoliciesForAudience(ctx, "tollgate:acme"))
		if len(list) != 1 || len(byAud) != 1 || byAud[0].ID != p.ID {
			t.Fatalf("list %v, by audience %v", list, byAud)
		}
		must[[]*tollgate.TrustPolicy](t)(s.TrustPoliciesForAudience(ctx, "tollgate:other"))
		evs := must[[]*tollgate.AuditEvent](t)(s.ListAudit(ctx, "acme", tollgate.AuditPage{}))
		if evs[0].Action != tollgate.ActionTrustCreated || evs[0].Changes["jwks"].To == in.JWKS || evs[0].Changes["claims"].To != "repository=acme/app,ref~refs/heads/*" {
			t.Fatalf("audit %+v", evs[0])
		}
	})

	t.Run("BadPolicyNamesTheField", func(t *testing.T) {
		s, _ := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		for field, change := range map[string]func(p *tollgate.TrustPolicy){
			"issuer":    func(p *tollgate.TrustPolicy) { p.Issuer = "http://issuer.example.com" },
			"claims":    func(p *tollgate.TrustPolicy) { p.Rules = nil },
			"claims[1]": func(p *tollgate.TrustPolicy) { p.Rules[1].Value = "**" },
			"lifetime":  func(p *tollgate.TrustPolicy) { p.Lifetime = 13 * time.Hour },
			"jwks":      func(p *tollgate.TrustPolicy) { p.JWKS = "{}" },
			"scope":     func(p *tollgate.TrustPolicy) { p.Scope = tollgate.ScopePackages },
		} {
			p := trustPolicy()
			change(&p)
			_, err := s.CreateTrustPolicy(ctx, "operator", "acme", p)
			if tollgate.ErrorField(err) != field {
				t.Errorf("%s: error %v", field, err)
			}
		}
	})

	t.Run("AudienceChoosesOneAccount", func(t *testing.T) {
		s, _ := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		must2(t)(s.CreateAccount(ctx, "operator", "evil"))
		must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", trustPolicy()))
		p := trustPolicy()
		p.Audience = "tollgate:acme"
		_, err := s.CreateTrustPolicy(ctx, "operator", "evil", p)
		wantCode(t, err, tollgate.ECONFLICT, "audience")
		// The same account may have several policies on one audience.
		must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", trustPolicy()))
	})

	t.Run("EphemeralCredentialIsOutsideTheTokenLimitAndNeverRevealed", func(t *testing.T) {
		s, c := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		for i := 1; i < tollgate.MaxActiveTokens; i++ {
			must3(t)(s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "t"}))
		}
		p := must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", trustPolicy()))
		oidcExp := c.Now().Add(time.Hour)
		tok, secret := must3(t)(s.IssueEphemeral(ctx, exchangeOf(p, oidcExp)))
		if len(secret.Reveal()) != 40 || secret.Reveal()[:4] != "tge_" {
			t.Fatal("ephemeral secret shape")
		}
		if want := c.Now().Add(15 * time.Minute); !tok.ExpiresAt.Equal(want) {
			t.Fatalf("expires %v, want the policy's lifetime %v", tok.ExpiresAt, want)
		}
		gt, _, err := Authenticate(ctx, s, secret.Reveal())
		if err != nil || gt.ID != tok.ID || gt.Identity == nil || gt.Identity.Subject != "repo:acme/app:ref:refs/heads/main" ||
			gt.Identity.PolicyID != p.ID || gt.Identity.Claims["repository"] != "acme/app" ||
			!slices.Equal(gt.Policy.Images, []string{"acme/**"}) || len(gt.Policy.Networks) != 1 {
			t.Fatalf("Authenticate(ephemeral) = %+v, %v", gt, err)
		}
		_, err = s.RevealToken(ctx, "operator", tok.ID)
		wantCode(t, err, tollgate.ECONFLICT, "")
		_, _, err = s.RotateToken(ctx, "operator", tok.ID, 0)
		wantCode(t, err, tollgate.ECONFLICT, "")
		_, err = s.ExtendToken(ctx, "operator", tok.ID, tollgate.Expiry{Never: true})
		wantCode(t, err, tollgate.ECONFLICT, "")
		// A short-lived OIDC token bounds the credential.
		short := c.Now().Add(2 * time.Minute)
		tok2, _ := must3(t)(s.IssueEphemeral(ctx, exchangeOf(p, short)))
		if !tok2.ExpiresAt.Equal(short) {
			t.Fatalf("expires %v, want the OIDC token's %v", tok2.ExpiresAt, short)
		}
		_, _, err = s.IssueEphemeral(ctx, exchangeOf(p, c.Now().Add(-time.Second)))
		wantCode(t, err, tollgate.EINVALID, "subject_token")
		evs := must[[]*tollgate.AuditEvent](t)(s.ListAudit(ctx, "acme", tollgate.AuditPage{Limit: 1}))
		if evs[0].Action != tollgate.ActionTokenExchanged || evs[0].Changes["claim.ref"].To != "refs/heads/main" ||
			evs[0].Changes["issuer"].To != p.Issuer || evs[0].Changes["subject"].To == "" {
			t.Fatalf("exchange audit %+v", evs[0])
		}
		// Not an expiry to warn anyone about.
		var expiring []*tollgate.Token
		must[struct{}](t)(struct{}{}, s.Store.View(ctx, func(tx tollgate.Tx) (err error) {
			expiring, err = tx.TokensExpiringBy(ctx, c.Now(), c.Now().Add(24*time.Hour), tollgate.ExpiryCursor{}, 100)
			return err
		}))
		if len(expiring) != 0 {
			t.Fatalf("ephemeral credentials listed as expiring: %d", len(expiring))
		}
	})

	t.Run("DeletingOrEditingAPolicyRevokesWhatItIssuedEverywhere", func(t *testing.T) {
		s, c := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		var logged []tollgate.Invalidation
		s.Changed = func(_ context.Context, inv tollgate.Invalidation) { logged = append(logged, inv) }
		p := must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", trustPolicy()))
		other := must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", trustPolicy()))
		a, _ := must3(t)(s.IssueEphemeral(ctx, exchangeOf(p, c.Now().Add(time.Hour))))
		b, _ := must3(t)(s.IssueEphemeral(ctx, exchangeOf(other, c.Now().Add(time.Hour))))

		// An edit that changes nothing revokes nothing.
		must[*tollgate.TrustPolicy](t)(s.EditTrustPolicy(ctx, "operator", p.ID, trustPolicy()))
		if len(logged) != 0 {
			t.Fatalf("no-op edit logged %v", logged)
		}
		next := trustPolicy()
		next.Lifetime = time.Hour
		edited := must[*tollgate.TrustPolicy](t)(s.EditTrustPolicy(ctx, "operator", p.ID, next))
		if edited.Lifetime != time.Hour || !edited.CreatedAt.Equal(p.CreatedAt) {
			t.Fatalf("edited %+v", edited)
		}
		if len(logged) != 1 || !slices.Equal(logged[0].TokenIDs, []string{a.ID}) || logged[0].Seq == 0 {
			t.Fatalf("edit logged %+v, want the credential it issued", logged)
		}
		if got, _, _ := s.Token(ctx, a.ID); got.RevokedAt == nil {
			t.Fatal("credential of the edited policy still live")
		}
		c2, _ := must3(t)(s.IssueEphemeral(ctx, exchangeOf(p, c.Now().Add(time.Hour))))
		if err := s.DeleteTrustPolicy(ctx, "operator", p.ID); err != nil {
			t.Fatal(err)
		}
		if len(logged) != 2 || !slices.Equal(logged[1].TokenIDs, []string{c2.ID}) {
			t.Fatalf("delete logged %+v", logged)
		}
		_, err := s.TrustPolicy(ctx, p.ID)
		wantCode(t, err, tollgate.ENOTFOUND, "")
		// A policy deleted between verification and issue issues nothing.
		_, _, err = s.IssueEphemeral(ctx, exchangeOf(p, c.Now().Add(time.Hour)))
		wantCode(t, err, tollgate.ENOTFOUND, "")
		if got, _, _ := s.Token(ctx, b.ID); got.RevokedAt != nil {
			t.Fatal("another policy's credential was revoked")
		}
		evs := must[[]*tollgate.AuditEvent](t)(s.ListAudit(ctx, "acme", tollgate.AuditPage{Limit: 1}))
		if evs[0].Action != tollgate.ActionTrustDeleted || evs[0].Changes["credentials_revoked"].To != "1" {
			t.Fatalf("delete audit %+v", evs[0])
		}
	})

	t.Run("EphemeralCredentialFromManyNetworksIsNoNewNetworkEvent", func(t *testing.T) {
		s, c := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: "acme", URL: "https://hooks.example.com/tollgate",
			Events: []string{tollgate.EventTokenNewNetwork}}); err != nil {
			t.Fatal(err)
		}
		p := must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", trustPolicy()))
		tok, _ := must3(t)(s.IssueEphemeral(ctx, exchangeOf(p, c.Now().Add(time.Hour))))
		day := c.Now().UTC().Truncate(24 * time.Hour)
		for _, addr := range []string{"10.0.0.1", "192.0.2.7", "198.51.100.3"} {
			usageRecord(t, s, usageDelta(txStoredToken{Token: tok}, "app", day, addr, "docker/27"))
		}
		if ds := must[[]*tollgate.Delivery](t)(s.ListDeliveries(ctx, "acme", 0)); len(ds) != 0 {
			t.Fatalf("%d token.new_network deliveries for a CI job's credential", len(ds))
		}
	})

	t.Run("SweepDeletesEndedEphemeralCredentialsOnly", func(t *testing.T) {
		s, c := newService(t, newStore)
		_, def := must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		p := must[*tollgate.TrustPolicy](t)(s.CreateTrustPolicy(ctx, "operator", "acme", trustPolicy()))
		old, _ := must3(t)(s.IssueEphemeral(ctx, exchangeOf(p, c.Now().Add(time.Hour))))
		c.Add(2 * time.Hour)
		live, _ := must3(t)(s.IssueEphemeral(ctx, exchangeOf(p, c.Now().Add(time.Hour))))
		n := must[int](t)(s.SweepEphemeral(ctx, time.Hour))
		if n != 1 {
			t.Fatalf("swept %d, want 1", n)
		}
		toks, _, _ := s.ListTokens(ctx, "acme", "")
		var ids []string
		for _, tk := range toks {
			ids = append(ids, tk.ID)
		}
		if slices.Contains(ids, old.ID) || !slices.Contains(ids, live.ID) || !slices.Contains(ids, def.ID) {
			t.Fatalf("after sweep: %v", ids)
		}
	})
}
