package oidc_test

import (
	"testing"

	"github.com/tollgate/tollgate/oidc"
)

// BenchmarkExchange: one RFC 8693 exchange (peek, policies by audience,
// signature and claims verified with cached keys, the credential written
// and audited in SQLite).
func BenchmarkExchange(b *testing.B) {
	f := newFixture(b, oidc.Options{})
	raw := f.issuer.Sign(f.claims())
	if _, _, err := f.ex.Exchange(b.Context(), raw, ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.ex.Exchange(b.Context(), raw, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify: the signature and claims check alone (RS256, 2048-bit
// key, keys cached).
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b, oidc.Options{})
	raw := f.issuer.Sign(f.claims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.ver.Verify(b.Context(), raw, f.issuer.URL, "", "tollgate:acme"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCredentialReused: an OIDC token presented as the password
// again (docker keeps it for every pull): the credential is reused.
func BenchmarkCredentialReused(b *testing.B) {
	f := newFixture(b, oidc.Options{})
	raw := f.issuer.Sign(f.claims())
	if _, err := f.ex.Credential(b.Context(), raw, "", false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.ex.Credential(b.Context(), raw, "", false); err != nil {
			b.Fatal(err)
		}
	}
}
