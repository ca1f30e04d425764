package api_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/api"
)

// secretShape matches a registry token or an account key.
var secretShape = regexp.MustCompile(`tgk?_[0-9A-Za-z]{36}`)

// TestSecretsNotLeakedIntoLogs runs a full lifecycle, failures included,
// with the server logging everything it logs at debug level, and fails if
// a token secret, an account key or the admin key shows up in the logs.
func TestSecretsNotLeakedIntoLogs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var secrets []string

	_, def, err := e.op.CreateAccount(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, def.Secret)
	key, err := e.op.CreateAccountKey(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, key)
	acme := e.client(key)

	if _, err := acme.RequestPackages(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.op.GrantPackages(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.op.SetSubscription(ctx, "acme", []string{"**"}, []string{"os"}); err != nil {
		t.Fatal(err)
	}
	tok, err := acme.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "ci", Scope: []string{"images", "packages"}, ExpiresAt: "2099-01-01"})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, tok.Secret)
	if got, err := acme.GetToken(ctx, tok.ID, true); err != nil || got.Secret != tok.Secret {
		t.Fatalf("reveal: %v", err)
	}
	if _, err := e.op.GetToken(ctx, def.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.EditToken(ctx, tok.ID, api.EditTokenRequest{Name: ptr("ci-2"), ExpiresAt: ptr("now")}); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.ExtendToken(ctx, tok.ID, "never"); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.ListTokens(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.ListAudit(ctx, "acme", 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.op.SuspendAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.op.ResumeAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	// Failures: secrets sent where they do not belong.
	e.do("GET", "/api/v1/info", "tgk_"+tok.Secret, nil)                       // a registry token as a key
	e.do("GET", "/api/v1/info", tok.Secret, nil)                              // a registry token as a key
	e.do("GET", "/api/v1/info", adminKey+"x", nil)                            // a near miss
	e.do("POST", "/api/v1/accounts/acme/tokens", key, `{"`+tok.Secret+`":1}`) // a secret as an unknown field
	e.do("POST", "/api/v1/accounts/acme/tokens", key, `{"name":"`+tok.Secret+`","expires_at":"`+key+`"}`)
	e.do("GET", "/api/v1/tokens/"+tok.ID+"?reveal=true", key, nil) // revoked: conflict
	e.do("GET", "/api/v1/nowhere?key="+adminKey, adminKey, nil)
	e.do("GET", "/api/v1/tokens/"+def.Secret, key, nil) // a secret where its id belongs
	e.do("PATCH", "/api/v1/tokens/"+def.Secret, adminKey, `{"name":"x"}`)
	e.do("GET", "/api/v1/accounts/"+key+"/tokens", adminKey, nil)

	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"actor":"account:acme"`) {
		t.Fatalf("the test saw no request logs:\n%s", logs)
	}
	secrets = append(secrets, adminKey)
	for _, s := range secrets {
		if s == "" {
			t.Fatal("a secret is empty")
		}
		if strings.Contains(logs, s) {
			t.Errorf("secret %s... appears in the logs", s[:6])
		}
		// The random part alone must not appear either.
		if len(s) > 20 && strings.Contains(logs, s[len(s)-20:]) {
			t.Errorf("the tail of secret %s... appears in the logs", s[:6])
		}
	}
	if m := secretShape.FindString(logs); m != "" {
		t.Errorf("something shaped like a secret is logged: %s...", m[:6])
	}
}

// TestAPIRequestIsLoggedOnce: the API wrote its own request line next to
// the access log's, so every API request was logged twice (and counted
// twice by whoever reads the logs). One line, with the actor.
func TestAPIRequestIsLoggedOnce(t *testing.T) {
	e := newEnv(t)
	acme, _ := e.account("acme")
	before := strings.Count(e.logs.String(), "\n")
	if _, err := acme.ListTokens(context.Background(), "acme", ""); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(e.logs.String()), "\n")[before:]
	if len(lines) != 1 {
		t.Fatalf("one request logged %d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`"msg":"request"`, `"path":"/api/v1/accounts/acme/tokens"`, `"status":200`, `"actor":"account:acme"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the line lacks %s: %s", want, lines[0])
		}
	}
}
