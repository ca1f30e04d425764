package console_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/console"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/password"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/sqlite"
	"github.com/tollgate/tollgate/store/storetest"
)

type env struct {
	t     *testing.T
	svc   *tollgate.Service
	users *tollgate.Users
	srv   *httptest.Server
	clock *testenv.Clock
	logs  *testenv.Buffer
}

const goodPassword = "correct horse battery staple"

func newEnv(t *testing.T, publicURL string) *env {
	t.Helper()
	return newEnvWith(t, publicURL, nil)
}

// newEnvWith is newEnv with set called on the console before it serves.
func newEnvWith(t *testing.T, publicURL string, set func(*console.Console)) *env {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k1, k2 := make([]byte, 32), make([]byte, 32)
	rand.Read(k1)
	rand.Read(k2)
	keys, err := tollgate.NewKeys(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	clk := testenv.NewClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	svc := tollgate.NewService(db, keys)
	svc.Now = clk.Now
	users := &tollgate.Users{Store: db, Keys: keys, Hasher: password.Fast, Now: clk.Now}
	logs := &testenv.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := &console.Console{Service: svc, Users: users, PublicURL: publicURL, Logger: logger}
	if set != nil {
		set(c)
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", c.Handler())
	// As cmd/tollgate serves it: behind the one access log.
	srv := httptest.NewServer((&obs.Observer{Logger: logger}).Wrap(mux))
	t.Cleanup(srv.Close)
	if _, _, _, err := svc.CreateAccount(context.Background(), "operator", "acme"); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, svc: svc, users: users, srv: srv, clock: clk, logs: logs}
}

// user creates a console user of acme with a password set.
func (e *env) user(email string, role tollgate.Role) {
	e.t.Helper()
	ctx := context.Background()
	_, link, err := e.users.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: email, Role: role})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.users.SetPassword(ctx, link.Reveal(), goodPassword); err != nil {
		e.t.Fatal(err)
	}
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) (int, string, http.Header) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	return resp.StatusCode, string(body), resp.Header
}

func (b *browser) get(path string) (int, string, http.Header) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

// post sends a form; the page's CSRF token is added unless form has one.
func (b *browser) post(path string, form url.Values, hdr ...string) (int, string, http.Header) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) signIn(email, pw string) (int, string, http.Header) {
	b.t.Helper()
	b.get("/console/sign-in")
	return b.post("/console/sign-in", url.Values{"email": {email}, "password": {pw}})
}

func (e *env) signedIn(email string, role tollgate.Role) *browser {
	e.t.Helper()
	e.user(email, role)
	b := e.browser()
	if st, body, h := b.signIn(email, goodPassword); st != http.StatusSeeOther || h.Get("Location") != "/console/tokens" {
		e.t.Fatalf("sign-in: %d %s %s", st, h.Get("Location"), body)
	}
	if st, _, _ := b.get("/console/tokens"); st != 200 {
		e.t.Fatalf("tokens page: %d", st)
	}
	return b
}

func wantStatus(t *testing.T, what string, got, want int, body string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, got, want, body)
	}
}

func TestSignInShowsTheDefaultToken(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	b := e.browser()
	// Signed out: the tokens page sends to sign-in, and back afterwards.
	st, _, h := b.get("/console/tokens?status=active")
	if st != http.StatusSeeOther || h.Get("Location") != "/console/sign-in?next=/console/tokens" {
		t.Fatalf("signed out: %d %q", st, h.Get("Location"))
	}
	e.user("ann@acme.example", tollgate.RoleOperator)
	st, body, _ := b.signIn("ann@acme.example", "wrong password!")
	wantStatus(t, "wrong password", st, 200, body)
	if !strings.Contains(body, "wrong email or password") {
		t.Fatalf("no message: %s", body)
	}
	st, _, h = b.signIn("ANN@acme.example", goodPassword)
	if st != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", st)
	}
	st, body, _ = b.get("/console/tokens")
	wantStatus(t, "tokens", st, 200, body)
	for _, want := range []string{`data-name="default"`, "1 of 100 tokens", `data-status="active"`, "acme", "ann@acme.example",
		"docker login registry.test:5000 -u tollgate", "kubectl create secret docker-registry", "&lt;TOKEN&gt;", ">Reveal<"} {
		if !strings.Contains(body, want) {
			t.Errorf("tokens page lacks %q", want)
		}
	}
	// Sign out ends the session for good.
	st, _, h = b.post("/console/sign-out", nil)
	if st != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/sign-in") {
		t.Fatalf("sign-out: %d %s", st, h.Get("Location"))
	}
	if st, _, _ := b.get("/console/tokens"); st != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", st)
	}
}

func TestCookiesAreHttpOnlySameSiteAndSecureOnHTTPS(t *testing.T) {
	for _, tc := range []struct {
		url    string
		secure bool
	}{{"http://registry.test", false}, {"https://registry.example.com", true}} {
		e := newEnv(t, tc.url)
		e.user("ann@acme.example", tollgate.RoleViewer)
		b := e.browser()
		_, _, h := b.signIn("ann@acme.example", goodPassword)
		var found bool
		for _, c := range (&http.Response{Header: h}).Cookies() {
			if c.Name != "tollgate_session" || c.MaxAge < 0 {
				continue
			}
			found = true
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != tc.secure || c.Path != "/console" ||
				!strings.HasPrefix(c.Value, tollgate.SessionPrefix) {
				t.Errorf("%s: session cookie %+v", tc.url, c)
			}
		}
		if !found {
			t.Fatalf("%s: no session cookie in %v", tc.url, h["Set-Cookie"])
		}
	}
}

func TestCSRFIsCheckedOnEveryForm(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	toks, _, _ := e.svc.ListTokens(context.Background(), "acme", "")
	id := toks[0].ID
	for _, path := range []string{"/console/tokens", "/console/tokens/" + id + "/edit", "/console/tokens/" + id + "/extend",
		"/console/tokens/" + id + "/reveal", "/console/tokens/" + id + "/revoke", "/console/account/request-packages", "/console/sign-out"} {
		for name, form := range map[string]url.Values{
			"missing": {"csrf": {""}, "name": {"x"}, "images": {"on"}, "never": {"on"}},
			"wrong":   {"csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "name": {"x"}, "images": {"on"}, "never": {"on"}},
		} {
			st, body, _ := b.post(path, form)
			wantStatus(t, path+" with "+name+" token", st, http.StatusForbidden, body)
		}
	}
	// The right token from another site (a browser says so) is refused too.
	st, body, _ := b.post("/console/tokens/"+id+"/revoke", nil, "Sec-Fetch-Site", "cross-site")
	wantStatus(t, "cross-site revoke", st, http.StatusForbidden, body)
	// Nothing happened.
	tok, _, _ := e.svc.Token(context.Background(), id)
	if tok.RevokedAt != nil || tok.Name != "default" {
		t.Fatalf("a forged form changed the token: %+v", tok)
	}
	// Another session's token does not work in this one.
	other := e.signedIn("bob@acme.example", tollgate.RoleAdmin)
	st, body, _ = b.post("/console/tokens/"+id+"/revoke", url.Values{"csrf": {other.csrf}})
	wantStatus(t, "another session's CSRF token", st, http.StatusForbidden, body)
	// Sign-in without the pre-session cookie's token.
	fresh := e.browser()
	st, body, _ = fresh.post("/console/sign-in", url.Values{"email": {"ann@acme.example"}, "password": {goodPassword}})
	wantStatus(t, "sign-in without CSRF", st, http.StatusForbidden, body)
	// And with it, a same-site request goes through.
	st, _, _ = b.post("/console/tokens/"+id+"/revoke", nil, "Sec-Fetch-Site", "same-origin")
	wantStatus(t, "revoke", st, http.StatusSeeOther, "")
}

func TestRoles(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	toks, _, _ := e.svc.ListTokens(context.Background(), "acme", "")
	id := toks[0].ID
	viewer := e.signedIn("vic@acme.example", tollgate.RoleViewer)
	operator := e.signedIn("otto@acme.example", tollgate.RoleOperator)
	admin := e.signedIn("ada@acme.example", tollgate.RoleAdmin)

	_, body, _ := viewer.get("/console/tokens")
	if strings.Contains(body, ">Reveal<") || strings.Contains(body, "/revoke\"") || strings.Contains(body, "New token") ||
		!strings.Contains(body, "cannot reveal") || strings.Contains(body, "Audit log") {
		t.Fatalf("viewer's page offers what it may not do:\n%s", body)
	}
	for _, p := range []string{"/console/tokens/" + id + "/reveal", "/console/tokens/" + id + "/revoke", "/console/tokens/" + id + "/extend",
		"/console/tokens/" + id + "/edit", "/console/account/request-packages"} {
		st, body, _ := viewer.post(p, url.Values{"never": {"on"}, "name": {"x"}, "images": {"on"}})
		wantStatus(t, "viewer POST "+p, st, http.StatusForbidden, body)
	}
	st, body, _ := viewer.post("/console/tokens/"+id+"/reveal", nil, "Accept", "application/json")
	wantStatus(t, "viewer reveal (JSON)", st, http.StatusForbidden, body)
	if strings.Contains(body, tollgate.TokenPrefix) {
		t.Fatal("secret in a refusal")
	}
	for _, p := range []string{"/console/tokens/new", "/console/tokens/" + id + "/revoke", "/console/audit"} {
		st, body, _ := viewer.get(p)
		wantStatus(t, "viewer GET "+p, st, http.StatusForbidden, body)
	}
	st, body, _ = operator.get("/console/audit")
	wantStatus(t, "operator audit", st, http.StatusForbidden, body)
	_, body, _ = operator.get("/console/tokens")
	if strings.Contains(body, "Audit log") || !strings.Contains(body, ">Reveal<") {
		t.Fatal("operator's page is wrong")
	}

	// The operator reveals (JSON, as the page's script asks).
	st, body, _ = operator.post("/console/tokens/"+id+"/reveal", nil, "Accept", "application/json")
	wantStatus(t, "operator reveal", st, 200, body)
	var out struct {
		Secret   string
		Commands []tollgate.SetupCommand
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || !strings.HasPrefix(out.Secret, "tg_") ||
		!strings.Contains(out.Commands[0].Text, out.Secret) {
		t.Fatalf("reveal answer %s (%v)", body, err)
	}
	if _, _, err := storetest.Authenticate(context.Background(), e.svc, out.Secret); err != nil {
		t.Fatalf("revealed secret does not authenticate: %v", err)
	}
	// Without JavaScript the card opens with the secret in it.
	st, body, _ = operator.post("/console/tokens/"+id+"/reveal", nil)
	wantStatus(t, "operator reveal (form)", st, 200, body)
	if !strings.Contains(body, out.Secret) || !strings.Contains(body, `data-name="default" open`) {
		t.Fatal("form reveal does not show the secret in an open card")
	}

	st, body, _ = admin.get("/console/audit")
	wantStatus(t, "admin audit", st, 200, body)
	if !strings.Contains(body, "token.revealed") || !strings.Contains(body, "user:otto@acme.example") {
		t.Fatalf("audit page lacks the reveal:\n%s", body)
	}
	if strings.Contains(e.logs.String(), out.Secret) {
		t.Fatal("secret in the logs")
	}
}

func TestOtherAccountsTokensAreNotFound(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	_, tok, _, err := e.svc.CreateAccount(context.Background(), "operator", "other")
	if err != nil {
		t.Fatal(err)
	}
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	for _, p := range []string{"/console/tokens/" + tok.ID + "/reveal", "/console/tokens/" + tok.ID + "/revoke", "/console/tokens/" + tok.ID + "/edit"} {
		st, body, _ := b.post(p, url.Values{"name": {"x"}, "images": {"on"}, "never": {"on"}})
		wantStatus(t, p, st, http.StatusNotFound, body)
	}
	if st, body, _ := b.get("/console/tokens/" + tok.ID + "/edit"); st != http.StatusNotFound {
		wantStatus(t, "edit page", st, http.StatusNotFound, body)
	}
	got, _, _ := e.svc.Token(context.Background(), tok.ID)
	if got.RevokedAt != nil {
		t.Fatal("revoked another account's token")
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleViewer)
	// Used every 50 minutes, it lives; idle for an hour, it ends.
	e.clock.Add(50 * time.Minute)
	if st, _, _ := b.get("/console/tokens"); st != 200 {
		t.Fatalf("after 50 minutes: %d", st)
	}
	e.clock.Add(59 * time.Minute)
	if st, _, _ := b.get("/console/tokens"); st != 200 {
		t.Fatalf("59 minutes after the last request: %d", st)
	}
	e.clock.Add(61 * time.Minute)
	st, _, h := b.get("/console/tokens")
	if st != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/sign-in") {
		t.Fatalf("idle session: %d %s", st, h.Get("Location"))
	}
	// However busy, a session ends after 12 hours.
	b = e.browser()
	b.signIn("ann@acme.example", goodPassword)
	for i := 0; i < 14; i++ {
		e.clock.Add(50 * time.Minute)
		if st, _, _ := b.get("/console/tokens"); st != 200 {
			t.Fatalf("busy session ended after %d×50 minutes", i+1)
		}
	}
	e.clock.Add(30 * time.Minute)
	if st, _, _ := b.get("/console/tokens"); st != http.StatusSeeOther {
		t.Fatalf("a session past 12 hours: %d", st)
	}
	// JSON callers get a 401, not a redirect.
	st, _, _ = b.post("/console/tokens/x/reveal", nil, "Accept", "application/json")
	if st != http.StatusUnauthorized {
		t.Fatalf("ended session, JSON: %d", st)
	}
}

func TestSignInIsRateLimited(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	e.user("ann@acme.example", tollgate.RoleViewer)
	b := e.browser()
	for i := 0; i < 5; i++ {
		if st, body, _ := b.signIn("ann@acme.example", "not the password"); st != 200 {
			wantStatus(t, "failed sign-in", st, 200, body)
		}
	}
	// Now even the right password waits, until an attempt is back: one
	// per 15/5 minutes.
	st, body, h := b.signIn("ann@acme.example", goodPassword)
	wantStatus(t, "sign-in over the limit", st, http.StatusTooManyRequests, body)
	if !strings.Contains(body, "Too many failed sign-ins. Wait 3 minutes") || h.Get("Retry-After") != "180" {
		t.Fatalf("message %q, Retry-After %q", body, h.Get("Retry-After"))
	}
	// Another email from the same address still gets its tries, up to the
	// address's own limit.
	e.user("bob@acme.example", tollgate.RoleViewer)
	if st, _, _ := b.signIn("bob@acme.example", goodPassword); st != http.StatusSeeOther {
		t.Fatalf("other email: %d", st)
	}
	for i := 0; i < 15; i++ {
		b.signIn("nobody"+string(rune('a'+i))+"@acme.example", "x")
	}
	if st, _, _ := b.signIn("bob@acme.example", goodPassword); st != http.StatusTooManyRequests {
		t.Fatalf("address over its limit: %d", st)
	}
	e.clock.Add(15 * time.Minute)
	if st, _, _ := b.signIn("ann@acme.example", goodPassword); st != http.StatusSeeOther {
		t.Fatalf("after the window: %d", st)
	}
}

func TestTokenFormsShowFieldErrors(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleOperator)
	b.get("/console/tokens/new")
	cases := []struct {
		form  url.Values
		id    string
		words string
	}{
		{url.Values{"name": {"  "}, "images": {"on"}, "never": {"on"}}, "name-error", "must not be empty"},
		{url.Values{"name": {"ci"}, "never": {"on"}}, "scope-error", "must name at least one of images, packages"},
		{url.Values{"name": {"ci"}, "packages": {"on"}, "never": {"on"}}, "scope-error", "needs package access granted"},
		{url.Values{"name": {"ci"}, "images": {"on"}}, "expires-error", "pick a date"},
		{url.Values{"name": {"ci"}, "images": {"on"}, "expires": {"2020-01-01"}}, "expires-error", "must be in the future"},
		{url.Values{"name": {"ci"}, "images": {"on"}, "description": {strings.Repeat("d", 501)}, "never": {"on"}}, "description-error", "at most 500"},
	}
	for _, tc := range cases {
		st, body, _ := b.post("/console/tokens", tc.form)
		if st != http.StatusBadRequest || !regexp.MustCompile(`id="`+tc.id+`">[^<]*`+regexp.QuoteMeta(tc.words)).MatchString(body) {
			t.Errorf("%v: status %d, want 400 and %s saying %q", tc.form, st, tc.id, tc.words)
		}
		if !strings.Contains(body, `value="`+tc.form.Get("name")+`"`) {
			t.Errorf("%v: the form lost the name", tc.form)
		}
	}
	// Created: the secret shown once, with its commands.
	st, body, _ := b.post("/console/tokens", url.Values{"name": {"ci"}, "description": {"CI pulls"}, "images": {"on"}, "expires": {"2027-01-31"}})
	wantStatus(t, "create", st, http.StatusCreated, body)
	m := regexp.MustCompile(`id="new-secret">(tg_[0-9A-Za-z]+)<`).FindStringSubmatch(body)
	if m == nil || !strings.Contains(html.UnescapeString(body), "echo '"+m[1]+"' | docker login registry.test") {
		t.Fatalf("created page:\n%s", body)
	}
	// Fill up to 100 and see the 101st refused, with the rule's message.
	for i := 2; i < tollgate.MaxActiveTokens; i++ {
		if _, _, err := e.svc.CreateToken(context.Background(), "operator", tollgate.TokenCreate{Account: "acme", Name: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	_, body, _ = b.get("/console/tokens")
	if !strings.Contains(body, "100 of 100 tokens") {
		t.Fatal("count is not 100 of 100")
	}
	st, body, _ = b.post("/console/tokens", url.Values{"name": {"one too many"}, "images": {"on"}, "never": {"on"}})
	wantStatus(t, "101st", st, http.StatusConflict, body)
	if !strings.Contains(body, `id="form-error">account acme already holds 100 active tokens`) {
		t.Fatalf("101st token message:\n%s", body)
	}
}

func TestEditExtendRevoke(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	ctx := context.Background()
	tok, _, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci",
		Expiry: tollgate.Expiry{At: e.clock.Now().Add(48 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	b := e.signedIn("ann@acme.example", tollgate.RoleOperator)
	_, body, _ := b.get("/console/tokens")
	if !strings.Contains(body, "expires in 2 days") {
		t.Fatal("no 'expires in 2 days' badge")
	}
	e.clock.Add(72 * time.Hour)
	b = e.browser() // the session ended meanwhile
	b.signIn("ann@acme.example", goodPassword)
	_, body, _ = b.get("/console/tokens?status=expired")
	if !strings.Contains(body, `data-name="ci"`) || strings.Contains(body, `data-name="default"`) {
		t.Fatal("expired filter")
	}
	// Its card says the commands work again after Extend, and offers it.
	if !strings.Contains(body, "work again once it is extended") || !strings.Contains(body, `action="/console/tokens/`+tok.ID+`/extend"`) {
		t.Fatal("an expired token's card does not offer Extend")
	}
	// Editing the name of an expired token leaves its expiry alone.
	b.get("/console/tokens/" + tok.ID + "/edit")
	st, body, h := b.post("/console/tokens/"+tok.ID+"/edit", url.Values{"name": {"ci-eu"}, "description": {"eu"}, "images": {"on"},
		"expires": {tok.ExpiresAt.Format("2006-01-02")}})
	if st != http.StatusSeeOther {
		wantStatus(t, "edit", st, http.StatusSeeOther, body)
	}
	if !strings.Contains(h.Get("Location"), "done=edited") {
		t.Fatalf("edit redirect %q", h.Get("Location"))
	}
	got, _, _ := e.svc.Token(ctx, tok.ID)
	if got.Name != "ci-eu" || got.Description != "eu" || !got.ExpiresAt.Equal(*tok.ExpiresAt) {
		t.Fatalf("after edit: %+v", got)
	}
	// Extend: a past date is refused next to the card, a future one
	// reactivates it.
	b.get("/console/tokens")
	st, body, _ = b.post("/console/tokens/"+tok.ID+"/extend", url.Values{"expires": {"2020-01-01"}})
	if st != http.StatusBadRequest || !strings.Contains(body, "expires: must be in the future") {
		t.Fatalf("extend to the past: %d", st)
	}
	st, _, _ = b.post("/console/tokens/"+tok.ID+"/extend", url.Values{"expires": {"2030-01-01"}})
	wantStatus(t, "extend", st, http.StatusSeeOther, "")
	if got, a, _ := e.svc.Token(ctx, tok.ID); got.Status(a, e.clock.Now()) != tollgate.TokenActive {
		t.Fatal("extend did not reactivate")
	}
	// Revoke asks first, then is final.
	st, body, _ = b.get("/console/tokens/" + tok.ID + "/revoke")
	if st != 200 || !strings.Contains(body, "Revoking is final") {
		t.Fatalf("confirmation page: %d", st)
	}
	st, _, h = b.post("/console/tokens/"+tok.ID+"/revoke", nil)
	wantStatus(t, "revoke", st, http.StatusSeeOther, "")
	_, body, _ = b.get(h.Get("Location"))
	if !strings.Contains(body, "Token revoked.") || !strings.Contains(body, "revoked for good") {
		t.Fatal("revoked page")
	}
	st, body, _ = b.post("/console/tokens/"+tok.ID+"/edit", url.Values{"name": {"again"}, "images": {"on"}, "never": {"on"}})
	if st != http.StatusConflict || !strings.Contains(body, "revocation is final") {
		t.Fatalf("edit revoked: %d\n%s", st, body)
	}
}

func TestPackageAccessRequest(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleOperator)
	_, body, _ := b.get("/console/tokens/new")
	if !strings.Contains(body, `id="scope-packages" disabled`) || !strings.Contains(body, "no package access yet") {
		t.Fatal("packages scope is not disabled with an explanation")
	}
	st, _, h := b.post("/console/account/request-packages", url.Values{"back": {"new"}})
	if st != http.StatusSeeOther || h.Get("Location") != "/console/tokens/new" {
		t.Fatalf("request: %d %s", st, h.Get("Location"))
	}
	_, body, _ = b.get("/console/tokens")
	if !strings.Contains(body, "pkg-requested") {
		t.Fatal("state not shown as requested")
	}
	if _, err := e.svc.GrantPackages(context.Background(), "operator", "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetSubscription(context.Background(), "operator", "acme", tollgate.Subscription{Packages: []string{"os"}}); err != nil {
		t.Fatal(err)
	}
	_, body, _ = b.get("/console/tokens/new")
	if strings.Contains(body, `id="scope-packages" disabled`) {
		t.Fatal("packages still disabled once granted")
	}
	// The default token gained packages: its card shows apk and apt commands.
	_, body, _ = b.get("/console/tokens")
	for _, want := range []string{"/etc/apk/repositories", "HTTP_AUTH", "/etc/apt/auth.conf.d/tollgate-os.conf", "sources.list.d"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q command", want)
		}
	}
}

func TestSetPasswordLink(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	_, link, err := e.users.CreateUser(context.Background(), "operator", tollgate.UserCreate{Account: "acme", Email: "new@acme.example", Role: tollgate.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	path := strings.TrimPrefix(tollgate.SetPasswordURL("", link), "")
	st, body, h := b.get(path)
	wantStatus(t, "set-password page", st, 200, body)
	if h.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(body, `value="new@acme.example"`) {
		t.Fatal("set-password page headers or email")
	}
	st, body, _ = b.post("/console/set-password", url.Values{"t": {link.Reveal()}, "password": {"short"}, "confirm": {"short"}})
	if st != http.StatusBadRequest || !strings.Contains(body, `id="password-error">must be at least 12 characters`) {
		t.Fatalf("short password: %d\n%s", st, body)
	}
	st, body, _ = b.post("/console/set-password", url.Values{"t": {link.Reveal()}, "password": {goodPassword}, "confirm": {goodPassword + "x"}})
	if st != http.StatusBadRequest || !strings.Contains(body, `id="confirm-error"`) {
		t.Fatalf("mismatch: %d", st)
	}
	st, _, h = b.post("/console/set-password", url.Values{"t": {link.Reveal()}, "password": {goodPassword}, "confirm": {goodPassword}})
	if st != http.StatusSeeOther || h.Get("Location") != "/console/sign-in?password-set=1" {
		t.Fatalf("set: %d %s", st, h.Get("Location"))
	}
	// Used: the link is dead.
	st, body, _ = b.get(path)
	if st != http.StatusUnauthorized || !strings.Contains(body, "invalid, used or expired") {
		t.Fatalf("used link: %d", st)
	}
	if st, _, _ := b.signIn("new@acme.example", goodPassword); st != http.StatusSeeOther {
		t.Fatalf("sign-in with the new password: %d", st)
	}
	if strings.Contains(e.logs.String(), link.Reveal()) {
		t.Fatal("set-password link in the logs")
	}
}

func TestNextIsOnlyAConsolePath(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	e.user("ann@acme.example", tollgate.RoleViewer)
	for next, want := range map[string]string{
		"/console/audit":         "/console/audit",
		"https://evil.example/":  "/console/tokens",
		"//evil.example/console": "/console/tokens",
		"/console/sign-out":      "/console/tokens",
	} {
		b := e.browser()
		b.get("/console/sign-in")
		_, _, h := b.post("/console/sign-in", url.Values{"email": {"ann@acme.example"}, "password": {goodPassword}, "next": {next}})
		if h.Get("Location") != want {
			t.Errorf("next=%q: went to %q, want %q", next, h.Get("Location"), want)
		}
	}
}

func TestStaticAssetsAndHeaders(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.browser()
	for _, p := range []string{"/console/static/console.css", "/console/static/console.js"} {
		st, body, _ := b.get(p)
		if st != 200 || len(body) < 100 {
			t.Fatalf("%s: %d", p, st)
		}
	}
	_, _, h := b.get("/console/sign-in")
	if !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") || h.Get("X-Frame-Options") != "DENY" ||
		h.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers: %v", h)
	}
	if st, _, _ := b.get("/console/nope"); st != http.StatusNotFound {
		t.Fatalf("unknown page: %d", st)
	}
}

// TestSignInPageInASecondTabCannotInvalidateTheFirst: every load of the
// sign-in page issued a new pre-session cookie, so opening the console in
// a second tab made the first tab's form fail with "This form has
// expired".
func TestSignInPageInASecondTabCannotInvalidateTheFirst(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	e.user("ann@acme.example", tollgate.RoleViewer)
	b := e.browser()
	b.get("/console/sign-in") // tab A
	tabA := b.csrf
	_, _, h := b.get("/console/sign-in") // tab B
	if h.Get("Set-Cookie") != "" {
		t.Errorf("the second load set a cookie again: %v", h["Set-Cookie"])
	}
	st, body, h := b.post("/console/sign-in", url.Values{"csrf": {tabA}, "email": {"ann@acme.example"}, "password": {goodPassword}})
	if st != http.StatusSeeOther || h.Get("Location") != "/console/tokens" {
		t.Fatalf("tab A's form after tab B loaded: %d %s\n%s", st, h.Get("Location"), body)
	}
}

// TestConsoleCannotShowStoredControlCharacters: a token name or
// description stored with control or bidirectional characters (before
// they were refused) was put in the page as it was; html/template escapes
// HTML, not a right-to-left override that makes a name read as another.
func TestConsoleCannotShowStoredControlCharacters(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	ctx := context.Background()
	toks, _, _ := e.svc.ListTokens(ctx, "acme", "")
	tok := toks[0]
	tok.Name, tok.Description = "ci\u202egnp.exe", "one\x1b[2Jtwo\nthree"
	if err := e.svc.Store.Update(ctx, func(tx tollgate.Tx) error { return tx.UpdateToken(ctx, tok) }); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/console/tokens", "/console/tokens/" + tok.ID + "/edit", "/console/tokens/" + tok.ID + "/revoke"} {
		st, body, _ := b.get(path)
		wantStatus(t, path, st, 200, body)
		if i := strings.IndexFunc(body, func(r rune) bool { return tollgate.IsControl(r) && r != '\n' }); i >= 0 {
			t.Errorf("%s holds a control character: %q", path, body[max(0, i-40):min(len(body), i+40)])
		}
		if !strings.Contains(body, `ci\u202egnp.exe`) {
			t.Errorf("%s does not show the name escaped", path)
		}
		if !strings.HasSuffix(path, "/revoke") && !strings.Contains(body, `one\x1b[2Jtwo\nthree`) {
			t.Errorf("%s does not show the description escaped", path)
		}
	}
}

// TestSuspendedAccountConsoleCannotMintRevealOrExtend: a console user of
// a suspended account could reveal a token's secret, create a token or
// extend one; all of them work again on resume without the operator
// choosing so. Reading the tokens page still works.
func TestSuspendedAccountConsoleCannotMintRevealOrExtend(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	ctx := context.Background()
	toks, _, _ := e.svc.ListTokens(ctx, "acme", "")
	id := toks[0].ID
	if _, err := e.svc.ExtendToken(ctx, "operator", id, tollgate.Expiry{At: e.clock.Now().Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SuspendAccount(ctx, "operator", "acme"); err != nil {
		t.Fatal(err)
	}
	const msg = "account acme is suspended: tokens cannot be created, revealed or extended"
	st, body, _ := b.post("/console/tokens/"+id+"/reveal", nil, "Accept", "application/json")
	wantStatus(t, "reveal (JSON)", st, http.StatusForbidden, body)
	if !strings.Contains(body, msg) || strings.Contains(body, tollgate.TokenPrefix) {
		t.Errorf("reveal (JSON): %s", body)
	}
	for what, do := range map[string]func() (int, string, http.Header){
		"reveal": func() (int, string, http.Header) { return b.post("/console/tokens/"+id+"/reveal", nil) },
		"create": func() (int, string, http.Header) {
			return b.post("/console/tokens", url.Values{"name": {"more"}, "images": {"on"}, "never": {"on"}})
		},
		"extend": func() (int, string, http.Header) {
			return b.post("/console/tokens/"+id+"/extend", url.Values{"never": {"on"}})
		},
	} {
		st, body, _ := do()
		wantStatus(t, what, st, http.StatusForbidden, body)
		if !strings.Contains(body, msg) {
			t.Errorf("%s: page lacks %q", what, msg)
		}
	}
	if toks, _, _ := e.svc.ListTokens(ctx, "acme", ""); len(toks) != 1 {
		t.Fatalf("%d tokens after a refused create", len(toks))
	}
	st, body, _ = b.get("/console/tokens")
	wantStatus(t, "tokens page", st, 200, body)
}

// TestConsolePagesWithSecretsCannotBeCached: the reveal (page and JSON),
// the one-time page of a new token and the set-password page hold a
// secret; a browser or proxy cache must not keep them.
func TestConsolePagesWithSecretsCannotBeCached(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	ctx := context.Background()
	toks, _, _ := e.svc.ListTokens(ctx, "acme", "")
	id := toks[0].ID
	_, link, err := e.users.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "new@acme.example", Role: tollgate.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		st   int
		body string
		h    http.Header
	}
	get := func(st int, body string, h http.Header) answer { return answer{st, body, h} }
	for what, a := range map[string]answer{
		"reveal page":       get(b.post("/console/tokens/"+id+"/reveal", nil)),
		"reveal JSON":       get(b.post("/console/tokens/"+id+"/reveal", nil, "Accept", "application/json")),
		"created page":      get(b.post("/console/tokens", url.Values{"name": {"ci"}, "images": {"on"}, "never": {"on"}})),
		"set-password page": get(e.browser().get(tollgate.SetPasswordURL("", link))),
	} {
		if a.st/100 != 2 || !regexp.MustCompile(`tgp?_[0-9A-Za-z]{20}`).MatchString(a.body) {
			t.Fatalf("%s: %d, or no secret in it", what, a.st)
		}
		if got := a.h.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", what, got)
		}
	}
}

// TestConsoleRequestIsLoggedOnce: the console wrote its own request line
// next to the access log's; every page was logged twice. One line, naming
// the signed-in user by id (not by e-mail).
func TestConsoleRequestIsLoggedOnce(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	u, err := e.users.ListUsers(context.Background(), "acme")
	if err != nil || len(u) != 1 {
		t.Fatal(err)
	}
	before := strings.Count(e.logs.String(), "\n")
	b.get("/console/tokens")
	lines := strings.Split(strings.TrimSpace(e.logs.String()), "\n")[before:]
	if len(lines) != 1 {
		t.Fatalf("one request logged %d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`"msg":"request"`, `"path":"/console/tokens"`, `"actor":"user:` + u[0].ID + `"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the line lacks %s: %s", want, lines[0])
		}
	}
	if strings.Contains(lines[0], "ann@acme.example") {
		t.Errorf("the line holds the e-mail: %s", lines[0])
	}
}

// TestCardShowsTheEffectiveAccessAndPauses: a restricted, network-bound
// token's card lists what it may really reach, and Pause / Resume work
// from the card (a viewer cannot).
func TestCardShowsTheEffectiveAccessAndPauses(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	ctx := context.Background()
	nets, _ := tollgate.ParseNetworks("networks", []string{"192.0.2.0/24"})
	tok, _, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci",
		Policy: tollgate.TokenPolicy{Images: []string{"team-a/app"}, Networks: nets}})
	if err != nil {
		t.Fatal(err)
	}
	b := e.signedIn("ann@acme.example", tollgate.RoleOperator)
	_, body, _ := b.get("/console/tokens?open=" + tok.ID)
	for _, want := range []string{"<code>team-a/app</code> <span class=\"muted\">(restricted; within the subscription)", "<code>192.0.2.0/24</code>", "anywhere"} {
		if !strings.Contains(body, want) {
			t.Errorf("tokens page lacks %q", want)
		}
	}
	st, _, h := b.post("/console/tokens/"+tok.ID+"/pause", nil)
	wantStatus(t, "pause", st, http.StatusSeeOther, "")
	_, body, _ = b.get(h.Get("Location"))
	if !strings.Contains(body, "Token paused.") || !strings.Contains(body, `data-status="paused"`) || !strings.Contains(body, "/resume") {
		t.Fatal("paused card")
	}
	if got, a, _ := e.svc.Token(ctx, tok.ID); got.Status(a, e.clock.Now()) != tollgate.TokenPaused {
		t.Fatal("not paused")
	}
	st, _, _ = b.post("/console/tokens/"+tok.ID+"/resume", nil)
	wantStatus(t, "resume", st, http.StatusSeeOther, "")
	if got, a, _ := e.svc.Token(ctx, tok.ID); got.Status(a, e.clock.Now()) != tollgate.TokenActive {
		t.Fatal("not resumed")
	}
	v := e.signedIn("vic@acme.example", tollgate.RoleViewer)
	if st, _, _ := v.post("/console/tokens/"+tok.ID+"/pause", nil); st != http.StatusForbidden {
		t.Fatalf("a viewer paused a token: %d", st)
	}
}

// TestConsoleCreatesARestrictedNetworkBoundToken: the new-token form takes
// image restrictions and networks; a bad network is refused next to its
// field and nothing is created.
func TestConsoleCreatesARestrictedNetworkBoundToken(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	ctx := context.Background()
	b := e.signedIn("ann@acme.example", tollgate.RoleOperator)
	b.get("/console/tokens/new")
	st, body, _ := b.post("/console/tokens", url.Values{"name": {"ci"}, "images": {"on"}, "never": {"on"},
		"restrict_images": {"team-a/app"}, "networks": {"10.0.0.0/33"}})
	if st != http.StatusBadRequest || !strings.Contains(body, `id="networks-error"`) {
		t.Fatalf("bad network: %d", st)
	}
	if toks, _, _ := e.svc.ListTokens(ctx, "acme", ""); len(toks) != 1 {
		t.Fatalf("a token was created from a refused form: %d tokens", len(toks))
	}
	st, _, _ = b.post("/console/tokens", url.Values{"name": {"ci"}, "images": {"on"}, "never": {"on"},
		"restrict_images": {"team-a/app\nteam-a/db"}, "networks": {"192.0.2.0/24, 2001:db8::/32"}})
	wantStatus(t, "create", st, http.StatusCreated, "")
	toks, _, _ := e.svc.ListTokens(ctx, "acme", "")
	var got *tollgate.Token
	for _, tk := range toks {
		if tk.Name == "ci" {
			got = tk
		}
	}
	if got == nil || len(got.Policy.Images) != 2 || len(got.Policy.Networks) != 2 {
		t.Fatalf("created = %+v", got)
	}
}
