package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

func TestRotateAnswersNewSecretOnceAndPreviousWindow(t *testing.T) {
	e := newEnv(t)
	cl, tok := e.account("acme")
	ctx := context.Background()
	got, err := cl.RotateToken(ctx, tok.ID, "7d")
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret == "" || got.Secret == tok.Secret || got.ID != tok.ID {
		t.Fatalf("rotate answer: id %s, new secret shown: %v", got.ID, got.Secret != "")
	}
	if p := got.Previous; p == nil || !p.Live || !p.ValidUntil.Equal(e.clock.Now().UTC().Add(7*24*time.Hour)) {
		t.Fatalf("previous = %+v", got.Previous)
	}
	shown, err := cl.GetToken(ctx, tok.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if shown.Secret != "" || shown.Previous == nil {
		t.Fatalf("token show after rotate: secret shown %v, previous %+v", shown.Secret != "", shown.Previous)
	}
	if strings.Contains(e.logs.String(), got.Secret) || strings.Contains(e.logs.String(), tok.Secret) {
		t.Fatal("a secret is in the logs")
	}
}

func TestRotateGraceOverThirtyDaysRefused(t *testing.T) {
	e := newEnv(t)
	cl, tok := e.account("acme")
	_, err := cl.RotateToken(context.Background(), tok.ID, "31d")
	wantCode(t, err, tollgate.EINVALID, "grace")
}

func TestRotateAnotherAccountsTokenIsNotFound(t *testing.T) {
	e := newEnv(t)
	_, tok := e.account("acme")
	other, _ := e.account("evil")
	_, err := other.RotateToken(context.Background(), tok.ID, "now")
	wantCode(t, err, tollgate.ENOTFOUND, "")
}

func TestListExpiringShowsOnlyTokensExpiringWithin(t *testing.T) {
	e := newEnv(t)
	cl, _ := e.account("acme")
	ctx := context.Background()
	soon := e.clock.Now().Add(10 * 24 * time.Hour).UTC().Format(time.RFC3339)
	later := e.clock.Now().Add(90 * 24 * time.Hour).UTC().Format(time.RFC3339)
	for name, exp := range map[string]string{"soon": soon, "later": later} {
		if _, err := cl.CreateToken(ctx, "acme", apiCreate(name, exp)); err != nil {
			t.Fatal(err)
		}
	}
	tl, err := cl.ListExpiringTokens(ctx, "acme", "30d")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Tokens) != 1 || tl.Tokens[0].Name != "soon" {
		t.Fatalf("expiring within 30d: %+v", tl.Tokens)
	}
}

func apiCreate(name, expires string) api.CreateTokenRequest {
	return api.CreateTokenRequest{Name: name, ExpiresAt: expires}
}
