package oidc_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/oidc"
)

// FuzzPeek: whatever a client sends as an OIDC token, Peek returns an
// error or an issuer and audience, never panics, and never accepts an
// unsigned or HMAC token.
func FuzzPeek(f *testing.F) {
	for _, s := range []string{
		"", "eyJ", "a.b.c", "eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4IiwiYXVkIjoieSJ9.c2ln",
		"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4IiwiYXVkIjpbInkiXX0.c2ln",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := oidc.Peek(raw)
		if err != nil {
			return
		}
		if u.Issuer == "" || len(u.Audience) == 0 {
			t.Fatalf("Peek(%q) = %+v without error", raw, u)
		}
		if strings.Contains(raw, "eyJhbGciOiJub25lIn0") || strings.Contains(raw, "eyJhbGciOiJIUzI1NiJ9") {
			t.Fatalf("Peek accepted alg none or HS256: %q", raw)
		}
	})
}

// FuzzClaimRule: rules typed by customers parse or name the field, and
// matching terminates on any input.
func FuzzClaimRule(f *testing.F) {
	for _, s := range [][2]string{{"ref~refs/heads/*", "refs/heads/main"}, {"sub=a", "a"}, {"x~*a*b*c*", "aaabbbccc"}, {"~", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, rule, value string) {
		r, err := tollgate.ParseClaimRule("claims[0]", rule)
		if err != nil {
			if tollgate.ErrorField(err) != "claims[0]" {
				t.Fatalf("error %v does not name the field", err)
			}
			return
		}
		if r.Matches(value) && !r.Glob && value != r.Value {
			t.Fatalf("exact rule %q matched %q", rule, value)
		}
	})
}
