package oidc_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/oidc"
	"github.com/tollgate/tollgate/store/sqlite"
	"github.com/tollgate/tollgate/store/storetest"
)

type fixture struct {
	svc    *tollgate.Service
	issuer *oidcissuer.Issuer
	ver    *oidc.Verifier
	ex     *oidc.Exchanger
	clock  *testenv.Clock // shared by the service and the verifier
	policy *tollgate.TrustPolicy
}

func startIssuer(t testing.TB) *oidcissuer.Issuer {
	t.Helper()
	is, err := oidcissuer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	return is
}

// newFixture: account acme trusts a GitHub-Actions-shaped issuer for
// repository acme/app on any branch.
func newFixture(t testing.TB, o oidc.Options) *fixture {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := testenv.NewClock(time.Now().UTC().Truncate(time.Second))
	svc := tollgate.NewService(db, storetest.NewKeys(t))
	svc.Now = c.Now
	if _, _, _, err := svc.CreateAccount(t.Context(), "operator", "acme"); err != nil {
		t.Fatal(err)
	}
	is := startIssuer(t)
	p, err := svc.CreateTrustPolicy(t.Context(), "operator", "acme", tollgate.TrustPolicy{
		Name: "ci", Issuer: is.URL,
		Rules: []tollgate.ClaimRule{{Claim: "repository", Value: "acme/app"}, {Claim: "ref", Value: "refs/heads/*", Glob: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	o.AllowLoopback, o.Now = true, c.Now
	ver := oidc.New(o)
	return &fixture{svc: svc, issuer: is, ver: ver, ex: oidc.NewExchanger(ver, svc, nil), clock: c, policy: p}
}

func (f *fixture) claims() map[string]any {
	return oidcissuer.GitHubActions("acme/app", "tollgate:acme", f.clock.Now())
}

func (f *fixture) exchange(t *testing.T, raw string) (*tollgate.Token, error) {
	t.Helper()
	tok, secret, err := f.ex.Exchange(t.Context(), raw, "192.0.2.1")
	if err == nil {
		if got, _, aerr := storetest.Authenticate(t.Context(), f.svc, secret.Reveal()); aerr != nil || got.ID != tok.ID {
			t.Fatalf("issued secret does not authenticate: %v", aerr)
		}
	}
	return tok, err
}

func wantRefused(t *testing.T, err error) {
	t.Helper()
	if tollgate.ErrorCode(err) != tollgate.EUNAUTHORIZED || tollgate.ErrorMessage(err) != "invalid credentials" {
		t.Fatalf("err = %v, want the wrong-password refusal", err)
	}
}

func TestGitHubActionsTokenIsExchangedForAnEphemeralCredential(t *testing.T) {
	f := newFixture(t, oidc.Options{})
	tok, err := f.exchange(t, f.issuer.Sign(f.claims()))
	if err != nil {
		t.Fatal(err)
	}
	id := tok.Identity
	if id == nil || id.Issuer != f.issuer.URL || id.Subject != "repo:acme/app:ref:refs/heads/main" || id.PolicyID != f.policy.ID ||
		id.Claims["repository"] != "acme/app" || id.Claims["ref"] != "refs/heads/main" {
		t.Fatalf("identity %+v", id)
	}
	if want := f.clock.Now().Add(15 * time.Minute); tok.ExpiresAt.After(want) {
		t.Fatalf("expires %v, after the policy's lifetime (%v)", tok.ExpiresAt, want)
	}
	if want := f.clock.Now().Add(10 * time.Minute); !tok.ExpiresAt.Equal(want) {
		t.Fatalf("expires %v, want the OIDC token's own expiry %v", tok.ExpiresAt, want)
	}
}

// TestCredentialNeverOutlivesTheWorkloadsToken: the credential ends at
// the OIDC token's expiry or the policy's lifetime, whichever is first;
// the verification leeway admits clock skew on exp, it never lengthens
// the credential. A token past its expiry but within the leeway gets
// nothing: its credential would be born dead.
func TestCredentialNeverOutlivesTheWorkloadsToken(t *testing.T) {
	f := newFixture(t, oidc.Options{Leeway: 2 * time.Minute})
	for _, c := range []struct {
		name    string
		expires time.Duration // the OIDC token's exp, from now
		want    time.Duration // the credential's expiry, from now
	}{
		{"token ends first", 30 * time.Second, 30 * time.Second},
		{"token ends first, by less than the leeway", 14*time.Minute + 30*time.Second, 14*time.Minute + 30*time.Second},
		{"policy ends first", time.Hour, 15 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims := f.claims()
			claims["exp"] = f.clock.Now().Add(c.expires).Unix()
			tok, err := f.exchange(t, f.issuer.Sign(claims))
			if err != nil {
				t.Fatal(err)
			}
			if want := f.clock.Now().Add(c.want); !tok.ExpiresAt.Equal(want) {
				t.Fatalf("credential expires %v, want %v", tok.ExpiresAt, want)
			}
		})
	}
	t.Run("token expired within the leeway", func(t *testing.T) {
		claims := f.claims()
		claims["exp"] = f.clock.Now().Add(-time.Minute).Unix()
		raw := f.issuer.Sign(claims)
		if _, err := f.ver.Verify(t.Context(), raw, f.issuer.URL, "", f.policy.Audience); err != nil {
			t.Fatalf("the verifier refused a token within its leeway: %v", err)
		}
		_, err := f.exchange(t, raw)
		wantRefused(t, err)
	})
}

// TestForgedAndMismatchedTokensAreRefused: each is the refusal of a
// wrong password, and issues nothing.
func TestForgedAndMismatchedTokensAreRefused(t *testing.T) {
	f := newFixture(t, oidc.Options{})
	other := startIssuer(t)
	for name, raw := range map[string]func() string{
		"wrong audience": func() string {
			c := f.claims()
			c["aud"] = "tollgate:other"
			return f.issuer.Sign(c)
		},
		"expired": func() string {
			c := f.claims()
			c["exp"] = f.clock.Now().Add(-2 * time.Minute).Unix()
			return f.issuer.Sign(c)
		},
		"not yet valid": func() string {
			c := f.claims()
			c["nbf"] = f.clock.Now().Add(time.Hour).Unix()
			return f.issuer.Sign(c)
		},
		"wrong issuer's key": func() string {
			c := f.claims()
			c["iss"] = f.issuer.URL // claims to be the trusted issuer
			return other.Sign(c)
		},
		"issuer without a policy":   func() string { return other.Sign(f.claims()) },
		"alg none":                  func() string { return f.issuer.SignNone(f.claims()) },
		"HS256 with the public key": func() string { return f.issuer.SignHS256(f.claims(), []byte(f.issuer.JWKS())) },
		"unknown kid":               func() string { return f.issuer.SignUnknownKey(f.claims()) },
		"claim mismatch": func() string {
			return f.issuer.Sign(oidcissuer.GitHubActions("acme/other", "tollgate:acme", f.clock.Now()))
		},
		"glob mismatch": func() string {
			c := f.claims()
			c["ref"] = "refs/tags/v1"
			return f.issuer.Sign(c)
		},
		"not a JWT": func() string { return "eyJhbGciOiJSUzI1NiJ9.e30" },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.exchange(t, raw())
			wantRefused(t, err)
		})
	}
	toks, _, _ := f.svc.ListTokens(t.Context(), "acme", "")
	if len(toks) != 1 {
		t.Fatalf("%d tokens after refused exchanges, want only the default", len(toks))
	}
}

func TestDeletedPolicyRefusesAndEndsItsCredentials(t *testing.T) {
	f := newFixture(t, oidc.Options{})
	raw := f.issuer.Sign(f.claims())
	tok, err := f.exchange(t, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteTrustPolicy(t.Context(), "operator", f.policy.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.exchange(t, raw)
	wantRefused(t, err)
	if got, _, _ := f.svc.Token(t.Context(), tok.ID); got.RevokedAt == nil {
		t.Fatal("credential of a deleted policy still live")
	}
}

// TestKeysRotatedMidTestAreFetchedOnUnknownKid: a new key is picked up
// by one refetch, and a known key costs no fetch while the set is fresh.
func TestKeysRotatedMidTestAreFetchedOnUnknownKid(t *testing.T) {
	f := newFixture(t, oidc.Options{MinInterval: time.Minute})
	if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	if n := f.issuer.JWKSFetches(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
	if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	if n := f.issuer.JWKSFetches(); n != 1 {
		t.Fatalf("known kid refetched the JWKS (%d fetches)", n)
	}
	f.clock.Add(2 * time.Minute)
	if err := f.issuer.Rotate(false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
		t.Fatalf("token of the rotated-in key: %v", err)
	}
	if n := f.issuer.JWKSFetches(); n != 2 {
		t.Fatalf("JWKS fetched %d times after rotation, want 2", n)
	}
}

// TestKeyDroppedFromTheJWKSStopsVerifying: the issuer rotates from K1 to
// K2 and drops K1 from its JWKS. Once min_refetch has passed since the
// set was fetched, a new token signed with K1 is refused and a K2 token
// verifies, whichever of them comes first.
func TestKeyDroppedFromTheJWKSStopsVerifying(t *testing.T) {
	for _, order := range []string{"old key first", "new key first"} {
		t.Run(order, func(t *testing.T) {
			f := newFixture(t, oidc.Options{MinInterval: time.Minute})
			k1 := f.issuer.Current()
			if _, err := f.exchange(t, f.issuer.SignWith(k1, f.claims())); err != nil {
				t.Fatalf("K1 before the rotation: %v", err)
			}
			if err := f.issuer.Rotate(true); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(f.issuer.JWKS(), k1.ID()) {
				t.Fatal("the issuer still publishes K1")
			}
			f.clock.Add(time.Minute)
			oldKey := func() {
				t.Helper()
				_, err := f.exchange(t, f.issuer.SignWith(k1, f.claims()))
				wantRefused(t, err)
			}
			newKey := func() {
				t.Helper()
				if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
					t.Fatalf("K2 after the rotation: %v", err)
				}
			}
			if order == "old key first" {
				oldKey()
				newKey()
			} else {
				newKey()
				oldKey()
			}
			oldKey()
		})
	}
}

// TestIssuerOutageKeepsItsLastKeysForABoundedTime: an issuer that cannot
// be fetched does not refuse its workloads at once; the keys it last
// published serve for a bounded time (15 minutes since they were
// fetched), then its tokens are refused.
func TestIssuerOutageKeepsItsLastKeysForABoundedTime(t *testing.T) {
	f := newFixture(t, oidc.Options{MinInterval: time.Minute})
	if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	raw := func() string { return f.issuer.Sign(f.claims()) }
	f.issuer.Close()
	f.clock.Add(2 * time.Minute)
	if _, err := f.exchange(t, raw()); err != nil {
		t.Fatalf("2 minutes into the issuer's outage: %v", err)
	}
	f.clock.Add(13 * time.Minute)
	_, err := f.exchange(t, raw())
	wantRefused(t, err)
}

// TestJWKSFetchIsBounded: a huge or hanging JWKS fails the verification
// (never the process), and a flood of unknown kids costs the issuer one
// fetch per interval.
func TestJWKSFetchIsBounded(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		f := newFixture(t, oidc.Options{MaxBody: 64 << 10})
		f.issuer.JWKSHook = func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"keys":[`))
			for range 100_000 {
				w.Write([]byte(`{"kty":"oct","k":"AAAA"},`))
			}
		}
		_, err := f.exchange(t, f.issuer.Sign(f.claims()))
		wantRefused(t, err)
	})
	t.Run("time", func(t *testing.T) {
		f := newFixture(t, oidc.Options{Timeout: 200 * time.Millisecond})
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		f.issuer.JWKSHook = func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, err := f.exchange(t, f.issuer.Sign(f.claims()))
		wantRefused(t, err)
	})
	t.Run("frequency", func(t *testing.T) {
		f := newFixture(t, oidc.Options{MinInterval: time.Minute})
		if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
			t.Fatal(err)
		}
		for range 50 {
			_, err := f.exchange(t, f.issuer.SignUnknownKey(f.claims()))
			wantRefused(t, err)
		}
		if n := f.issuer.JWKSFetches(); n != 1 {
			t.Fatalf("50 unknown kids within the interval fetched the JWKS %d times, want 1", n)
		}
		f.clock.Add(time.Minute)
		f.exchange(t, f.issuer.SignUnknownKey(f.claims()))
		if n := f.issuer.JWKSFetches(); n != 2 {
			t.Fatalf("after the interval: %d fetches, want 2", n)
		}
	})
}

// TestLoopbackIssuerNeedsTheDevelopmentSwitch: without it, an issuer on
// a loopback host (or a JWKS there) is never fetched (SSRF).
func TestLoopbackIssuerNeedsTheDevelopmentSwitch(t *testing.T) {
	is := startIssuer(t)
	v := oidc.New(oidc.Options{})
	raw := is.Sign(map[string]any{"aud": "a", "sub": "s", "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := v.Verify(context.Background(), raw, is.URL, "", "a"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("loopback issuer without the switch: %v", err)
	}
	if is.JWKSFetches() != 0 {
		t.Fatal("fetched a loopback JWKS")
	}
}

// TestStaticJWKSVerifiesWithoutFetching: an air-gapped cluster's keys.
func TestStaticJWKSVerifiesWithoutFetching(t *testing.T) {
	f := newFixture(t, oidc.Options{})
	p := *f.policy
	p.JWKS = f.issuer.JWKS()
	if _, err := f.svc.EditTrustPolicy(t.Context(), "operator", p.ID, p); err != nil {
		t.Fatal(err)
	}
	if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	if n := f.issuer.JWKSFetches(); n != 0 {
		t.Fatalf("static JWKS policy fetched the issuer's JWKS %d times", n)
	}
	_, err := f.exchange(t, f.issuer.SignUnknownKey(f.claims()))
	wantRefused(t, err)
}

// TestDiscoveryIsCachedAndRenewedDaily: one discovery fetch serves every
// token for a day; then it is fetched again (a changed jwks_uri or
// algorithm list is picked up).
func TestDiscoveryIsCachedAndRenewedDaily(t *testing.T) {
	f := newFixture(t, oidc.Options{})
	for range 3 {
		if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.issuer.DiscoveryFetches(); n != 1 {
		t.Fatalf("discovery fetched %d times for three tokens, want 1", n)
	}
	f.clock.Add(25 * time.Hour)
	if _, err := f.exchange(t, f.issuer.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	if n := f.issuer.DiscoveryFetches(); n != 2 {
		t.Fatalf("discovery fetched %d times after a day, want 2", n)
	}
}
