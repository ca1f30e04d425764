package proxy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
	"github.com/tollgate/tollgate/internal/ratelimit"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/oidc"
)

// keyless is an env whose account acme trusts a GitHub-Actions-shaped
// issuer for repository acme/app, limited to demo/**.
type keyless struct {
	*env
	issuer *oidcissuer.Issuer
	policy *tollgate.TrustPolicy
}

func newKeyless(t *testing.T, opts ...envOption) *keyless {
	t.Helper()
	return newKeylessLogged(t, nil, opts...)
}

// newKeylessLogged is newKeyless with the edge's and the exchange's logs
// (debug level) written to logs, when it is not nil.
func newKeylessLogged(t *testing.T, logs io.Writer, opts ...envOption) *keyless {
	t.Helper()
	is, err := oidcissuer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	k := &keyless{issuer: is}
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts = append(opts, func(e *env, o *Options) {
		if o != nil {
			o.Exchanger = oidc.NewExchanger(oidc.New(oidc.Options{AllowLoopback: true, Now: e.clock.Now}), e.svc, log)
			if log != nil {
				o.Logger = log
			}
		}
	})
	k.env = newEnv(t, opts...)
	k.policy, err = k.svc.CreateTrustPolicy(t.Context(), "operator", "acme", tollgate.TrustPolicy{
		Name: "ci", Issuer: is.URL, Rules: []tollgate.ClaimRule{{Claim: "repository", Value: "acme/app"}},
		Restrict: tollgate.TokenPolicy{Images: []string{"demo/**"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// idToken is a GitHub Actions job's token for repository.
func (k *keyless) idToken(repository string) string {
	return k.issuer.Sign(oidcissuer.GitHubActions(repository, "tollgate:acme", k.clock.Now()))
}

func (k *keyless) ephemeral() []*tollgate.Token {
	k.t.Helper()
	toks, _, err := k.svc.ListTokens(k.t.Context(), "acme", "")
	if err != nil {
		k.t.Fatal(err)
	}
	var out []*tollgate.Token
	for _, t := range toks {
		if t.Ephemeral() {
			out = append(out, t)
		}
	}
	return out
}

// exchange posts to /oauth2/token and decodes the JSON answer.
func (k *keyless) exchange(form url.Values) (int, http.Header, map[string]any) {
	k.t.Helper()
	resp, err := http.PostForm(k.srv.URL+"/oauth2/token", form)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		k.t.Fatalf("answer is not JSON: %d %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, body
}

func exchangeForm(jwt string) url.Values {
	return url.Values{"grant_type": {grantTokenExchange}, "subject_token": {jwt}, "subject_token_type": {tokenTypeJWT}}
}

// TestOIDCTokenAsPasswordPullsWithCrane: docker login -u oidc --password
// "$ID_TOKEN", as crane does it (GET /token with Basic), pulls what the
// policy allows and nothing else; repeated logins reuse one credential.
func TestOIDCTokenAsPasswordPullsWithCrane(t *testing.T) {
	k := newKeyless(t)
	jwt := k.idToken("acme/app")
	opts := []crane.Option{crane.Insecure, crane.WithAuth(&authn.Basic{Username: "oidc", Password: jwt})}
	for range 3 {
		if _, err := crane.Pull(k.ref("demo/hello:latest"), opts...); err != nil {
			t.Fatalf("pull with the OIDC token: %v", err)
		}
	}
	if _, err := crane.Digest(k.ref("private/secret:latest"), opts...); err == nil {
		t.Fatal("pulled outside the subscription")
	}
	eph := k.ephemeral()
	if len(eph) != 1 {
		t.Fatalf("%d ephemeral credentials for one OIDC token presented again and again, want 1", len(eph))
	}
	if eph[0].Identity.Subject != "repo:acme/app:ref:refs/heads/main" {
		t.Fatalf("identity %+v", eph[0].Identity)
	}
	// The same job's token for another repository is refused.
	bad := []crane.Option{crane.Insecure, crane.WithAuth(&authn.Basic{Username: "oidc", Password: k.idToken("acme/other")})}
	if _, err := crane.Digest(k.ref("demo/hello:latest"), bad...); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("wrong repository claim: %v", err)
	}
}

// TestOIDCTokenOnEveryPasswordPath: containerd's POST /token password
// grant and Basic on /v2/ take the OIDC token too.
func TestOIDCTokenOnEveryPasswordPath(t *testing.T) {
	k := newKeyless(t)
	jwt := k.idToken("acme/app")
	resp, err := http.PostForm(k.srv.URL+"/token", url.Values{"grant_type": {"password"}, "username": {"oidc"}, "password": {jwt},
		"service": {k.host}, "scope": {"repository:demo/hello:pull"}, "client_id": {"containerd"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /token with an OIDC password: %d", resp.StatusCode)
	}
	r := k.do("GET", "/v2/demo/hello/tags/list", map[string]string{"Authorization": "Basic " + basicAuth("oidc", jwt)})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("Basic on /v2/ with an OIDC password: %d", r.StatusCode)
	}
}

// TestTokenExchangeContract is the contract tollgate-credential-provider
// relies on: RFC 8693 in, an ephemeral credential out, usable as a
// password by any client with any user name; RFC 6749 §5.2 errors.
func TestTokenExchangeContract(t *testing.T) {
	k := newKeyless(t)
	for _, typ := range []string{tokenTypeJWT, tokenTypeIDToken} {
		form := exchangeForm(k.idToken("acme/app"))
		form.Set("subject_token_type", typ)
		status, hdr, body := k.exchange(form)
		if status != http.StatusOK || hdr.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %v (Cache-Control %q)", typ, status, body, hdr.Get("Cache-Control"))
		}
		secret, _ := body["access_token"].(string)
		exp, _ := body["expires_in"].(float64)
		if !strings.HasPrefix(secret, "tge_") || body["issued_token_type"] != tokenTypeAccess || body["token_type"] != "N_A" || exp < 500 || exp > 15*60 {
			t.Fatalf("answer %v", body)
		}
		if _, err := crane.Pull(k.ref("demo/hello:latest"), crane.Insecure, crane.WithAuth(&authn.Basic{Username: "tollgate", Password: secret})); err != nil {
			t.Fatalf("pull with the exchanged credential: %v", err)
		}
	}
	for name, tc := range map[string]struct {
		form   url.Values
		status int
		err    string
	}{
		"wrong grant":      {url.Values{"grant_type": {"password"}, "subject_token": {k.idToken("acme/app")}, "subject_token_type": {tokenTypeJWT}}, 400, "unsupported_grant_type"},
		"no subject token": {url.Values{"grant_type": {grantTokenExchange}, "subject_token_type": {tokenTypeJWT}}, 400, "invalid_request"},
		"wrong token type": {url.Values{"grant_type": {grantTokenExchange}, "subject_token": {k.idToken("acme/app")}, "subject_token_type": {"urn:ietf:params:oauth:token-type:saml2"}}, 400, "invalid_request"},
		"wrong repository": {exchangeForm(k.idToken("acme/other")), 400, "invalid_grant"},
		"a registry token": {exchangeForm(tollgate.NewSecret(tollgate.TokenPrefix).Reveal()), 400, "invalid_grant"},
		"unknown kid":      {exchangeForm(k.issuer.SignUnknownKey(oidcissuer.GitHubActions("acme/app", "tollgate:acme", k.clock.Now()))), 400, "invalid_grant"},
		"another audience": {exchangeForm(k.issuer.Sign(oidcissuer.GitHubActions("acme/app", "tollgate:other", k.clock.Now()))), 400, "invalid_grant"},
		"requested refresh": {func() url.Values {
			f := exchangeForm(k.idToken("acme/app"))
			f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")
			return f
		}(), 400, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			status, hdr, body := k.exchange(tc.form)
			if status != tc.status || body["error"] != tc.err || hdr.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v, want %d %s", status, body, tc.status, tc.err)
			}
			if d, _ := body["error_description"].(string); strings.Contains(d, "eyJ") {
				t.Fatalf("error echoes the token: %q", d)
			}
		})
	}
	r := k.do("GET", "/oauth2/token", nil)
	if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /oauth2/token: %d", r.StatusCode)
	}
}

// TestDeletingAPolicyEndsItsCredentialsAtOnce: on the next request, as a
// revocation would (the token cache is invalidated by the delete).
func TestDeletingAPolicyEndsItsCredentialsAtOnce(t *testing.T) {
	k := newKeyless(t)
	jwt := k.idToken("acme/app")
	_, _, body := k.exchange(exchangeForm(jwt))
	secret := body["access_token"].(string)
	if got := k.tokenStatus(secret); got != http.StatusOK {
		t.Fatalf("fresh credential: %d", got)
	}
	if got := k.tokenStatus(jwt); got != http.StatusOK {
		t.Fatalf("OIDC token as password: %d", got)
	}
	if err := k.svc.DeleteTrustPolicy(t.Context(), "operator", k.policy.ID); err != nil {
		t.Fatal(err)
	}
	if got := k.tokenStatus(secret); got != http.StatusUnauthorized {
		t.Fatalf("credential of a deleted policy: %d, want 401", got)
	}
	if got := k.tokenStatus(jwt); got != http.StatusUnauthorized {
		t.Fatalf("OIDC token after its policy was deleted: %d, want 401", got)
	}
}

// TestEditedPolicyAppliesToTheNextLogin: the credentials issued under
// the old rules end; the same OIDC token presented again is exchanged
// under the new ones.
func TestEditedPolicyAppliesToTheNextLogin(t *testing.T) {
	k := newKeyless(t)
	jwt := k.idToken("acme/app")
	if got := k.tokenStatus(jwt); got != http.StatusOK {
		t.Fatalf("OIDC token as password: %d", got)
	}
	next := *k.policy
	next.Lifetime = time.Hour
	if _, err := k.svc.EditTrustPolicy(t.Context(), "operator", k.policy.ID, next); err != nil {
		t.Fatal(err)
	}
	if got := k.tokenStatus(jwt); got != http.StatusOK {
		t.Fatalf("OIDC token after an edit that still admits it: %d", got)
	}
	eph := k.ephemeral()
	if len(eph) != 2 || eph[0].RevokedAt == nil || eph[1].RevokedAt != nil {
		t.Fatalf("after the edit: %d credentials, want the old one revoked and a new one", len(eph))
	}
	next.Rules = []tollgate.ClaimRule{{Claim: "repository", Value: "acme/other"}}
	if _, err := k.svc.EditTrustPolicy(t.Context(), "operator", k.policy.ID, next); err != nil {
		t.Fatal(err)
	}
	if got := k.tokenStatus(jwt); got != http.StatusUnauthorized {
		t.Fatalf("OIDC token the edited policy no longer admits: %d, want 401", got)
	}
}

// TestForgedOIDCTokensAreLimitedLikeGuesses: failed exchanges are charged
// to the address; once its bucket is empty the answer is 429 slow_down,
// while a valid OIDC token still passes.
func TestForgedOIDCTokensAreLimitedLikeGuesses(t *testing.T) {
	lim := ratelimit.New(ratelimit.Options{PerMinute: 1, Burst: 3})
	k := newKeyless(t, withLimiter(lim))
	limited := false
	for i := range 10 {
		forged := oidcissuer.GitHubActions("acme/app", "tollgate:acme", k.clock.Now())
		forged["jti"] = i // each a different guess
		status, hdr, body := k.exchange(exchangeForm(k.issuer.SignNone(forged)))
		if status == http.StatusTooManyRequests {
			limited = true
			if body["error"] != "slow_down" || hdr.Get("Retry-After") == "" {
				t.Fatalf("429 answer %v", body)
			}
		}
	}
	if !limited {
		t.Fatal("ten forged tokens from one address were never limited")
	}
	if status, _, body := k.exchange(exchangeForm(k.idToken("acme/app"))); status != http.StatusOK {
		t.Fatalf("a valid OIDC token from the exhausted address: %d %v", status, body)
	}
}

// TestOIDCTokensAndCredentialsNeverReachTheLogs: neither the OIDC token
// (nor its signature) nor the ephemeral credential appears in the logs,
// at debug level, whether the exchange succeeds or is refused.
func TestOIDCTokensAndCredentialsNeverReachTheLogs(t *testing.T) {
	logs := &testenv.Buffer{}
	k := newKeylessLogged(t, logs)
	good, bad := k.idToken("acme/app"), k.idToken("acme/other")
	_, _, body := k.exchange(exchangeForm(good))
	secret, _ := body["access_token"].(string)
	k.exchange(exchangeForm(bad))
	k.exchange(exchangeForm(k.issuer.SignNone(oidcissuer.GitHubActions("acme/app", "tollgate:acme", k.clock.Now()))))
	k.tokenStatus(good)
	k.tokenStatus(bad)
	k.tokenStatus(secret)
	out := logs.String()
	if !strings.Contains(out, "oidc token exchanged") || !strings.Contains(out, "claims_match_no_policy") {
		t.Fatalf("the exchanges were not logged at all:\n%s", out)
	}
	for _, jwt := range []string{good, bad} {
		parts := strings.Split(jwt, ".")
		for _, leak := range []string{jwt, parts[1], parts[2]} {
			if strings.Contains(out, leak) {
				t.Fatal("an OIDC token (or part of it) is in the logs")
			}
		}
	}
	if secret == "" || strings.Contains(out, secret) || strings.Contains(out, "tge_") {
		t.Fatal("the ephemeral credential is in the logs")
	}
}

// TestOIDCTokenAsBasicPasswordOnPackageRoutes: apt's auth.conf.d and
// apk's URL carry the OIDC token like a registry token; the policy's
// scope and the account's package access still decide.
func TestOIDCTokenAsBasicPasswordOnPackageRoutes(t *testing.T) {
	e := newPkgEnv(t)
	is, err := oidcissuer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	e.edge.front.exchanger = oidc.NewExchanger(oidc.New(oidc.Options{AllowLoopback: true, Now: e.clock.Now}), e.svc, nil)
	rules := []tollgate.ClaimRule{{Claim: "repository", Value: "acme/app"}}
	if _, err := e.svc.CreateTrustPolicy(t.Context(), "operator", "acme", tollgate.TrustPolicy{
		Name: "pkgs", Issuer: is.URL, Rules: rules, Scope: tollgate.ScopePackages}); err != nil {
		t.Fatal(err)
	}
	jwt := is.Sign(oidcissuer.GitHubActions("acme/app", "tollgate:acme", e.clock.Now()))
	for _, path := range []string{inRelease, "/apk/os/x86_64/APKINDEX.tar.gz"} {
		if resp, body := e.get("GET", path, jwt); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s with the OIDC token: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, _ := e.get("GET", "/apt/restricted/dists/stable/InRelease", jwt); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a repository the subscription lacks: %d, want 403", resp.StatusCode)
	}
	other := is.Sign(oidcissuer.GitHubActions("acme/other", "tollgate:acme", e.clock.Now()))
	if resp, _ := e.get("GET", inRelease, other); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("another repository's token: %d, want 401 with the Basic challenge", resp.StatusCode)
	}
}
