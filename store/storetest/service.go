package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// NewKeys returns random lookup and sealing keys.
func NewKeys(t testing.TB) *tollgate.Keys {
	t.Helper()
	a, b := make([]byte, tollgate.KeySize), make([]byte, tollgate.KeySize)
	rand.Read(a)
	rand.Read(b)
	k, err := tollgate.NewKeys(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newService(t *testing.T, newStore NewStore) (*tollgate.Service, *testenv.Clock) {
	c := testenv.NewClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	s := tollgate.NewService(newStore(t), NewKeys(t))
	s.Now = c.Now
	return s, c
}

func wantCode(t *testing.T, err error, code, field string) {
	t.Helper()
	if got := tollgate.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
	if got := tollgate.ErrorField(err); got != field {
		t.Fatalf("error field = %q (%v), want %q", got, err, field)
	}
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ptr[T any](v T) *T { return &v }

// must3 is must for CreateToken's three results.
func must3(t *testing.T) func(tok *tollgate.Token, secret tollgate.Secret, err error) (*tollgate.Token, tollgate.Secret) {
	return func(tok *tollgate.Token, secret tollgate.Secret, err error) (*tollgate.Token, tollgate.Secret) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tok, secret
	}
}

// must2 is must for CreateAccount's four results: the account and the
// default token.
func must2(t *testing.T) func(a *tollgate.Account, tok *tollgate.Token, _ tollgate.Secret, err error) (*tollgate.Account, *tollgate.Token) {
	return func(a *tollgate.Account, tok *tollgate.Token, _ tollgate.Secret, err error) (*tollgate.Account, *tollgate.Token) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, tok
	}
}

func testService(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("SignUpCreatesDefaultToken", func(t *testing.T) {
		s, _ := newService(t, newStore)
		a, tok, secret, err := s.CreateAccount(ctx, "operator", "acme")
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != tollgate.AccountActive || a.PackageAccess != tollgate.PackageAccessNone {
			t.Fatalf("new account = %+v", a)
		}
		if tok.Name != "default" || tok.Scope != tollgate.ScopeImages || tok.ExpiresAt != nil || tok.AccountName != "acme" {
			t.Fatalf("default token = %+v", tok)
		}
		toks, _, err := s.ListTokens(ctx, "acme", "")
		if err != nil || len(toks) != 1 || toks[0].ID != tok.ID {
			t.Fatalf("ListTokens = %v, %v", toks, err)
		}
		gt, ga, err := Authenticate(ctx, s, secret.Reveal())
		if err != nil || gt.ID != tok.ID || ga.ID != a.ID {
			t.Fatalf("Authenticate(default secret) = %v, %v, %v", gt, ga, err)
		}
		_, _, _, err = s.CreateAccount(ctx, "operator", "acme")
		wantCode(t, err, tollgate.ECONFLICT, "name")
		_, _, _, err = s.CreateAccount(ctx, "operator", "Acme!")
		wantCode(t, err, tollgate.EINVALID, "name")
	})

	t.Run("TokenTextCannotCarryControlCharacters", func(t *testing.T) {
		s, _ := newService(t, newStore)
		_, def := must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		for _, bad := range []string{"ci\ndocker login evil", "ci\x1b[2J", "ci\u202egnp.exe", "ci\u2066x", "ci\x7f", "ci\u0085"} {
			_, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: bad})
			wantCode(t, err, tollgate.EINVALID, "name")
			_, _, err = s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ok", Description: bad})
			wantCode(t, err, tollgate.EINVALID, "description")
			_, err = s.EditToken(ctx, "operator", def.ID, tollgate.TokenEdit{Name: ptr(bad)})
			wantCode(t, err, tollgate.EINVALID, "name")
			_, err = s.EditToken(ctx, "operator", def.ID, tollgate.TokenEdit{Description: ptr(bad)})
			wantCode(t, err, tollgate.EINVALID, "description")
		}
		toks, _, err := s.ListTokens(ctx, "acme", "")
		if err != nil || len(toks) != 1 || toks[0].Name != "default" || toks[0].Description != "" {
			t.Fatalf("after refused writes: %v, %v", toks, err)
		}
	})

	t.Run("SuspendedAccountCustomersCannotMintRevealOrExtend", func(t *testing.T) {
		s, clk := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		customer := tollgate.AccountActor("acme")
		later := clk.Now().Add(48 * time.Hour)
		tok, _ := must3(t)(s.CreateToken(ctx, customer, tollgate.TokenCreate{Account: "acme", Name: "ci", Expiry: tollgate.Expiry{At: later}}))
		must[*tollgate.Account](t)(s.SuspendAccount(ctx, "operator", "acme"))
		const msg = "account acme is suspended: tokens cannot be created, revealed or extended"
		for _, actor := range []string{customer, tollgate.UserActor("ann@acme.example")} {
			_, _, err := s.CreateToken(ctx, actor, tollgate.TokenCreate{Account: "acme", Name: "more"})
			wantCode(t, err, tollgate.EFORBIDDEN, "")
			if tollgate.ErrorMessage(err) != msg {
				t.Fatalf("message = %q", tollgate.ErrorMessage(err))
			}
			_, err = s.RevealToken(ctx, actor, tok.ID)
			wantCode(t, err, tollgate.EFORBIDDEN, "")
			_, err = s.ExtendToken(ctx, actor, tok.ID, tollgate.Expiry{Never: true})
			wantCode(t, err, tollgate.EFORBIDDEN, "")
			_, err = s.ExtendToken(ctx, actor, tok.ID, tollgate.Expiry{At: later.Add(time.Hour)})
			wantCode(t, err, tollgate.EFORBIDDEN, "")
			_, err = s.EditToken(ctx, actor, tok.ID, tollgate.TokenEdit{Name: ptr("x"), Expiry: &tollgate.Expiry{At: later.Add(time.Hour)}})
			wantCode(t, err, tollgate.EFORBIDDEN, "")
		}
		if got := must[*tollgate.Token](t)(first(s.Token(ctx, tok.ID))); got.Name != "ci" || !got.ExpiresAt.Equal(later) {
			t.Fatalf("a refused write changed the token: %+v", got)
		}
		if toks, _, _ := s.ListTokens(ctx, "acme", ""); len(toks) != 2 {
			t.Fatalf("%d tokens after a refused create", len(toks))
		}
		// Reading, renaming, shortening and revoking stay allowed.
		must[*tollgate.Token](t)(s.EditToken(ctx, customer, tok.ID, tollgate.TokenEdit{Name: ptr("ci-2"), Expiry: &tollgate.Expiry{At: later.Add(-time.Hour)}}))
		// The operator acts as always.
		must[tollgate.Secret](t)(s.RevealToken(ctx, "operator", tok.ID))
		must[*tollgate.Token](t)(s.ExtendToken(ctx, "operator", tok.ID, tollgate.Expiry{Never: true}))
		must3(t)(s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "by-operator"}))
		must[*tollgate.Token](t)(s.RevokeToken(ctx, customer, tok.ID))
		// Resumed, the customer may again.
		must[*tollgate.Account](t)(s.ResumeAccount(ctx, "operator", "acme"))
		must3(t)(s.CreateToken(ctx, customer, tollgate.TokenCreate{Account: "acme", Name: "after"}))
	})

	t.Run("ExpiryIsBoundedAtYear9999", func(t *testing.T) {
		s, _ := newService(t, newStore)
		_, def := must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		past := tollgate.MaxExpiry.Add(time.Second)
		_, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "far", Expiry: tollgate.Expiry{At: past}})
		wantCode(t, err, tollgate.EINVALID, "expires")
		if tollgate.ErrorMessage(err) != "expires: must be on or before 9999-12-31 UTC" {
			t.Fatalf("message = %q", tollgate.ErrorMessage(err))
		}
		_, err = s.ExtendToken(ctx, "operator", def.ID, tollgate.Expiry{At: past})
		wantCode(t, err, tollgate.EINVALID, "expires")
		_, err = s.EditToken(ctx, "operator", def.ID, tollgate.TokenEdit{Expiry: &tollgate.Expiry{At: past}})
		wantCode(t, err, tollgate.EINVALID, "expires")
		_, err = tollgate.ParseExpiry("9999-12-31T23:00:00-05:00")
		wantCode(t, err, tollgate.EINVALID, "expires")
		last, _ := must3(t)(s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "last", Expiry: tollgate.Expiry{At: tollgate.MaxExpiry}}))
		got := must[*tollgate.Token](t)(first(s.Token(ctx, last.ID)))
		if !got.ExpiresAt.Equal(tollgate.MaxExpiry) {
			t.Fatalf("stored expiry %v, want %v", got.ExpiresAt, tollgate.MaxExpiry)
		}
	})

	t.Run("BeforeCommitFailureRollsTheWriteBack", func(t *testing.T) {
		s, _ := newService(t, newStore)
		_, def := must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		boom := tollgate.Internal(fmt.Errorf("answer does not encode"))
		var seen []string
		bad := tollgate.BeforeCommit(ctx, func(t *tollgate.Token, a *tollgate.Account) error {
			seen = append(seen, t.Name+"@"+a.Name)
			return boom
		})
		_, _, err := s.CreateToken(bad, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci"})
		wantCode(t, err, tollgate.EINTERNAL, "")
		_, _, _, err = s.CreateAccount(bad, "operator", "globex")
		wantCode(t, err, tollgate.EINTERNAL, "")
		_, err = s.EditToken(bad, "operator", def.ID, tollgate.TokenEdit{Name: ptr("renamed")})
		wantCode(t, err, tollgate.EINTERNAL, "")
		_, err = s.ExtendToken(bad, "operator", def.ID, tollgate.Expiry{At: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
		wantCode(t, err, tollgate.EINTERNAL, "")
		_, err = s.RevokeToken(bad, "operator", def.ID)
		wantCode(t, err, tollgate.EINTERNAL, "")
		if want := "ci@acme default@globex renamed@acme default@acme default@acme"; strings.Join(seen, " ") != want {
			t.Fatalf("BeforeCommit saw %q, want %q", strings.Join(seen, " "), want)
		}
		toks, _, _ := s.ListTokens(ctx, "acme", "")
		if len(toks) != 1 || toks[0].Name != "default" || toks[0].ExpiresAt != nil || toks[0].RevokedAt != nil {
			t.Fatalf("a rolled-back write left a trace: %+v", toks[0])
		}
		if _, err := s.Account(ctx, "globex"); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
			t.Fatalf("the rolled-back account exists: %v", err)
		}
		if evs, _ := s.ListAudit(ctx, "acme", tollgate.AuditPage{}); len(evs) != 2 {
			t.Fatalf("%d audit events, want the 2 of sign-up", len(evs))
		}
	})

	t.Run("LimitIsAtomic", func(t *testing.T) {
		s, _ := newService(t, newStore)
		_, def, _, err := s.CreateAccount(ctx, "operator", "acme")
		if err != nil {
			t.Fatal(err)
		}
		// Revoked tokens do not count: revoke the default one so that the
		// account starts from zero.
		must[*tollgate.Token](t)(s.RevokeToken(ctx, "operator", def.ID))
		const n = 150
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: fmt.Sprintf("t%d", i)})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		ok, limited := 0, 0
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case tollgate.ErrorCode(err) == tollgate.ELIMIT:
				limited++
				if want := "account acme already holds 100 active tokens"; err.Error() != want {
					t.Errorf("limit error = %q, want %q", err, want)
				}
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 100 || limited != 50 {
			t.Fatalf("created %d, limited %d; want 100 and 50", ok, limited)
		}
		toks, _, err := s.ListTokens(ctx, "acme", tollgate.TokenActive)
		if err != nil || len(toks) != 100 {
			t.Fatalf("active tokens = %d, %v", len(toks), err)
		}
		// Revoking one makes room for exactly one more.
		must[*tollgate.Token](t)(s.RevokeToken(ctx, "operator", toks[0].ID))
		must[*tollgate.Token](t)(first(s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "again"})))
		_, _, err = s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "one-too-many"})
		wantCode(t, err, tollgate.ELIMIT, "")
	})

	t.Run("PackagesScopeNeedsGrant", func(t *testing.T) {
		s, _ := newService(t, newStore)
		_, def, _, _ := s.CreateAccount(ctx, "operator", "acme")
		_, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "pk", Scope: tollgate.ScopePackages})
		wantCode(t, err, tollgate.EINVALID, "scope")
		if !strings.Contains(err.Error(), "package access") {
			t.Fatalf("error %q does not name the rule", err)
		}
		_, err = s.EditToken(ctx, "operator", def.ID, tollgate.TokenEdit{Scope: ptr(tollgate.ScopeImages | tollgate.ScopePackages)})
		wantCode(t, err, tollgate.EINVALID, "scope")

		a := must[*tollgate.Account](t)(s.RequestPackages(ctx, "account:acme", "acme"))
		if a.PackageAccess != tollgate.PackageAccessRequested {
			t.Fatalf("after request: %s", a.PackageAccess)
		}
		_, _, err = s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "pk", Scope: tollgate.ScopePackages})
		wantCode(t, err, tollgate.EINVALID, "scope")

		must[*tollgate.Account](t)(s.GrantPackages(ctx, "operator", "acme"))
		got, _, _ := s.Token(ctx, def.ID)
		if got.Scope != tollgate.ScopeImages|tollgate.ScopePackages {
			t.Fatalf("default token scope after grant = %s, want images,packages", got.Scope)
		}
		tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "pk", Scope: tollgate.ScopePackages})
		if err != nil || tok.Scope != tollgate.ScopePackages {
			t.Fatalf("create packages token after grant: %v, %v", tok, err)
		}
		a = must[*tollgate.Account](t)(s.DenyPackages(ctx, "operator", "acme"))
		if a.PackageAccess != tollgate.PackageAccessDenied {
			t.Fatalf("after deny: %s", a.PackageAccess)
		}
	})

	t.Run("EditEveryField", func(t *testing.T) {
		s, c := newService(t, newStore)
		s.CreateAccount(ctx, "operator", "acme")
		s.GrantPackages(ctx, "operator", "acme")
		tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci", Description: "for CI"})
		if err != nil {
			t.Fatal(err)
		}
		c.Add(time.Minute)
		exp := c.Now().Add(48 * time.Hour)
		got, err := s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{
			Name: ptr("ci-2"), Description: ptr(""), Scope: ptr(tollgate.ScopeImages | tollgate.ScopePackages), Expiry: &tollgate.Expiry{At: exp},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "ci-2" || got.Description != "" || got.Scope != tollgate.ScopeImages|tollgate.ScopePackages ||
			got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || !got.UpdatedAt.Equal(c.Now()) {
			t.Fatalf("edited token = %+v", got)
		}
		re, _, _ := s.Token(ctx, tok.ID)
		if re.Name != "ci-2" || !re.ExpiresAt.Equal(exp) || !re.CreatedAt.Equal(tok.CreatedAt) {
			t.Fatalf("stored token = %+v", re)
		}
		got, err = s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{Expiry: &tollgate.Expiry{Never: true}})
		if err != nil || got.ExpiresAt != nil {
			t.Fatalf("edit to never: %+v, %v", got, err)
		}
		_, err = s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{Name: ptr(strings.Repeat("x", 101))})
		wantCode(t, err, tollgate.EINVALID, "name")
		_, err = s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{Name: ptr("bad\x00name")})
		wantCode(t, err, tollgate.EINVALID, "name")
		_, err = s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{Description: ptr(strings.Repeat("d", 501))})
		wantCode(t, err, tollgate.EINVALID, "description")
		_, err = s.EditToken(ctx, "operator", "tok_missing", tollgate.TokenEdit{Name: ptr("x")})
		wantCode(t, err, tollgate.ENOTFOUND, "")
	})

	t.Run("ExpiryRules", func(t *testing.T) {
		s, c := newService(t, newStore)
		s.CreateAccount(ctx, "operator", "acme")
		past := c.Now().Add(-time.Hour)
		_, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "old", Expiry: tollgate.Expiry{At: past}})
		wantCode(t, err, tollgate.EINVALID, "expires")
		if err.Error() != "expires: must be in the future" {
			t.Fatalf("message = %q", err)
		}
		_, _, err = s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "now", Expiry: tollgate.Expiry{Now: true}})
		wantCode(t, err, tollgate.EINVALID, "expires")

		tok, secret, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "short", Expiry: tollgate.Expiry{At: c.Now().Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{Expiry: &tollgate.Expiry{At: past}})
		wantCode(t, err, tollgate.EINVALID, "expires")

		c.Add(2 * time.Hour)
		toks, _, _ := s.ListTokens(ctx, "acme", tollgate.TokenExpired)
		if len(toks) != 1 || toks[0].ID != tok.ID {
			t.Fatalf("expired tokens = %v", toks)
		}
		_, err = s.ExtendToken(ctx, "operator", tok.ID, tollgate.Expiry{At: c.Now().Add(-time.Minute)})
		wantCode(t, err, tollgate.EINVALID, "expires")
		_, err = s.ExtendToken(ctx, "operator", tok.ID, tollgate.Expiry{Now: true})
		wantCode(t, err, tollgate.EINVALID, "expires")
		ext, err := s.ExtendToken(ctx, "operator", tok.ID, tollgate.Expiry{At: c.Now().Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		gt, ga, _ := Authenticate(ctx, s, secret.Reveal())
		if st := gt.Status(ga, c.Now()); st != tollgate.TokenActive || ext.Status(ga, c.Now()) != tollgate.TokenActive {
			t.Fatalf("extended token status = %s, want active", st)
		}
		// "now" expires at once.
		now, err := s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{Expiry: &tollgate.Expiry{Now: true}})
		if err != nil || now.Status(ga, c.Now()) != tollgate.TokenExpired {
			t.Fatalf("expire now: %+v, %v", now, err)
		}
	})

	t.Run("RevocationIsFinal", func(t *testing.T) {
		s, c := newService(t, newStore)
		s.CreateAccount(ctx, "operator", "acme")
		tok, secret, _ := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "gone"})
		rv, err := s.RevokeToken(ctx, "operator", tok.ID)
		if err != nil || rv.RevokedAt == nil {
			t.Fatalf("revoke: %+v, %v", rv, err)
		}
		c.Add(time.Minute)
		again, err := s.RevokeToken(ctx, "operator", tok.ID)
		if err != nil || !again.RevokedAt.Equal(*rv.RevokedAt) {
			t.Fatalf("second revoke changed the token: %+v, %v", again, err)
		}
		_, err = s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{Name: ptr("back")})
		wantCode(t, err, tollgate.ECONFLICT, "")
		_, err = s.ExtendToken(ctx, "operator", tok.ID, tollgate.Expiry{Never: true})
		wantCode(t, err, tollgate.ECONFLICT, "")
		_, err = s.RevealToken(ctx, "operator", tok.ID)
		wantCode(t, err, tollgate.ECONFLICT, "")
		gt, ga, err := Authenticate(ctx, s, secret.Reveal())
		if err != nil || gt.Status(ga, c.Now()) != tollgate.TokenRevoked {
			t.Fatalf("revoked token authenticates as %v, %v", gt, err)
		}
	})

	t.Run("TokenPolicyRoundTripsAndIsAudited", func(t *testing.T) {
		s, c := newService(t, newStore)
		must2(t)(s.CreateAccount(ctx, "operator", "acme"))
		nets, err := tollgate.ParseNetworks("networks", []string{"10.0.0.0/8"})
		if err != nil {
			t.Fatal(err)
		}
		from := c.Now().Add(time.Hour)
		tok, _ := must3(t)(s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci",
			Policy: tollgate.TokenPolicy{Images: []string{"team-a/*", "team-a/*"}, Networks: nets, ValidFrom: &from}}))
		got, ga, err := s.Token(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Policy.Images) != 1 || got.Policy.Images[0] != "team-a/*" || len(got.Policy.Networks) != 1 ||
			got.Policy.ValidFrom == nil || !got.Policy.ValidFrom.Equal(from) {
			t.Fatalf("stored policy = %+v", got.Policy)
		}
		if st := got.Status(ga, c.Now()); st != tollgate.TokenScheduled {
			t.Fatalf("status before valid_from = %s", st)
		}
		edited := must[*tollgate.Token](t)(s.EditToken(ctx, "operator", tok.ID, tollgate.TokenEdit{
			RestrictImages: ptr([]string{}), RestrictPackages: ptr([]string{"os"}), ValidFrom: &time.Time{}}))
		if len(edited.Policy.Images) != 0 || len(edited.Policy.Packages) != 1 || edited.Policy.ValidFrom != nil || len(edited.Policy.Networks) != 1 {
			t.Fatalf("edited policy = %+v", edited.Policy)
		}
		events, err := s.ListAudit(ctx, "acme", tollgate.AuditPage{})
		if err != nil || events[0].Action != tollgate.ActionTokenEdited {
			t.Fatalf("audit = %v %v", events, err)
		}
		for _, k := range []string{"restrict_images", "restrict_packages", "valid_from"} {
			if _, ok := events[0].Changes[k]; !ok {
				t.Errorf("the edit's audit event lacks %s: %+v", k, events[0].Changes)
			}
		}
		// Bad input names its field.
		_, _, err = s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "x", Policy: tollgate.TokenPolicy{Images: []string{"Bad"}}})
		wantCode(t, err, tollgate.EINVALID, "restrict_images[0]")
		exp := tollgate.Expiry{At: c.Now().Add(time.Hour)}
		late := c.Now().Add(2 * time.Hour)
		_, _, err = s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "x", Expiry: exp, Policy: tollgate.TokenPolicy{ValidFrom: &late}})
		wantCode(t, err, tollgate.EINVALID, "valid_from")
	})

	t.Run("RevokeAllAndPauseAllTouchEveryLiveToken", func(t *testing.T) {
		s, c := newService(t, newStore)
		_, def, _, _ := s.CreateAccount(ctx, "operator", "acme")
		must2(t)(s.CreateAccount(ctx, "operator", "beta"))
		ci, _ := must3(t)(s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci"}))
		gone, _ := must3(t)(s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "gone"}))
		must[*tollgate.Token](t)(s.RevokeToken(ctx, "operator", gone.ID))
		must[*tollgate.Token](t)(s.PauseToken(ctx, "operator", ci.ID))
		n, err := s.PauseAllTokens(ctx, "operator", "acme")
		if err != nil || n != 1 {
			t.Fatalf("PauseAllTokens = %d, %v; want 1 (the default token: ci is paused, gone revoked)", n, err)
		}
		if gt, ga, _ := s.Token(ctx, def.ID); gt.Status(ga, c.Now()) != tollgate.TokenPaused {
			t.Fatal("default token not paused")
		}
		n, err = s.RevokeAllTokens(ctx, "operator", "acme")
		if err != nil || n != 2 {
			t.Fatalf("RevokeAllTokens = %d, %v; want 2", n, err)
		}
		toks, _, _ := s.ListTokens(ctx, "acme", tollgate.TokenRevoked)
		if len(toks) != 3 {
			t.Fatalf("revoked after revoke-all: %d of 3", len(toks))
		}
		if toks, _, _ := s.ListTokens(ctx, "beta", tollgate.TokenActive); len(toks) != 1 {
			t.Fatal("another account's token was touched")
		}
		events, _ := s.ListAudit(ctx, "acme", tollgate.AuditPage{})
		if events[0].Action != tollgate.ActionTokensRevokedAll || !strings.Contains(events[0].Changes["tokens_revoked"].To, def.ID) {
			t.Fatalf("audit: %+v", events[0])
		}
		if n, err := s.RevokeAllTokens(ctx, "operator", "acme"); err != nil || n != 0 {
			t.Fatalf("again: %d %v", n, err)
		}
		_, err = s.RevokeAllTokens(ctx, "operator", "nobody")
		wantCode(t, err, tollgate.ENOTFOUND, "")
	})

	t.Run("AccountPolicyBindsEveryToken", func(t *testing.T) {
		s, c := newService(t, newStore)
		_, def, _, _ := s.CreateAccount(ctx, "operator", "acme")
		nets, _ := tollgate.ParseNetworks("networks", []string{"10.0.0.0/8"})
		want := tollgate.AccountPolicy{MaxLifetime: 90 * 24 * time.Hour, Networks: nets, AutoPauseAfter: 30 * 24 * time.Hour, RequireRestrictions: true}
		must[*tollgate.Account](t)(s.SetAccountPolicy(ctx, "operator", "acme", want))
		a := must[*tollgate.Account](t)(s.Account(ctx, "acme"))
		if a.Policy.MaxLifetime != want.MaxLifetime || len(a.Policy.Networks) != 1 || a.Policy.AutoPauseAfter != want.AutoPauseAfter || !a.Policy.RequireRestrictions {
			t.Fatalf("stored account policy = %+v", a.Policy)
		}
		// Lifetime: "never" and too far are refused, within is fine.
		_, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "forever", Expiry: tollgate.Expiry{Never: true}})
		wantCode(t, err, tollgate.EINVALID, "expires")
		_, _, err = s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "far", Expiry: tollgate.Expiry{At: c.Now().Add(100 * 24 * time.Hour)}})
		wantCode(t, err, tollgate.EINVALID, "expires")
		in := tollgate.TokenCreate{Account: "acme", Name: "ok", Expiry: tollgate.Expiry{At: c.Now().Add(30 * 24 * time.Hour)}}
		ok, _ := must3(t)(s.CreateToken(ctx, "operator", in))
		_, err = s.ExtendToken(ctx, "operator", ok.ID, tollgate.Expiry{Never: true})
		wantCode(t, err, tollgate.EINVALID, "expires")
		// Customers must restrict; the operator need not.
		in.Name = "mine"
		_, _, err = s.CreateToken(ctx, tollgate.AccountActor("acme"), in)
		wantCode(t, err, tollgate.EINVALID, "restrict_images")
		in.Policy = tollgate.TokenPolicy{Images: []string{"team-a/*"}}
		must3(t)(s.CreateToken(ctx, tollgate.AccountActor("acme"), in))
		// Auto-pause: the default token, never used, goes once 30 days pass.
		c.Add(31 * 24 * time.Hour)
		n, err := s.AutoPause(ctx)
		if err != nil || n < 1 {
			t.Fatalf("AutoPause = %d, %v", n, err)
		}
		if gt, ga, _ := s.Token(ctx, def.ID); gt.Status(ga, c.Now()) != tollgate.TokenPaused {
			t.Fatal("the stale default token was not paused")
		}
		if n2, err := s.AutoPause(ctx); err != nil || n2 != 0 {
			t.Fatalf("AutoPause again = %d, %v (it must be idempotent)", n2, err)
		}
	})

	t.Run("PauseAndResume", func(t *testing.T) {
		s, c := newService(t, newStore)
		_, tok, _, _ := s.CreateAccount(ctx, "operator", "acme")
		must[*tollgate.Token](t)(s.PauseToken(ctx, "operator", tok.ID))
		gt, ga, _ := s.Token(ctx, tok.ID)
		if st := gt.Status(ga, c.Now()); st != tollgate.TokenPaused {
			t.Fatalf("status after pause = %s", st)
		}
		if toks, _, _ := s.ListTokens(ctx, "acme", tollgate.TokenPaused); len(toks) != 1 {
			t.Fatalf("paused list = %v", toks)
		}
		must[*tollgate.Token](t)(s.PauseToken(ctx, "operator", tok.ID)) // again: nothing changes
		// A suspended account's customer may pause but not resume.
		must[*tollgate.Account](t)(s.SuspendAccount(ctx, "operator", "acme"))
		_, err := s.ResumeToken(ctx, tollgate.AccountActor("acme"), tok.ID)
		wantCode(t, err, tollgate.EFORBIDDEN, "")
		must[*tollgate.Account](t)(s.ResumeAccount(ctx, "operator", "acme"))
		must[*tollgate.Token](t)(s.ResumeToken(ctx, tollgate.AccountActor("acme"), tok.ID))
		gt, ga, _ = s.Token(ctx, tok.ID)
		if st := gt.Status(ga, c.Now()); st != tollgate.TokenActive {
			t.Fatalf("status after resume = %s", st)
		}
		events, _ := s.ListAudit(ctx, "acme", tollgate.AuditPage{})
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
		}
		if !strings.Contains(strings.Join(actions, " "), "token.resumed") || !strings.Contains(strings.Join(actions, " "), "token.paused") {
			t.Fatalf("audit actions = %v", actions)
		}
		must[*tollgate.Token](t)(s.RevokeToken(ctx, "operator", tok.ID))
		_, err = s.PauseToken(ctx, "operator", tok.ID)
		wantCode(t, err, tollgate.ECONFLICT, "")
	})

	t.Run("SuspendAndResume", func(t *testing.T) {
		s, c := newService(t, newStore)
		_, tok, secret, _ := s.CreateAccount(ctx, "operator", "acme")
		must[*tollgate.Account](t)(s.SuspendAccount(ctx, "operator", "acme"))
		gt, ga, _ := Authenticate(ctx, s, secret.Reveal())
		if st := gt.Status(ga, c.Now()); st != tollgate.TokenSuspended {
			t.Fatalf("status while suspended = %s", st)
		}
		toks, _, _ := s.ListTokens(ctx, "acme", tollgate.TokenSuspended)
		if len(toks) != 1 || toks[0].ID != tok.ID {
			t.Fatalf("suspended list = %v", toks)
		}
		must[*tollgate.Account](t)(s.ResumeAccount(ctx, "operator", "acme"))
		gt, ga, _ = Authenticate(ctx, s, secret.Reveal())
		if st := gt.Status(ga, c.Now()); st != tollgate.TokenActive {
			t.Fatalf("status after resume = %s", st)
		}
		_, err := s.SuspendAccount(ctx, "operator", "nobody")
		wantCode(t, err, tollgate.ENOTFOUND, "")
	})

	t.Run("RevealAndAuthenticate", func(t *testing.T) {
		s, _ := newService(t, newStore)
		s.CreateAccount(ctx, "operator", "acme")
		tok, secret, _ := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "r"})
		got, err := s.RevealToken(ctx, "account:acme", tok.ID)
		if err != nil || got.Reveal() != secret.Reveal() {
			t.Fatalf("reveal mismatch: %v", err)
		}
		flipped := secret.Reveal()[:len(secret.Reveal())-1] + "x"
		if flipped == secret.Reveal() {
			flipped = secret.Reveal()[:len(secret.Reveal())-1] + "y"
		}
		for _, bad := range []string{"", "tg_", flipped, "Bearer " + secret.Reveal(), tollgate.NewSecret(tollgate.TokenPrefix).Reveal()} {
			_, _, err := Authenticate(ctx, s, bad)
			wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		}
	})

	t.Run("SubscriptionAndAccountKey", func(t *testing.T) {
		s, _ := newService(t, newStore)
		s.CreateAccount(ctx, "operator", "acme")
		a, err := s.SetSubscription(ctx, "operator", "acme", tollgate.Subscription{Images: []string{"nginx", "python*", "nginx"}, Packages: []string{"os"}})
		if err != nil || len(a.Subscription.Images) != 2 || !a.Subscription.EntitledImage("python3") {
			t.Fatalf("subscription = %+v, %v", a, err)
		}
		_, err = s.SetSubscription(ctx, "operator", "acme", tollgate.Subscription{Images: []string{"ok", "Bad Pattern"}})
		wantCode(t, err, tollgate.EINVALID, "images[1]")
		key, err := s.CreateAccountKey(ctx, "operator", "acme")
		if err != nil {
			t.Fatal(err)
		}
		ka, err := s.AccountForKey(ctx, key.Reveal())
		if err != nil || ka.Name != "acme" {
			t.Fatalf("AccountForKey = %v, %v", ka, err)
		}
		key2, _ := s.CreateAccountKey(ctx, "operator", "acme")
		_, err = s.AccountForKey(ctx, key.Reveal())
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		if _, err := s.AccountForKey(ctx, key2.Reveal()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("LiteralStrings", func(t *testing.T) {
		s, _ := newService(t, newStore)
		s.CreateAccount(ctx, "operator", "acme")
		for _, name := range []string{`x'; DROP TABLE tokens; --`, `100% _match_ \ "quoted"`, "ünïcødé ✓", "$1 ?"} {
			tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: name, Description: name})
			if err != nil {
				t.Fatal(err)
			}
			got, _, _ := s.Token(ctx, tok.ID)
			if got.Name != name || got.Description != name {
				t.Fatalf("stored %q as %q", name, got.Name)
			}
		}
	})

	t.Run("AuditLog", func(t *testing.T) {
		s, c := newService(t, newStore)
		_, def, defSecret, _ := s.CreateAccount(ctx, "operator", "acme")
		s.CreateAccount(ctx, "operator", "other")
		c.Add(time.Second)
		s.RequestPackages(ctx, "account:acme", "acme")
		s.GrantPackages(ctx, "operator", "acme")
		s.SetSubscription(ctx, "operator", "acme", tollgate.Subscription{Images: []string{"nginx"}})
		tok, secret, _ := s.CreateToken(ctx, "account:acme", tollgate.TokenCreate{Account: "acme", Name: "ci"})
		s.EditToken(ctx, "account:acme", tok.ID, tollgate.TokenEdit{Name: ptr("ci-2")})
		s.ExtendToken(ctx, "account:acme", tok.ID, tollgate.Expiry{At: c.Now().Add(time.Hour)})
		s.RevokeToken(ctx, "operator", tok.ID)
		s.SuspendAccount(ctx, "operator", "acme")
		s.ResumeAccount(ctx, "operator", "acme")
		s.DenyPackages(ctx, "operator", "acme")

		var all []*tollgate.AuditEvent
		page := tollgate.AuditPage{Limit: 3}
		for {
			evs, err := s.ListAudit(ctx, "acme", page)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, evs...)
			if len(evs) < page.Limit {
				break
			}
			page.Before = evs[len(evs)-1].ID
		}
		var actions []string
		for i, e := range all {
			actions = append(actions, e.Action)
			if i > 0 && e.ID >= all[i-1].ID {
				t.Fatalf("not newest first: %d after %d", e.ID, all[i-1].ID)
			}
			if e.AccountID != def.AccountID {
				t.Fatalf("event of another account: %+v", e)
			}
			raw, _ := json.Marshal(e)
			if strings.Contains(string(raw), secret.Reveal()) || strings.Contains(string(raw), defSecret.Reveal()) {
				t.Fatalf("audit event holds a secret: %s", raw)
			}
		}
		want := []string{
			tollgate.ActionPackagesDenied, tollgate.ActionAccountResumed, tollgate.ActionAccountSuspended,
			tollgate.ActionTokenRevoked, tollgate.ActionTokenExtended, tollgate.ActionTokenEdited, tollgate.ActionTokenCreated,
			tollgate.ActionSubscriptionChange, tollgate.ActionPackagesGranted, tollgate.ActionTokenEdited,
			tollgate.ActionPackagesRequested, tollgate.ActionTokenCreated, tollgate.ActionAccountCreated,
		}
		if strings.Join(actions, " ") != strings.Join(want, " ") {
			t.Fatalf("actions =\n%v\nwant\n%v", actions, want)
		}
		edit := all[5]
		if edit.Actor != "account:acme" || edit.Target != tok.ID || edit.Changes["name"] != (tollgate.Change{From: "ci", To: "ci-2"}) || len(edit.Changes) != 1 {
			t.Fatalf("edit event = %+v", edit)
		}
		if !all[len(all)-1].Time.Equal(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)) {
			t.Fatalf("first event time = %v", all[len(all)-1].Time)
		}
		_, err := s.ListAudit(ctx, "acme", tollgate.AuditPage{Limit: tollgate.MaxAuditPage + 1})
		wantCode(t, err, tollgate.EINVALID, "limit")
	})
}

func first[A, B any](a A, _ B, err error) (A, error) { return a, err }
