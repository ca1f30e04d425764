package authz

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Minute), now.Add(time.Minute)
	sub := tollgate.Subscription{Images: []string{"nginx", "team-a/*"}, Packages: []string{"os"}}
	acct := func(mod func(a *tollgate.Account)) *tollgate.Account {
		a := &tollgate.Account{ID: "acc_1", Status: tollgate.AccountActive, PackageAccess: tollgate.PackageAccessGranted, Subscription: sub}
		if mod != nil {
			mod(a)
		}
		return a
	}
	tok := func(mod func(t *tollgate.Token)) *tollgate.Token {
		t := &tollgate.Token{ID: "tok_1", AccountID: "acc_1", Scope: tollgate.ScopeImages | tollgate.ScopePackages}
		if mod != nil {
			mod(t)
		}
		return t
	}
	img := func(n string) Resource { return Resource{Kind: Image, Name: n} }
	from := func(r Resource, addr string) Resource { r.Client = netip.MustParseAddr(addr); return r }
	withNet := func(cidrs ...string) func(t *tollgate.Token) {
		return func(t *tollgate.Token) {
			ns, err := tollgate.ParseNetworks("networks", cidrs)
			if err != nil {
				panic(err)
			}
			t.Policy.Networks = ns
		}
	}
	pkg := func(n string) Resource { return Resource{Kind: Package, Name: n} }

	tests := []struct {
		name string
		tok  *tollgate.Token
		acct *tollgate.Account
		res  Resource
		want Reason
	}{
		{"allowed image", tok(nil), acct(nil), img("nginx"), OK},
		{"allowed image by pattern", tok(nil), acct(nil), img("team-a/app"), OK},
		{"allowed package", tok(nil), acct(nil), pkg("os"), OK},
		{"login needs only a usable token", tok(func(t *tollgate.Token) { t.Scope = tollgate.ScopePackages }), acct(nil), Resource{}, OK},
		{"not entitled image", tok(nil), acct(nil), img("redis"), NotEntitled},
		{"not entitled package", tok(nil), acct(nil), pkg("extras"), NotEntitled},
		{"packages-only token on image", tok(func(t *tollgate.Token) { t.Scope = tollgate.ScopePackages }), acct(nil), img("nginx"), WrongScope},
		{"images-only token on package", tok(func(t *tollgate.Token) { t.Scope = tollgate.ScopeImages }), acct(nil), pkg("os"), WrongScope},
		{"package access denied later", tok(nil), acct(func(a *tollgate.Account) { a.PackageAccess = tollgate.PackageAccessDenied }), pkg("os"), NotEntitled},
		{"package access only requested", tok(nil), acct(func(a *tollgate.Account) { a.PackageAccess = tollgate.PackageAccessRequested }), pkg("os"), NotEntitled},
		{"expired", tok(func(t *tollgate.Token) { t.ExpiresAt = &past }), acct(nil), img("nginx"), Expired},
		{"not yet expired", tok(func(t *tollgate.Token) { t.ExpiresAt = &future }), acct(nil), img("nginx"), OK},
		{"expired at this instant", tok(func(t *tollgate.Token) { t.ExpiresAt = &now }), acct(nil), img("nginx"), Expired},
		{"revoked", tok(func(t *tollgate.Token) { t.RevokedAt = &past }), acct(nil), img("nginx"), Revoked},
		{"revoked beats suspended and expired", tok(func(t *tollgate.Token) { t.RevokedAt = &past; t.ExpiresAt = &past }),
			acct(func(a *tollgate.Account) { a.Status = tollgate.AccountSuspended }), img("nginx"), Revoked},
		{"suspended", tok(nil), acct(func(a *tollgate.Account) { a.Status = tollgate.AccountSuspended }), img("nginx"), Suspended},
		{"suspended login", tok(nil), acct(func(a *tollgate.Account) { a.Status = tollgate.AccountSuspended }), Resource{}, Suspended},
		{"account mismatch", tok(nil), acct(func(a *tollgate.Account) { a.ID = "acc_2" }), img("nginx"), Revoked},
		{"nil token", nil, acct(nil), img("nginx"), Revoked},
		{"nil account", tok(nil), nil, img("nginx"), Revoked},

		// The token's own policy only narrows.
		{"paused", tok(func(t *tollgate.Token) { t.Policy.PausedAt = &past }), acct(nil), img("nginx"), Paused},
		{"paused login", tok(func(t *tollgate.Token) { t.Policy.PausedAt = &past }), acct(nil), Resource{}, Paused},
		{"revoked beats paused", tok(func(t *tollgate.Token) { t.Policy.PausedAt = &past; t.RevokedAt = &past }), acct(nil), img("nginx"), Revoked},
		{"not yet valid", tok(func(t *tollgate.Token) { t.Policy.ValidFrom = &future }), acct(nil), img("nginx"), NotYetValid},
		{"valid from now on", tok(func(t *tollgate.Token) { t.Policy.ValidFrom = &now }), acct(nil), img("nginx"), OK},
		{"restricted to another image", tok(func(t *tollgate.Token) { t.Policy.Images = []string{"team-a/*"} }), acct(nil), img("nginx"), Restricted},
		{"restricted to this image", tok(func(t *tollgate.Token) { t.Policy.Images = []string{"team-a/*"} }), acct(nil), img("team-a/app"), OK},
		{"restriction never widens the subscription", tok(func(t *tollgate.Token) { t.Policy.Images = []string{"**"} }), acct(nil), img("redis"), NotEntitled},
		{"package restriction", tok(func(t *tollgate.Token) { t.Policy.Packages = []string{"extras"} }), acct(nil), pkg("os"), Restricted},
		{"package restriction never widens", tok(func(t *tollgate.Token) { t.Policy.Packages = []string{"extras"} }), acct(nil), pkg("extras"), NotEntitled},
		{"image restriction leaves packages alone", tok(func(t *tollgate.Token) { t.Policy.Images = []string{"team-a/*"} }), acct(nil), pkg("os"), OK},
		{"address inside the network", tok(withNet("10.1.0.0/16")), acct(nil), from(img("nginx"), "10.1.2.3"), OK},
		{"address outside the network", tok(withNet("10.1.0.0/16")), acct(nil), from(img("nginx"), "10.2.0.1"), AddressNotAllowed},
		{"address rule on login", tok(withNet("10.1.0.0/16")), acct(nil), from(Resource{}, "192.0.2.1"), AddressNotAllowed},
		{"unknown address with a rule fails closed", tok(withNet("10.1.0.0/16")), acct(nil), img("nginx"), AddressNotAllowed},
		{"IPv6 inside", tok(withNet("2001:db8::/32")), acct(nil), from(img("nginx"), "2001:db8::1"), OK},
		{"IPv6 outside", tok(withNet("2001:db8::/32")), acct(nil), from(img("nginx"), "2001:db9::1"), AddressNotAllowed},
		{"IPv4-mapped IPv6 client", tok(withNet("10.1.0.0/16")), acct(nil), from(img("nginx"), "::ffff:10.1.0.9"), OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.tok, tt.acct, now, tt.res); got != tt.want {
				t.Fatalf("Decide = %q, want %q", got, tt.want)
			}
		})
	}
}

// BenchmarkDecideWithPolicy: a token restricted to 50 image patterns and
// 20 networks, on an account entitled to 50 patterns, judged for the last
// pattern from an address in the last network — the worst case of a
// cached bearer request's decision.
func BenchmarkDecideWithPolicy(b *testing.B) {
	var pats []string
	for i := range 50 {
		pats = append(pats, fmt.Sprintf("team-%02d/**", i))
	}
	var cidrs []string
	for i := range 20 {
		cidrs = append(cidrs, fmt.Sprintf("10.%d.0.0/16", i))
	}
	nets, err := tollgate.ParseNetworks("networks", cidrs)
	if err != nil {
		b.Fatal(err)
	}
	acct := &tollgate.Account{ID: "acc_1", Status: tollgate.AccountActive, Subscription: tollgate.Subscription{Images: pats}}
	tok := &tollgate.Token{ID: "tok_1", AccountID: "acc_1", Scope: tollgate.ScopeImages, Policy: tollgate.TokenPolicy{Images: pats, Networks: nets}}
	res := Resource{Kind: Image, Name: "team-49/app/api", Client: netip.MustParseAddr("10.19.3.4")}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if r := Decide(tok, acct, now, res); r != OK {
			b.Fatal(r)
		}
	}
}
