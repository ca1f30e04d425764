package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/store/storetest"
)

func ptr[T any](v T) *T { return &v }

func TestInfo(t *testing.T) {
	e := newEnv(t)
	info, err := e.op.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := api.Info{PublicURL: "https://registry.example.com:8443", Service: "registry.example.com", RegistryHost: "registry.example.com:8443",
		PackageRepositories: []api.PackageRepository{}}
	// The commands are the one generator's, for a token with every scope.
	for _, c := range tollgate.SetupCommands(want.PublicURL, "<TOKEN>", tollgate.ScopeImages|tollgate.ScopePackages, nil) {
		want.SetupCommands = append(want.SetupCommands, api.SetupCommand{Title: c.Title, Text: c.Text})
	}
	if len(want.SetupCommands) == 0 {
		t.Fatal("no set-up commands to compare with")
	}
	if !reflect.DeepEqual(*info, want) {
		t.Fatalf("info = %+v, want %+v", *info, want)
	}
	acme, _ := e.account("acme")
	if _, err := acme.Info(context.Background()); err != nil {
		t.Fatalf("info with an account key: %v", err)
	}
	_, err = e.client("").Info(context.Background())
	wantCode(t, err, tollgate.EUNAUTHORIZED, "")
}

func TestAccounts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	acct, tok, err := e.op.CreateAccount(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if acct.Name != "acme" || acct.Status != "active" || acct.PackageAccess != "none" || !strings.HasPrefix(acct.ID, "acc_") {
		t.Fatalf("account = %+v", acct)
	}
	if acct.Subscription.Images == nil || acct.Subscription.Packages == nil {
		t.Fatalf("subscription lists must be empty arrays, not null: %+v", acct.Subscription)
	}
	if tok.Name != tollgate.DefaultTokenName || tok.Account != "acme" || !slices.Equal(tok.Scope, []string{"images"}) ||
		tok.ExpiresAt != nil || tok.Status != "active" || !strings.HasPrefix(tok.Secret, tollgate.TokenPrefix) {
		t.Fatalf("default token = %+v", tok)
	}
	if _, _, err := storetest.Authenticate(ctx, e.svc, tok.Secret); err != nil {
		t.Fatalf("the default token's secret does not authenticate: %v", err)
	}

	_, _, err = e.op.CreateAccount(ctx, "acme")
	wantCode(t, err, tollgate.ECONFLICT, "name")
	_, _, err = e.op.CreateAccount(ctx, strings.Repeat("a", 64))
	wantCode(t, err, tollgate.EINVALID, "name")
	if _, _, err := e.op.CreateAccount(ctx, "beta"); err != nil {
		t.Fatal(err)
	}

	list, err := e.op.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "acme" || list[1].Name != "beta" {
		t.Fatalf("accounts = %+v", list)
	}

	got, err := e.op.GetAccount(ctx, "acme")
	if err != nil || got.ID != acct.ID {
		t.Fatalf("get = %+v, %v", got, err)
	}
	_, err = e.op.GetAccount(ctx, "nobody")
	wantCode(t, err, tollgate.ENOTFOUND, "")

	if a, err := e.op.SuspendAccount(ctx, "acme"); err != nil || a.Status != "suspended" {
		t.Fatalf("suspend = %+v, %v", a, err)
	}
	toks, err := e.op.ListTokens(ctx, "acme", "suspended")
	if err != nil || len(toks.Tokens) != 1 {
		t.Fatalf("suspended tokens = %+v, %v", toks, err)
	}
	if a, err := e.op.ResumeAccount(ctx, "acme"); err != nil || a.Status != "active" {
		t.Fatalf("resume = %+v, %v", a, err)
	}
	if a, err := e.op.RequestPackages(ctx, "acme"); err != nil || a.PackageAccess != "requested" {
		t.Fatalf("request = %+v, %v", a, err)
	}
	if a, err := e.op.DenyPackages(ctx, "acme"); err != nil || a.PackageAccess != "denied" {
		t.Fatalf("deny = %+v, %v", a, err)
	}
	if a, err := e.op.GrantPackages(ctx, "acme"); err != nil || a.PackageAccess != "granted" {
		t.Fatalf("grant = %+v, %v", a, err)
	}
	// Granting gives the default token the packages scope.
	if def, err := e.op.GetToken(ctx, tok.ID, false); err != nil || !slices.Equal(def.Scope, []string{"images", "packages"}) {
		t.Fatalf("default token after grant = %+v, %v", def, err)
	}
	_, err = e.op.RequestPackages(ctx, "acme")
	wantCode(t, err, tollgate.ECONFLICT, "")

	a, err := e.op.SetSubscription(ctx, "acme", []string{"team-a/**", "nginx"}, []string{"os"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Subscription.Images, []string{"team-a/**", "nginx"}) || !slices.Equal(a.Subscription.Packages, []string{"os"}) {
		t.Fatalf("subscription = %+v", a.Subscription)
	}
	_, err = e.op.SetSubscription(ctx, "acme", []string{"ok", "Bad Pattern"}, nil)
	wantCode(t, err, tollgate.EINVALID, "images[1]")
	if a, err := e.op.SetSubscription(ctx, "acme", nil, nil); err != nil || len(a.Subscription.Images) != 0 || a.Subscription.Images == nil {
		t.Fatalf("cleared subscription = %+v, %v", a, err)
	}

	key, err := e.op.CreateAccountKey(ctx, "acme")
	if err != nil || !strings.HasPrefix(key, tollgate.AccountKeyPrefix) {
		t.Fatalf("key = %q, %v", key, err)
	}
	if a, err := e.client(key).GetAccount(ctx, "acme"); err != nil || a.Name != "acme" {
		t.Fatalf("get with the account key = %+v, %v", a, err)
	}
	_, err = e.op.CreateAccountKey(ctx, "nobody")
	wantCode(t, err, tollgate.ENOTFOUND, "")
}

func TestAccountJSONShape(t *testing.T) {
	e := newEnv(t)
	e.account("acme")
	r := e.do("GET", "/api/v1/accounts/acme", adminKey, nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"created_at", "id", "name", "package_access", "policy", "status", "subscription", "updated_at"}
	if got := keysOf(m); !slices.Equal(got, want) {
		t.Fatalf("account keys = %v, want %v", got, want)
	}
	sub := m["subscription"].(map[string]any)
	if got := keysOf(sub); !slices.Equal(got, []string{"images", "packages"}) {
		t.Fatalf("subscription keys = %v", got)
	}
	for k, v := range sub {
		if _, ok := v.([]any); !ok {
			t.Fatalf("subscription.%s = %#v, want an array", k, v)
		}
	}
	if ts := m["created_at"].(string); !strings.HasSuffix(ts, "Z") {
		t.Fatalf("created_at %q is not UTC", ts)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("Content-Type = %q", r.header.Get("Content-Type"))
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, def := e.account("acme")

	// Defaults: scope images, no expiry.
	tok, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "ci", Description: "for CI"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tok.Scope, []string{"images"}) || tok.ExpiresAt != nil || tok.Status != "active" ||
		tok.Account != "acme" || tok.Description != "for CI" || !strings.HasPrefix(tok.Secret, tollgate.TokenPrefix) ||
		tok.RevokedAt != nil || tok.LastUsedAt != nil {
		t.Fatalf("token = %+v", tok)
	}

	// A date means the end of that day, UTC.
	day := e.clock.Now().AddDate(0, 1, 0).Format("2006-01-02")
	dated, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "dated", ExpiresAt: day})
	if err != nil {
		t.Fatal(err)
	}
	if got := dated.ExpiresAt.Format(time.RFC3339); got != day+"T23:59:59Z" {
		t.Fatalf("expires_at = %s, want the end of %s", got, day)
	}
	at := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
	timed, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "timed", ExpiresAt: at})
	if err != nil || timed.ExpiresAt.Format(time.RFC3339) != at {
		t.Fatalf("timed = %+v, %v", timed, err)
	}
	if never, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "never", ExpiresAt: "never"}); err != nil || never.ExpiresAt != nil {
		t.Fatalf("never = %+v, %v", never, err)
	}
	// JSON null means never too.
	r := e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, `{"name":"null","expires_at":null,"scope":null}`)
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"expires_at":null`) {
		t.Fatalf("null expiry: %d %s", r.status, r.body)
	}

	// Get: no secret unless revealed.
	got, err := e.op.GetToken(ctx, tok.ID, false)
	if err != nil || got.Secret != "" || got.Name != "ci" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	got, err = e.op.GetToken(ctx, tok.ID, true)
	if err != nil || got.Secret != tok.Secret {
		t.Fatalf("reveal = %+v, %v", got, err)
	}
	_, err = e.op.GetToken(ctx, "tok_nonexistent0000", false)
	wantCode(t, err, tollgate.ENOTFOUND, "")

	// Edit every field; absent fields stay.
	edited, err := e.op.EditToken(ctx, tok.ID, api.EditTokenRequest{Name: ptr("ci-2")})
	if err != nil || edited.Name != "ci-2" || edited.Description != "for CI" {
		t.Fatalf("edit name = %+v, %v", edited, err)
	}
	edited, err = e.op.EditToken(ctx, tok.ID, api.EditTokenRequest{Description: ptr(""), ExpiresAt: ptr(day)})
	if err != nil || edited.Name != "ci-2" || edited.Description != "" || edited.ExpiresAt == nil {
		t.Fatalf("edit description and expiry = %+v, %v", edited, err)
	}
	_, err = e.op.EditToken(ctx, tok.ID, api.EditTokenRequest{Scope: []string{"packages"}})
	wantCode(t, err, tollgate.EINVALID, "scope")

	// Expire it now, then extend it: it is active again.
	edited, err = e.op.EditToken(ctx, tok.ID, api.EditTokenRequest{ExpiresAt: ptr("now")})
	if err != nil || edited.Status != "expired" {
		t.Fatalf("expire now = %+v, %v", edited, err)
	}
	e.clock.Add(time.Second)
	if l, err := e.op.ListTokens(ctx, "acme", "expired"); err != nil || len(l.Tokens) != 1 || l.Tokens[0].ID != tok.ID {
		t.Fatalf("expired tokens = %+v, %v", l, err)
	}
	_, err = e.op.ExtendToken(ctx, tok.ID, "now")
	wantCode(t, err, tollgate.EINVALID, "expires")
	_, err = e.op.ExtendToken(ctx, tok.ID, "2001-01-01")
	wantCode(t, err, tollgate.EINVALID, "expires")
	ext, err := e.op.ExtendToken(ctx, tok.ID, "never")
	if err != nil || ext.Status != "active" || ext.ExpiresAt != nil {
		t.Fatalf("extend = %+v, %v", ext, err)
	}
	// PATCH with expires_at null means never as well.
	r = e.do("PATCH", "/api/v1/tokens/"+timed.ID, adminKey, `{"expires_at":null}`)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"expires_at":null`) {
		t.Fatalf("patch null expiry: %d %s", r.status, r.body)
	}

	// Revoke, by POST and by DELETE; revoking twice is fine.
	rev, err := e.op.RevokeToken(ctx, tok.ID)
	if err != nil || rev.Status != "revoked" || rev.RevokedAt == nil {
		t.Fatalf("revoke = %+v, %v", rev, err)
	}
	if rev, err := e.op.RevokeToken(ctx, tok.ID); err != nil || rev.Status != "revoked" {
		t.Fatalf("revoke again = %+v, %v", rev, err)
	}
	r = e.do("DELETE", "/api/v1/tokens/"+dated.ID, adminKey, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"status":"revoked"`) {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}

	// Revocation is final.
	_, err = e.op.EditToken(ctx, tok.ID, api.EditTokenRequest{Name: ptr("back")})
	wantCode(t, err, tollgate.ECONFLICT, "")
	r = e.do("PATCH", "/api/v1/tokens/"+tok.ID, adminKey, `{"name":"back"}`)
	wantError(t, r, http.StatusConflict, tollgate.ECONFLICT, "")
	_, err = e.op.ExtendToken(ctx, tok.ID, "never")
	wantCode(t, err, tollgate.ECONFLICT, "")
	_, err = e.op.GetToken(ctx, tok.ID, true)
	wantCode(t, err, tollgate.ECONFLICT, "")

	// Lists: all, by status; active counts what is not revoked.
	all, err := e.op.ListTokens(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Tokens) != 6 || all.Active != 4 || all.Limit != tollgate.MaxActiveTokens {
		t.Fatalf("list = %d tokens, active %d, limit %d", len(all.Tokens), all.Active, all.Limit)
	}
	if all.Tokens[0].ID != def.ID {
		t.Fatalf("tokens are not oldest first: %+v", all.Tokens[0])
	}
	for _, tk := range all.Tokens {
		if tk.Secret != "" {
			t.Fatalf("a listed token carries its secret: %s", tk.ID)
		}
	}
	revoked, err := e.op.ListTokens(ctx, "acme", "revoked")
	if err != nil || len(revoked.Tokens) != 2 || revoked.Active != 4 {
		t.Fatalf("revoked = %+v, %v", revoked, err)
	}
	_, err = e.op.ListTokens(ctx, "acme", "bogus")
	wantCode(t, err, tollgate.EINVALID, "status")
	_, err = e.op.ListTokens(ctx, "nobody", "")
	wantCode(t, err, tollgate.ENOTFOUND, "")
}

func TestPackagesScopeNeedsGrant(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, _ := e.account("acme")
	_, err := acme.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "apt", Scope: []string{"packages"}})
	te := wantCode(t, err, tollgate.EINVALID, "scope")
	if !strings.HasPrefix(te.Error(), "scope: the packages scope needs package access") {
		t.Fatalf("message = %q", te.Error())
	}
	r := e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, `{"name":"apt","scope":["images","packages"]}`)
	wantError(t, r, http.StatusBadRequest, tollgate.EINVALID, "scope")

	if _, err := acme.RequestPackages(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.op.GrantPackages(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	tok, err := acme.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "apt", Scope: []string{"images", "packages"}})
	if err != nil || !slices.Equal(tok.Scope, []string{"images", "packages"}) {
		t.Fatalf("after grant = %+v, %v", tok, err)
	}
}

func TestTokenLimit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.account("acme") // holds its default token: one of the 100
	var last *api.Token
	for i := 2; i <= tollgate.MaxActiveTokens; i++ {
		tok, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: fmt.Sprintf("t%d", i)})
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		last = tok
	}
	_, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "one too many"})
	te := wantCode(t, err, tollgate.ELIMIT, "")
	if te.Error() != "account acme already holds 100 active tokens" {
		t.Fatalf("message = %q", te.Error())
	}
	r := e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, `{"name":"one too many"}`)
	wantError(t, r, http.StatusConflict, tollgate.ELIMIT, "")

	l, err := e.op.ListTokens(ctx, "acme", "")
	if err != nil || l.Active != 100 || len(l.Tokens) != 100 {
		t.Fatalf("list at the limit: active %d, %d tokens, %v", l.Active, len(l.Tokens), err)
	}
	// Revoking one frees a place.
	if _, err := e.op.RevokeToken(ctx, last.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "replacement"}); err != nil {
		t.Fatalf("after a revoke: %v", err)
	}
}

func TestTokenJSONKeys(t *testing.T) {
	e := newEnv(t)
	e.account("acme")
	base := []string{"account", "created_at", "description", "expires_at", "id", "last_used_at", "max_bytes", "max_pulls",
		"name", "paused_at", "restrictions", "revoked_at", "scope", "status", "updated_at", "valid_from"}
	withSecret := append(slices.Clone(base), "secret")
	slices.Sort(withSecret)

	check := func(name string, body []byte, want []string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %v: %s", name, err, body)
		}
		if got := keysOf(m); !slices.Equal(got, want) {
			t.Fatalf("%s: token keys = %v, want %v", name, got, want)
		}
		return m
	}

	r := e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, `{"name":"ci","expires_at":"2099-01-01"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	m := check("create", r.body, withSecret)
	id := m["id"].(string)
	if _, ok := m["scope"].([]any); !ok {
		t.Fatalf("scope = %#v, want an array", m["scope"])
	}
	if m["last_used_at"] != nil || m["revoked_at"] != nil {
		t.Fatalf("last_used_at and revoked_at must be null: %s", r.body)
	}
	if m["expires_at"] != "2099-01-01T23:59:59Z" {
		t.Fatalf("expires_at = %v", m["expires_at"])
	}

	r = e.do("GET", "/api/v1/tokens/"+id, adminKey, nil)
	check("get", r.body, base)
	r = e.do("GET", "/api/v1/tokens/"+id+"?reveal=true", adminKey, nil)
	check("reveal", r.body, withSecret)
	r = e.do("PATCH", "/api/v1/tokens/"+id, adminKey, `{"description":"x"}`)
	check("edit", r.body, base)
	r = e.do("POST", "/api/v1/tokens/"+id+"/extend", adminKey, `{"expires_at":"never"}`)
	check("extend", r.body, base)

	r = e.do("GET", "/api/v1/accounts/acme/tokens", adminKey, nil)
	var list struct {
		Tokens []json.RawMessage `json:"tokens"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Tokens) != 2 {
		t.Fatalf("list: %v: %s", err, r.body)
	}
	for _, raw := range list.Tokens {
		check("list", raw, base)
	}

	r = e.do("POST", "/api/v1/tokens/"+id+"/revoke", adminKey, nil)
	m = check("revoke", r.body, base)
	if m["revoked_at"] == nil {
		t.Fatal("revoked_at is null after revoke")
	}

	r = e.do("POST", "/api/v1/accounts", adminKey, `{"name":"beta"}`)
	var signup map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &signup); err != nil {
		t.Fatal(err)
	}
	check("sign-up", signup["token"], withSecret)
}

// TestTokenPolicyOverTheAPI: restrictions, networks, valid-from and
// pause travel through create, edit and the pause/resume endpoints, and
// bad input names its field.
func TestTokenPolicyOverTheAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.account("acme")
	tok, err := e.op.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "ci", RestrictImages: []string{"team-a/*"},
		Networks: []string{"10.0.0.1", "2001:db8::/32"}, ValidFrom: "2099-01-01"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tok.Restrictions.Images, []string{"team-a/*"}) || !slices.Equal(tok.Restrictions.Networks, []string{"10.0.0.1/32", "2001:db8::/32"}) ||
		tok.Restrictions.Packages == nil || tok.ValidFrom == nil || tok.ValidFrom.Format(time.RFC3339) != "2099-01-01T00:00:00Z" || tok.Status != "scheduled" {
		t.Fatalf("created = %+v", tok)
	}
	empty := []string{}
	none := ""
	edited, err := e.op.EditToken(ctx, tok.ID, api.EditTokenRequest{RestrictImages: &empty, Networks: &[]string{"192.0.2.0/24"}, ValidFrom: &none})
	if err != nil {
		t.Fatal(err)
	}
	if len(edited.Restrictions.Images) != 0 || !slices.Equal(edited.Restrictions.Networks, []string{"192.0.2.0/24"}) || edited.ValidFrom != nil || edited.Status != "active" {
		t.Fatalf("edited = %+v", edited)
	}
	paused, err := e.op.PauseToken(ctx, tok.ID)
	if err != nil || paused.Status != "paused" || paused.PausedAt == nil {
		t.Fatalf("paused = %+v, %v", paused, err)
	}
	if l, err := e.op.ListTokens(ctx, "acme", "paused"); err != nil || len(l.Tokens) != 1 {
		t.Fatalf("paused list = %+v, %v", l, err)
	}
	resumed, err := e.op.ResumeToken(ctx, tok.ID)
	if err != nil || resumed.Status != "active" || resumed.PausedAt != nil {
		t.Fatalf("resumed = %+v, %v", resumed, err)
	}
	for body, field := range map[string]string{
		`{"name":"x","networks":["10.0.0.0/99"]}`:  "networks[0]",
		`{"name":"x","restrict_images":["UP"]}`:    "restrict_images[0]",
		`{"name":"x","valid_from":"next tuesday"}`: "valid_from",
	} {
		r := e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, body)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s, want a 400 naming %s", body, r.status, r.body, field)
		}
	}
}

func TestAuditPagination(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, def := e.account("acme") // account.created, token.created, account.key_created
	for i := range 7 {
		if _, err := e.op.EditToken(ctx, def.ID, api.EditTokenRequest{Description: ptr(fmt.Sprint("v", i))}); err != nil {
			t.Fatal(err)
		}
	}
	// 10 events in all, newest first.
	var all []api.AuditEvent
	var before int64
	pages := 0
	for {
		p, err := acme.ListAudit(ctx, "acme", before, 3)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, p.Events...)
		if p.NextBefore == nil {
			break
		}
		if len(p.Events) != 3 || *p.NextBefore != p.Events[2].ID {
			t.Fatalf("page %d: %d events, next_before %d", pages, len(p.Events), *p.NextBefore)
		}
		before = *p.NextBefore
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if len(all) != 10 || pages != 4 {
		t.Fatalf("%d events over %d pages, want 10 over 4", len(all), pages)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatalf("events not newest first: %d after %d", all[i].ID, all[i-1].ID)
		}
	}
	newest := all[0]
	if newest.Action != tollgate.ActionTokenEdited || newest.Target != def.ID || newest.Actor != api.ActorOperator ||
		newest.Changes["description"] != (api.Change{From: "v5", To: "v6"}) {
		t.Fatalf("newest event = %+v", newest)
	}
	oldest := all[len(all)-1]
	if oldest.Action != tollgate.ActionAccountCreated || oldest.Changes["name"].To != "acme" {
		t.Fatalf("oldest event = %+v", oldest)
	}

	// An exact page still says there is none after it.
	p, err := e.op.ListAudit(ctx, "acme", 0, 10)
	if err != nil || len(p.Events) != 10 || p.NextBefore != nil {
		t.Fatalf("exact page: %d events, next %v, %v", len(p.Events), p.NextBefore, err)
	}
	// Default page size, and the raw shape: changes is always an object.
	r := e.do("GET", "/api/v1/accounts/acme/audit", adminKey, nil)
	var raw struct {
		Events     []map[string]any `json:"events"`
		NextBefore *int64           `json:"next_before"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw.Events) != 10 || raw.NextBefore != nil {
		t.Fatalf("default page: %v %s", err, r.body)
	}
	for _, ev := range raw.Events {
		if got := keysOf(ev); !slices.Equal(got, []string{"action", "actor", "changes", "id", "target", "time"}) {
			t.Fatalf("event keys = %v", got)
		}
		if _, ok := ev["changes"].(map[string]any); !ok {
			t.Fatalf("changes = %#v, want an object", ev["changes"])
		}
	}
	// The account's own actions are recorded as the account.
	if _, err := acme.EditToken(ctx, def.ID, api.EditTokenRequest{Name: ptr("mine")}); err != nil {
		t.Fatal(err)
	}
	p, err = acme.ListAudit(ctx, "acme", 0, 1)
	if err != nil || len(p.Events) != 1 || p.Events[0].Actor != "account:acme" || p.NextBefore == nil {
		t.Fatalf("own edit: %+v, %v", p, err)
	}

	for _, q := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=x", "limit"}, {"limit=501", "limit"}, {"before=-1", "before"}, {"before=x", "before"},
	} {
		r := e.do("GET", "/api/v1/accounts/acme/audit?"+q.query, adminKey, nil)
		wantError(t, r, http.StatusBadRequest, tollgate.EINVALID, q.field)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	e.account("acme")
	_, err := tollgate.ParseSecret(tollgate.AccountKeyPrefix, "tgk_x")
	if err == nil {
		t.Fatal("tgk_x parses")
	}
	wellFormedUnknown := tollgate.NewSecret(tollgate.AccountKeyPrefix).Reveal()

	for _, tc := range []struct{ name, header string }{
		{"no header", ""},
		{"empty bearer", "Bearer "},
		{"basic scheme", "Basic " + adminKey},
		{"wrong admin key", "Bearer " + adminKey + "x"},
		{"malformed account key", "Bearer tgk_x"},
		{"unknown account key", "Bearer " + wellFormedUnknown},
		{"registry token", "Bearer " + tollgate.NewSecret(tollgate.TokenPrefix).Reveal()},
	} {
		t.Run("401 "+tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/accounts/acme", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="tollgate-api"` {
				t.Fatalf("WWW-Authenticate = %q", got)
			}
		})
	}
	t.Run("401 envelope", func(t *testing.T) {
		r := e.do("GET", "/api/v1/info", "", nil)
		wantError(t, r, http.StatusUnauthorized, tollgate.EUNAUTHORIZED, "")
	})

	t.Run("admin key, any scheme case", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/accounts", nil)
		req.Header.Set("Authorization", "bearer "+adminKey)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d", resp.StatusCode)
		}
	})

	t.Run("empty AdminKey disables the operator", func(t *testing.T) {
		s := &api.Server{Service: e.svc}
		srv := newServer(t, s.Handler())
		for _, key := range []string{"", "x"} {
			req, _ := http.NewRequest("GET", srv+"/api/v1/accounts", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("key %q: status = %d", key, resp.StatusCode)
			}
		}
	})
}

func TestAccountKeySeesOnlyItsOwnAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, acmeDefault := e.account("acme")
	beta, betaDefault := e.account("beta")
	acmeKey := acme.Key

	// Its own account: everything an account may do.
	if a, err := acme.GetAccount(ctx, "acme"); err != nil || a.Name != "acme" {
		t.Fatalf("own account: %+v, %v", a, err)
	}
	if _, err := acme.ListTokens(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	tok, err := acme.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := acme.GetToken(ctx, acmeDefault.ID, true); err != nil || got.Secret != acmeDefault.Secret {
		t.Fatalf("reveal own default token: %+v, %v", got, err)
	}
	if _, err := acme.EditToken(ctx, tok.ID, api.EditTokenRequest{Description: ptr("d")}); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.ExtendToken(ctx, tok.ID, "2099-12-31"); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if a, err := acme.RequestPackages(ctx, "acme"); err != nil || a.PackageAccess != "requested" {
		t.Fatalf("request packages: %+v, %v", a, err)
	}
	if _, err := acme.ListAudit(ctx, "acme", 0, 0); err != nil {
		t.Fatal(err)
	}

	// Another account, or its tokens: exactly like nothing there.
	same := func(t *testing.T, method, other, missing string, body any) {
		t.Helper()
		r1 := e.do(method, other, acmeKey, body)
		r2 := e.do(method, missing, acmeKey, body)
		wantError(t, r1, http.StatusNotFound, tollgate.ENOTFOUND, "")
		wantError(t, r2, http.StatusNotFound, tollgate.ENOTFOUND, "")
		m1 := strings.ReplaceAll(string(r1.body), "beta", "NAME")
		m1 = strings.ReplaceAll(m1, betaDefault.ID, "ID")
		m2 := strings.ReplaceAll(string(r2.body), "zeta", "NAME")
		m2 = strings.ReplaceAll(m2, "tok_0000000000000000", "ID")
		if m1 != m2 {
			t.Fatalf("another's answer differs from a missing one's:\n%s\n%s", r1.body, r2.body)
		}
	}
	bt := "/api/v1/tokens/" + betaDefault.ID
	mt := "/api/v1/tokens/tok_0000000000000000"
	for _, c := range []struct {
		name, method, suffix string
		body                 any
	}{
		{"get account", "GET", "", nil},
		{"list tokens", "GET", "/tokens", nil},
		{"create token", "POST", "/tokens", `{"name":"x"}`},
		{"request packages", "POST", "/request-packages", nil},
		{"audit", "GET", "/audit", nil},
	} {
		t.Run("404 "+c.name, func(t *testing.T) {
			same(t, c.method, "/api/v1/accounts/beta"+c.suffix, "/api/v1/accounts/zeta"+c.suffix, c.body)
		})
	}
	for _, c := range []struct {
		name, method, suffix string
		body                 any
	}{
		{"get token", "GET", "", nil},
		{"reveal token", "GET", "?reveal=true", nil},
		{"edit token", "PATCH", "", `{"name":"stolen"}`},
		{"extend token", "POST", "/extend", `{"expires_at":"never"}`},
		{"revoke token", "POST", "/revoke", nil},
		{"delete token", "DELETE", "", nil},
	} {
		t.Run("404 "+c.name, func(t *testing.T) {
			same(t, c.method, bt+c.suffix, mt+c.suffix, c.body)
		})
	}
	// Nothing happened to beta's token.
	if got, err := beta.GetToken(ctx, betaDefault.ID, false); err != nil || got.Status != "active" || got.Name != "default" {
		t.Fatalf("beta's token after acme's attempts: %+v, %v", got, err)
	}

	// Operator-only endpoints: 403, for its own account as for any other.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/accounts", ""},
		{"POST", "/api/v1/accounts", `{"name":"gamma"}`},
		{"POST", "/api/v1/accounts/acme/suspend", ""},
		{"POST", "/api/v1/accounts/acme/resume", ""},
		{"POST", "/api/v1/accounts/acme/grant-packages", ""},
		{"POST", "/api/v1/accounts/acme/deny-packages", ""},
		{"PUT", "/api/v1/accounts/acme/subscription", `{"images":["**"]}`},
		{"POST", "/api/v1/accounts/acme/keys", ""},
		{"POST", "/api/v1/accounts/beta/suspend", ""},
		{"POST", "/api/v1/accounts/zeta/keys", ""},
	} {
		t.Run("403 "+c.method+" "+c.path, func(t *testing.T) {
			var body any
			if c.body != "" {
				body = c.body
			}
			wantError(t, e.do(c.method, c.path, acmeKey, body), http.StatusForbidden, tollgate.EFORBIDDEN, "")
		})
	}
	_, err = acme.GrantPackages(ctx, "acme")
	wantCode(t, err, tollgate.EFORBIDDEN, "")
	if a, err := e.op.GetAccount(ctx, "acme"); err != nil || a.PackageAccess != "requested" || a.Subscription.Images == nil || len(a.Subscription.Images) != 0 {
		t.Fatalf("acme after its attempts: %+v, %v", a, err)
	}

	// A replaced key stops working.
	if _, err := e.op.CreateAccountKey(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	_, err = acme.GetAccount(ctx, "acme")
	wantCode(t, err, tollgate.EUNAUTHORIZED, "")
}

func TestErrorEnvelopes(t *testing.T) {
	e := newEnv(t)
	e.account("acme")
	tok, err := e.op.CreateToken(context.Background(), "acme", api.CreateTokenRequest{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	tokPath := "/api/v1/tokens/" + tok.ID

	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"account name too long", "POST", "/api/v1/accounts", `{"name":"` + strings.Repeat("a", 64) + `"}`, 400, "invalid", "name"},
		{"account name bad chars", "POST", "/api/v1/accounts", `{"name":"Acme"}`, 400, "invalid", "name"},
		{"token name too long", "POST", "/api/v1/accounts/acme/tokens", `{"name":"` + strings.Repeat("n", 101) + `"}`, 400, "invalid", "name"},
		{"token name empty", "POST", "/api/v1/accounts/acme/tokens", `{"name":"  "}`, 400, "invalid", "name"},
		{"description too long", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","description":"` + strings.Repeat("d", 501) + `"}`, 400, "invalid", "description"},
		{"unknown scope", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","scope":["videos"]}`, 400, "invalid", "scope"},
		{"empty scope", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","scope":[]}`, 400, "invalid", "scope"},
		{"past expiry", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","expires_at":"2001-02-03"}`, 400, "invalid", "expires"},
		{"now expiry on create", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","expires_at":"now"}`, 400, "invalid", "expires"},
		{"garbage expiry", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","expires_at":"tomorrow"}`, 400, "invalid", "expires"},
		{"unknown field", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","colour":"red"}`, 400, "invalid", "colour"},
		{"unknown field on edit", "PATCH", tokPath, `{"nmae":"x"}`, 400, "invalid", "nmae"},
		{"wrong type", "POST", "/api/v1/accounts/acme/tokens", `{"name":42}`, 400, "invalid", "name"},
		{"wrong type scope", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","scope":"images"}`, 400, "invalid", "scope"},
		{"wrong type expiry", "POST", "/api/v1/accounts/acme/tokens", `{"name":"x","expires_at":20270101}`, 400, "invalid", "expires_at"},
		{"wrong type on edit", "PATCH", tokPath, `{"description":true}`, 400, "invalid", "description"},
		{"wrong type scope on edit", "PATCH", tokPath, `{"scope":[1]}`, 400, "invalid", "scope"},
		{"null name on edit", "PATCH", tokPath, `{"name":null}`, 400, "invalid", "name"},
		{"past expiry on edit", "PATCH", tokPath, `{"expires_at":"2001-01-01T00:00:00Z"}`, 400, "invalid", "expires"},
		{"wrong type subscription", "PUT", "/api/v1/accounts/acme/subscription", `{"images":"**"}`, 400, "invalid", "images"},
		{"bad pattern", "PUT", "/api/v1/accounts/acme/subscription", `{"packages":["ok","a//b"]}`, 400, "invalid", "packages[1]"},
		{"extend without expiry", "POST", tokPath + "/extend", `{}`, 400, "invalid", "expires"},
		{"extend now", "POST", tokPath + "/extend", `{"expires_at":"now"}`, 400, "invalid", "expires"},
		{"not JSON", "POST", "/api/v1/accounts", `{"name":`, 400, "invalid", ""},
		{"empty body", "POST", "/api/v1/accounts", ``, 400, "invalid", ""},
		{"array body", "POST", "/api/v1/accounts", `["acme"]`, 400, "invalid", ""},
		{"two objects", "POST", "/api/v1/accounts", `{"name":"a1"}{"name":"a2"}`, 400, "invalid", ""},
		{"bad status filter", "GET", "/api/v1/accounts/acme/tokens?status=gone", nil, 400, "invalid", "status"},
		{"bad reveal", "GET", tokPath + "?reveal=maybe", nil, 400, "invalid", "reveal"},
		{"missing account", "GET", "/api/v1/accounts/nobody", nil, 404, "not_found", ""},
		{"missing token", "GET", "/api/v1/tokens/tok_nothing", nil, 404, "not_found", ""},
		{"duplicate account", "POST", "/api/v1/accounts", `{"name":"acme"}`, 409, "conflict", "name"},
		{"unknown route", "GET", "/api/v1/nothing", nil, 404, "not_found", ""},
		{"unknown route outside the API", "GET", "/elsewhere", nil, 404, "not_found", ""},
		{"unknown account action", "POST", "/api/v1/accounts/acme/delete", nil, 404, "not_found", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := wantError(t, e.do(c.method, c.path, adminKey, c.body), c.status, c.code, c.field)
			if c.field != "" && !strings.HasPrefix(d.Message, c.field+": ") {
				t.Fatalf("message %q does not name the field %q", d.Message, c.field)
			}
		})
	}

	t.Run("type messages", func(t *testing.T) {
		for _, c := range []struct{ method, path, body, msg string }{
			{"POST", "/api/v1/accounts/acme/tokens", `{"name":42}`, "name: must be a string"},
			{"POST", "/api/v1/accounts/acme/tokens", `{"name":"x","scope":[1]}`, "scope: must be an array of strings"},
			{"POST", "/api/v1/accounts/acme/tokens", `{"name":"x","scope":"images"}`, "scope: must be an array of strings"},
			{"PATCH", tokPath, `{"scope":[1]}`, "scope: must be an array of strings"},
			{"PATCH", tokPath, `{"expires_at":7}`, "expires_at: must be a string"},
			{"PUT", "/api/v1/accounts/acme/subscription", `{"images":[{}]}`, "images: must be an array of strings"},
			{"POST", "/api/v1/accounts/acme/tokens", `{"name":"x","colour":1}`, "colour: unknown field"},
		} {
			d := e.do(c.method, c.path, adminKey, c.body).errorBody(t)
			if d.Message != c.msg {
				t.Errorf("%s: message %q, want %q", c.body, d.Message, c.msg)
			}
		}
	})

	t.Run("past expiry message", func(t *testing.T) {
		_, err := e.op.CreateToken(context.Background(), "acme", api.CreateTokenRequest{Name: "x", ExpiresAt: "2001-02-03"})
		te := wantCode(t, err, tollgate.EINVALID, "expires")
		if te.Error() != "expires: must be in the future" || te.Message != "must be in the future" {
			t.Fatalf("Error() = %q, Message = %q", te.Error(), te.Message)
		}
	})

	t.Run("oversized body", func(t *testing.T) {
		big := `{"name":"x","description":"` + strings.Repeat("d", api.MaxBodySize) + `"}`
		d := wantError(t, e.do("POST", "/api/v1/accounts/acme/tokens", adminKey, big), 400, "invalid", "")
		if !strings.Contains(d.Message, "64 KiB") {
			t.Fatalf("message %q does not name the limit", d.Message)
		}
	})

	t.Run("wrong content type", func(t *testing.T) {
		r := e.doType("POST", "/api/v1/accounts", adminKey, "application/x-www-form-urlencoded", "name=acme2")
		wantError(t, r, 400, "invalid", "")
		r = e.doType("POST", "/api/v1/accounts", adminKey, "", `{"name":"acme2"}`)
		wantError(t, r, 400, "invalid", "")
		r = e.doType("POST", "/api/v1/accounts", adminKey, "application/json; charset=utf-8", `{"name":"acme2"}`)
		if r.status != http.StatusCreated {
			t.Fatalf("JSON with a charset: %d %s", r.status, r.body)
		}
	})

	t.Run("wrong method", func(t *testing.T) {
		for _, c := range []struct{ method, path, allow string }{
			{"PUT", "/api/v1/accounts", "POST, GET, HEAD"},
			{"DELETE", "/api/v1/accounts/acme", "GET, HEAD"},
			{"GET", "/api/v1/accounts/acme/suspend", "POST"},
			{"POST", tokPath, "GET, HEAD, PATCH, DELETE"},
			{"GET", tokPath + "/revoke", "POST"},
		} {
			r := e.do(c.method, c.path, adminKey, nil)
			if r.status != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s: status %d: %s", c.method, c.path, r.status, r.body)
			}
			r.errorBody(t)
			if got := r.header.Get("Allow"); got != c.allow {
				t.Fatalf("%s %s: Allow = %q, want %q", c.method, c.path, got, c.allow)
			}
		}
	})

	t.Run("client restores fields", func(t *testing.T) {
		_, err := e.op.CreateToken(context.Background(), "acme", api.CreateTokenRequest{Name: strings.Repeat("n", 101)})
		te := wantCode(t, err, tollgate.EINVALID, "name")
		if te.Error() != "name: must be at most 100 characters" {
			t.Fatalf("Error() = %q", te.Error())
		}
	})
}

// failingStore fails every read with an error that is not a
// *tollgate.Error, or with an unavailable one.
type failingStore struct {
	tollgate.Store
	err error
}

func (f failingStore) View(ctx context.Context, fn func(tollgate.Tx) error) error { return f.err }

func TestInternalErrorsAreLoggedNotShown(t *testing.T) {
	var fs *failingStore
	e := newEnv(t, func(s tollgate.Store) tollgate.Store {
		fs = &failingStore{Store: s, err: errors.New("disk on fire at sector 7")}
		return fs
	})
	r := e.do("GET", "/api/v1/accounts?x=query-secret", adminKey, nil)
	d := wantError(t, r, http.StatusInternalServerError, tollgate.EINTERNAL, "")
	if d.Message != "internal error" || strings.Contains(string(r.body), "sector 7") {
		t.Fatalf("the cause leaked to the client: %s", r.body)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "disk on fire at sector 7") || !strings.Contains(logs, `"path":"/api/v1/accounts"`) || !strings.Contains(logs, `"method":"GET"`) {
		t.Fatalf("the cause is not logged with the request:\n%s", logs)
	}
	if strings.Contains(logs, "query-secret") {
		t.Fatalf("the query was logged:\n%s", logs)
	}

	fs.err = tollgate.Unavailable("store", errors.New("connection refused"))
	r = e.do("GET", "/api/v1/accounts", adminKey, nil)
	wantError(t, r, http.StatusServiceUnavailable, tollgate.EUNAVAILABLE, "")
	if r.header.Get("Retry-After") != "5" {
		t.Fatalf("Retry-After = %q", r.header.Get("Retry-After"))
	}
	_, err := e.op.ListAccounts(context.Background())
	wantCode(t, err, tollgate.EUNAVAILABLE, "")
}
