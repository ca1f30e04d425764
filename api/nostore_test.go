package api_test

import (
	"regexp"
	"strings"
	"testing"
)

// TestAnswersWithSecretsCannotBeCached: an answer that carries a token
// secret, an account key or a set-password link must never be kept by a
// browser, a CLI's HTTP cache or a proxy in between.
func TestAnswersWithSecretsCannotBeCached(t *testing.T) {
	e := newEnv(t)
	created := e.do("POST", "/api/v1/accounts", adminKey, map[string]any{"name": "acme"})
	key := e.do("POST", "/api/v1/accounts/acme/keys", adminKey, nil)
	tok := e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, map[string]any{"name": "ci"})
	var id string
	if i := strings.Index(string(tok.body), `"id":"`); i >= 0 {
		id = string(tok.body[i+6 : i+6+strings.IndexByte(string(tok.body[i+6:]), '"')])
	}
	for name, r := range map[string]response{
		"account create (default token)": created,
		"account key create":             key,
		"token create":                   tok,
		"token reveal":                   e.do("GET", "/api/v1/tokens/"+id+"?reveal=true", adminKey, nil),
		"user create (set-password link)": e.do("POST", "/api/v1/accounts/acme/users", adminKey,
			map[string]any{"email": "ann@acme.example", "role": "admin"}),
		"user password link": e.do("POST", "/api/v1/users/password-link", adminKey, map[string]any{"email": "ann@acme.example"}),
	} {
		if r.status/100 != 2 {
			t.Fatalf("%s: status %d %s", name, r.status, r.body)
		}
		if !regexp.MustCompile(`tg[kp]?_[0-9A-Za-z]{20}`).Match(r.body) {
			t.Fatalf("%s: the answer holds no secret: %s", name, r.body)
		}
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", name, got)
		}
	}
	if got := e.do("GET", "/api/v1/nowhere", adminKey, nil).header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("an error answer: Cache-Control %q", got)
	}
}
