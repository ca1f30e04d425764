package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// TestExpiryPastYear9999IsRefused: an expiry past 9999-12-31T23:59:59Z
// was stored; every later answer holding the token failed to encode (a
// 500 on listing the account's tokens). The bound holds whatever UTC
// offset the time is written with.
func TestExpiryPastYear9999IsRefused(t *testing.T) {
	e := newEnv(t)
	acme, def := e.account("acme")
	const msg = "expires: must be on or before 9999-12-31 UTC"
	for _, v := range []string{"9999-12-31T23:00:00-05:00", "10000-01-01", "9999-12-31T23:59:59.5Z"} {
		for what, r := range map[string]response{
			"create": e.do("POST", "/api/v1/accounts/acme/tokens", acme.Key, map[string]any{"name": "x", "expires_at": v}),
			"edit":   e.do("PATCH", "/api/v1/tokens/"+def.ID, acme.Key, map[string]any{"expires_at": v}),
			"extend": e.do("POST", "/api/v1/tokens/"+def.ID+"/extend", acme.Key, map[string]any{"expires_at": v}),
		} {
			if v == "10000-01-01" {
				// Not a date at all to the parser: refused, as garbage.
				wantError(t, r, http.StatusBadRequest, tollgate.EINVALID, "expires")
				continue
			}
			if d := wantError(t, r, http.StatusBadRequest, tollgate.EINVALID, "expires"); d.Message != msg {
				t.Errorf("%s %s: message %q", what, v, d.Message)
			}
		}
	}
	for _, v := range []string{"9999-12-31", "9999-12-31T23:59:59Z", "9999-12-31T18:59:59-05:00"} {
		tok, err := acme.CreateToken(context.Background(), "acme", api.CreateTokenRequest{Name: "last " + v, ExpiresAt: v})
		if err != nil || !tok.ExpiresAt.Equal(tollgate.MaxExpiry) {
			t.Errorf("%s: %v, %v", v, tok, err)
		}
	}
}

// TestStoredRowOutOfJSONRangeCannotBreakTheAPI: a row stored before the
// bound (or written by hand) holds a time JSON cannot carry; reading it
// answered 500 for the whole list.
func TestStoredRowOutOfJSONRangeCannotBreakTheAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, def := e.account("acme")
	tok, _, err := e.svc.Token(ctx, def.ID)
	if err != nil {
		t.Fatal(err)
	}
	far := time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)
	tok.ExpiresAt, tok.UpdatedAt = &far, far
	if err := e.svc.Store.Update(ctx, func(tx tollgate.Tx) error { return tx.UpdateToken(ctx, tok) }); err != nil {
		t.Fatal(err)
	}
	got, err := acme.GetToken(ctx, def.ID, true)
	if err != nil || !got.ExpiresAt.Equal(tollgate.MaxExpiry) || got.Secret != def.Secret {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if l, err := acme.ListTokens(ctx, "acme", ""); err != nil || len(l.Tokens) != 1 {
		t.Fatalf("list: %v, %v", l, err)
	}
	if _, err := acme.EditToken(ctx, def.ID, api.EditTokenRequest{Name: ptr("renamed")}); err != nil {
		t.Fatalf("edit: %v", err)
	}
}

// auditFailingStore fails every audit write.
type auditFailingStore struct{ tollgate.Store }

func (s auditFailingStore) Update(ctx context.Context, fn func(tollgate.Tx) error) error {
	return s.Store.Update(ctx, func(tx tollgate.Tx) error { return fn(auditFailingTx{tx}) })
}

type auditFailingTx struct{ tollgate.Tx }

func (auditFailingTx) InsertAudit(context.Context, *tollgate.AuditEvent) error {
	return errors.New("audit table on fire")
}

// TestWriteAnswering500CommitsNothing: a token write whose audit event
// cannot be written answers 500 and leaves no token behind, nor a change.
func TestWriteAnswering500CommitsNothing(t *testing.T) {
	var fail atomic.Bool
	e := newEnv(t, func(s tollgate.Store) tollgate.Store {
		return &switchStore{Store: s, bad: auditFailingStore{s}, on: &fail}
	})
	ctx := context.Background()
	acme, def := e.account("acme")
	fail.Store(true)
	for what, r := range map[string]response{
		"create token":   e.do("POST", "/api/v1/accounts/acme/tokens", acme.Key, map[string]any{"name": "ci"}),
		"create account": e.do("POST", "/api/v1/accounts", adminKey, map[string]any{"name": "globex"}),
		"edit":           e.do("PATCH", "/api/v1/tokens/"+def.ID, acme.Key, map[string]any{"name": "renamed"}),
		"revoke":         e.do("POST", "/api/v1/tokens/"+def.ID+"/revoke", acme.Key, nil),
	} {
		wantError(t, r, http.StatusInternalServerError, tollgate.EINTERNAL, "")
		if strings.Contains(string(r.body), "tg_") {
			t.Errorf("%s: a 500 carried a secret: %s", what, r.body)
		}
	}
	fail.Store(false)
	l, err := acme.ListTokens(ctx, "acme", "")
	if err != nil || len(l.Tokens) != 1 || l.Tokens[0].Name != "default" || l.Tokens[0].Status != "active" {
		t.Fatalf("after failed writes: %+v, %v", l, err)
	}
	if _, err := e.op.GetAccount(ctx, "globex"); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("the account of a failed sign-up exists: %v", err)
	}
}

// TestWriteAnswerIsMadeInsideTheTransaction: the answer of a token write
// read the account again after the commit; a store failing then answered
// an error (and lost a new token's only copy of its secret) over a
// committed write. Now nothing is read after the commit.
func TestWriteAnswerIsMadeInsideTheTransaction(t *testing.T) {
	var fail atomic.Bool
	e := newEnv(t, func(s tollgate.Store) tollgate.Store {
		return &switchStore{Store: s, bad: failingStore{Store: s, err: errors.New("reads are down")}, on: &fail}
	})
	e.account("acme")
	fail.Store(true) // every View fails from now on; Update works
	r := e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, map[string]any{"name": "ci"})
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"secret":"tg_`) {
		t.Fatalf("create token with reads down: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/v1/accounts", adminKey, map[string]any{"name": "globex"})
	if r.status != http.StatusCreated {
		t.Fatalf("create account with reads down: %d %s", r.status, r.body)
	}
}

// switchStore is bad while on is set, the store otherwise.
type switchStore struct {
	tollgate.Store
	bad tollgate.Store
	on  *atomic.Bool
}

func (s *switchStore) Update(ctx context.Context, fn func(tollgate.Tx) error) error {
	if s.on.Load() {
		return s.bad.Update(ctx, fn)
	}
	return s.Store.Update(ctx, fn)
}

func (s *switchStore) View(ctx context.Context, fn func(tollgate.Tx) error) error {
	if s.on.Load() {
		return s.bad.View(ctx, fn)
	}
	return s.Store.View(ctx, fn)
}
