package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/quota"
)

// clientFrom is an HTTP client whose connections come from local address
// ip (127.0.0.2, 127.0.0.3, …: all loopback on Linux).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

func (e *env) tokenFrom(c *http.Client, secret string, scopes ...string) (int, string) {
	e.t.Helper()
	q := "/token?service=" + e.host
	for _, s := range scopes {
		q += "&scope=" + s
	}
	req, _ := http.NewRequest("GET", e.srv.URL+q, nil)
	req.SetBasicAuth("tollgate", secret)
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	json.NewDecoder(resp.Body).Decode(&tr)
	return resp.StatusCode, tr.Token
}

// TestRestrictedTokenPullsOnlyItsImages: a token restricted to
// demo/hello pulls it with a real client, and is refused demo/other,
// which its account is entitled to, with a message saying why.
func TestRestrictedTokenPullsOnlyItsImages(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{Policy: tollgate.TokenPolicy{Images: []string{"demo/hello"}}})
	auth := remote.WithAuth(&authn.Basic{Username: "tollgate", Password: secret})
	ref, _ := name.ParseReference(e.ref("demo/hello:latest"), name.Insecure)
	if _, err := remote.Index(ref, auth); err != nil {
		t.Fatalf("restricted token, allowed image: %v", err)
	}
	other, _ := name.ParseReference(e.ref("demo/other:v1"), name.Insecure)
	_, err := remote.Image(other, auth)
	if err == nil || !strings.Contains(err.Error(), "restrictions") {
		t.Fatalf("restricted token, other entitled image: %v", err)
	}
	// /token never grants it, and the catalog does not show it.
	jwt := e.bearer(secret, "repository:demo/other:pull", "registry:catalog:*")
	resp := e.do("GET", "/v2/_catalog", map[string]string{"Authorization": "Bearer " + jwt})
	body, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(body), "demo/other") {
		t.Fatalf("catalog shows a repository outside the restriction: %s", body)
	}
	resp = e.do("GET", "/v2/demo/other/manifests/v1", map[string]string{"Authorization": "Bearer " + jwt})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("outside the restriction: %d, want 403 DENIED", resp.StatusCode)
	}
	// A restriction never widens: private/secret stays refused alike.
	_, wide := e.token(tollgate.TokenCreate{Name: "wide", Policy: tollgate.TokenPolicy{Images: []string{"**"}}})
	wantChallenge(t, e.do("GET", "/v2/private/secret/manifests/latest", map[string]string{"Authorization": "Basic " + basicAuth("u", wide)}),
		"repository:private/secret:pull", "insufficient_scope")
}

// TestNetworkBoundTokenRefusedElsewhere: a token limited to 127.0.0.2/32
// works from there and is refused from 127.0.0.3, on /token, with a
// JWT issued earlier, and on Basic, with a message naming the rule and
// never the list.
func TestNetworkBoundTokenRefusedElsewhere(t *testing.T) {
	e := newEnv(t)
	nets, _ := tollgate.ParseNetworks("networks", []string{"127.0.0.2/32"})
	_, secret := e.token(tollgate.TokenCreate{Policy: tollgate.TokenPolicy{Networks: nets}})
	inside, outside := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	code, jwt := e.tokenFrom(inside, secret, "repository:demo/hello:pull")
	if code != 200 {
		t.Fatalf("/token from inside: %d", code)
	}
	if code, _ := e.tokenFrom(outside, secret, "repository:demo/hello:pull"); code != http.StatusForbidden {
		t.Fatalf("/token from outside: %d, want 403", code)
	}
	get := func(c *http.Client, auth string) (int, string) {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v2/demo/hello/tags/list", nil)
		req.Header.Set("Authorization", auth)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(inside, "Bearer "+jwt); code != 200 {
		t.Fatalf("JWT from inside: %d", code)
	}
	code, body := get(outside, "Bearer "+jwt)
	if code != http.StatusForbidden || !strings.Contains(body, "allowed-networks") || strings.Contains(body, "127.0.0.2") {
		t.Fatalf("JWT carried outside: %d %s", code, body)
	}
	if code, _ := get(outside, "Basic "+basicAuth("u", secret)); code != http.StatusForbidden {
		t.Fatalf("Basic from outside: %d", code)
	}
}

// TestPausedTokenRefusedUntilResumed: pausing bites at once, like a
// revocation (earlier JWTs too), and resuming brings the token back.
func TestPausedTokenRefusedUntilResumed(t *testing.T) {
	e := newEnv(t)
	tok, secret := e.token(tollgate.TokenCreate{})
	jwt := e.bearer(secret, "repository:demo/hello:pull")
	ctx := context.Background()
	if _, err := e.svc.PauseToken(ctx, "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	resp := e.do("GET", "/v2/demo/hello/tags/list", map[string]string{"Authorization": "Bearer " + jwt})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || !strings.Contains(string(body), "paused") {
		t.Fatalf("paused token's JWT: %d %s", resp.StatusCode, body)
	}
	if got := e.tokenStatus(secret); got != 401 {
		t.Fatalf("paused token at /token: %d", got)
	}
	if _, err := e.svc.ResumeToken(ctx, "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	if resp := e.do("GET", "/v2/demo/hello/tags/list", map[string]string{"Authorization": "Bearer " + jwt}); resp.StatusCode != 200 {
		t.Fatalf("resumed token's JWT: %d", resp.StatusCode)
	}
}

// TestScheduledTokenWorksFromItsDate: a token valid from tomorrow is
// refused today and works once the date has come.
func TestScheduledTokenWorksFromItsDate(t *testing.T) {
	e := newEnv(t)
	from := e.clock.Now().Add(24 * time.Hour)
	_, secret := e.token(tollgate.TokenCreate{Policy: tollgate.TokenPolicy{ValidFrom: &from}})
	if got := e.tokenStatus(secret); got != 401 {
		t.Fatalf("before valid_from: %d", got)
	}
	e.clock.Add(24 * time.Hour)
	if got := e.tokenStatus(secret); got != 200 {
		t.Fatalf("from valid_from on: %d", got)
	}
}

// TestPackageRestrictionRefusesOtherRepositories: a token restricted to
// one package repository gets 403 with the reason on another that its
// account is entitled to, as apt prints it.
func TestPackageRestrictionRefusesOtherRepositories(t *testing.T) {
	e := newPkgEnv(t)
	e.makeAccount("delta", true, tollgate.ScopePackages)
	_, secret, err := e.svc.CreateToken(context.Background(), "operator", tollgate.TokenCreate{Account: "delta", Name: "r",
		Scope: tollgate.ScopePackages, Policy: tollgate.TokenPolicy{Packages: []string{"unsigned"}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.get("GET", inRelease, secret.Reveal())
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "restricted") {
		t.Fatalf("restricted package token on os: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.get("GET", "/apt/unsigned/dists/stable/Release", secret.Reveal()); resp.StatusCode == http.StatusForbidden {
		t.Fatal("the repository the token is restricted to was refused")
	}
}

// TestRevokeAllStopsEveryTokenAtOnce: the incident button refuses every
// token of the account, and the JWTs they already hold, on the next
// request.
func TestRevokeAllStopsEveryTokenAtOnce(t *testing.T) {
	e := newEnv(t)
	_, a := e.token(tollgate.TokenCreate{Name: "a"})
	_, b := e.token(tollgate.TokenCreate{Name: "b"})
	jwtA, jwtB := e.bearer(a, "repository:demo/hello:pull"), e.bearer(b, "repository:demo/hello:pull")
	if n, err := e.svc.RevokeAllTokens(context.Background(), "operator", e.acctName); err != nil || n != 3 { // with the default token
		t.Fatalf("RevokeAllTokens = %d, %v", n, err)
	}
	for _, jwt := range []string{jwtA, jwtB} {
		wantChallenge(t, e.do("GET", "/v2/demo/hello/tags/list", map[string]string{"Authorization": "Bearer " + jwt}), "repository:demo/hello:pull", "invalid_token")
	}
	for _, s := range []string{a, b} {
		if got := e.tokenStatus(s); got != http.StatusUnauthorized {
			t.Fatalf("/token after revoke-all: %d", got)
		}
	}
}

// TestPullCapRefusesTheNextPull: a token capped at 2 pulls a month pulls
// twice (with a real client), then the next manifest GET is refused with
// the cap and its reset date; a byte cap stops downloads once reached.
func TestPullCapRefusesTheNextPull(t *testing.T) {
	e := newEnv(t, func(_ *env, o *Options) {
		if o != nil {
			o.Quota = quota.New(quota.Options{Now: e0Clock(o)})
		}
	})
	_, secret := e.token(tollgate.TokenCreate{Policy: tollgate.TokenPolicy{MaxPulls: 2}})
	auth := remote.WithAuth(&authn.Basic{Username: "tollgate", Password: secret})
	ref, _ := name.ParseReference(e.ref("demo/other:v1"), name.Insecure)
	for i := range 2 {
		if _, err := remote.Image(ref, auth); err != nil {
			t.Fatalf("pull %d within the cap: %v", i+1, err)
		}
	}
	_, err := remote.Image(ref, auth)
	reset := tollgate.CapResetsAt(e.clock.Now()).Format("2006-01-02")
	if err == nil || !strings.Contains(err.Error(), "monthly pull cap (2)") || !strings.Contains(err.Error(), reset) {
		t.Fatalf("third pull: %v", err)
	}

	_, small := e.token(tollgate.TokenCreate{Name: "bytes", Policy: tollgate.TokenPolicy{MaxBytes: 1}})
	jwt := e.bearer(small, "repository:demo/hello:pull")
	blob := "/v2/demo/hello/manifests/" + e.hello.Digest
	if r := e.do("GET", blob, map[string]string{"Authorization": "Bearer " + jwt}); r.StatusCode != 200 {
		t.Fatalf("first download under the byte cap: %d", r.StatusCode)
	}
	r := e.do("GET", blob, map[string]string{"Authorization": "Bearer " + jwt})
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "download cap") {
		t.Fatalf("download past the byte cap: %d %s", r.StatusCode, body)
	}
}

// e0Clock is the env's clock as the quota's, read from the options.
func e0Clock(o *Options) func() time.Time { return o.Now }

// TestAccountNetworksBindEveryToken: an operator's account policy limits
// every token of the account to its networks, even a token without any
// networks of its own, at once.
func TestAccountNetworksBindEveryToken(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	nets, _ := tollgate.ParseNetworks("networks", []string{"127.0.0.2/32"})
	if _, err := e.svc.SetAccountPolicy(context.Background(), "operator", e.acctName, tollgate.AccountPolicy{Networks: nets}); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.tokenFrom(clientFrom("127.0.0.2"), secret); code != 200 {
		t.Fatalf("from the account's network: %d", code)
	}
	if code, _ := e.tokenFrom(clientFrom("127.0.0.3"), secret); code != http.StatusForbidden {
		t.Fatalf("from elsewhere: %d, want 403", code)
	}
}
