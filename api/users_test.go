package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

func TestUsersOperatorCreatesUserWithLink(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, _ := e.account("acme")

	out, err := e.op.CreateUser(ctx, "acme", api.CreateUserRequest{Email: "Ann@Acme.Example", Role: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if out.User.Email != "ann@acme.example" || out.User.Role != "admin" || out.User.Account != "acme" || out.User.PasswordSet {
		t.Fatalf("user = %+v", out.User)
	}
	if !strings.HasPrefix(out.SetPasswordURL, "https://registry.example.com:8443/console/set-password?t=tgp_") {
		t.Fatalf("set_password_url = %q", out.SetPasswordURL)
	}
	// The link is a secret: never in the logs.
	link := out.SetPasswordURL[strings.Index(out.SetPasswordURL, "tgp_"):]
	if strings.Contains(e.logs.String(), link) {
		t.Fatal("set-password link in the logs")
	}

	_, err = e.op.CreateUser(ctx, "acme", api.CreateUserRequest{Email: "ann@acme.example", Role: "viewer"})
	wantAPIError(t, err, tollgate.ECONFLICT, "email")
	_, err = e.op.CreateUser(ctx, "acme", api.CreateUserRequest{Email: "bob@acme.example", Role: "root"})
	wantAPIError(t, err, tollgate.EINVALID, "role")
	_, err = e.op.CreateUser(ctx, "acme", api.CreateUserRequest{Email: "bob", Role: "viewer"})
	wantAPIError(t, err, tollgate.EINVALID, "email")
	_, err = e.op.CreateUser(ctx, "ghost", api.CreateUserRequest{Email: "bob@acme.example", Role: "viewer"})
	wantAPIError(t, err, tollgate.ENOTFOUND, "")

	// Operator only: an account key is refused, even for its own account.
	_, err = acme.CreateUser(ctx, "acme", api.CreateUserRequest{Email: "eve@acme.example", Role: "admin"})
	wantAPIError(t, err, tollgate.EFORBIDDEN, "")
	_, err = acme.ListUsers(ctx, "acme")
	wantAPIError(t, err, tollgate.EFORBIDDEN, "")

	users, err := e.op.ListUsers(ctx, "acme")
	if err != nil || len(users) != 1 || users[0].Email != "ann@acme.example" {
		t.Fatalf("ListUsers = %+v, %v", users, err)
	}
	again, err := e.op.PasswordLink(ctx, "ann@acme.example")
	if err != nil || again.SetPasswordURL == out.SetPasswordURL {
		t.Fatalf("PasswordLink = %+v, %v", again, err)
	}
	_, err = e.op.PasswordLink(ctx, "nobody@acme.example")
	wantAPIError(t, err, tollgate.ENOTFOUND, "")

	page, err := e.op.ListAudit(ctx, "acme", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if page.Events[0].Action != tollgate.ActionUserLinkIssued || page.Events[1].Action != tollgate.ActionUserCreated ||
		page.Events[1].Actor != "operator" {
		t.Fatalf("audit = %+v", page.Events[:2])
	}
}

func TestUsersUnknownKeyIsStrict(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/accounts/acme/users", strings.NewReader(`{"email":"a@b.example","role":"admin","password":"x"}`))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown field: status %d, want 400", resp.StatusCode)
	}
}

func wantAPIError(t *testing.T, err error, code, field string) {
	t.Helper()
	if got := tollgate.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
	if got := tollgate.ErrorField(err); got != field {
		t.Fatalf("error field = %q (%v), want %q", got, err, field)
	}
}
