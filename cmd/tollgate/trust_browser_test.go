package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestBrowserTrustPolicies drives the console's Trust policies page in
// Chromium against `tollgate dev` and a real OIDC issuer: a bad claim
// rule is refused naming it; a policy created with the form lets a GitHub
// Actions job's token pull (crane, the token as the password), and the
// page then lists the credential with the job's identity and its last
// use; deleting the policy refuses the token at once. With
// TOLLGATE_SCREENSHOTS=DIR: trust-policies.png.
func TestBrowserTrustPolicies(t *testing.T) {
	p := newPage(t)
	d := startDev(t, t.TempDir(), &testenv.Buffer{})
	base := d.Env["TOLLGATE_URL"]
	host := strings.TrimPrefix(base, "http://")
	is, err := oidcissuer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	p.signInDemo(d)

	fill := func(claims string) {
		p.do("fill the form", chromedp.Navigate(base+"/console/trust"), chromedp.WaitVisible(chromedp.ID("new-trust")),
			chromedp.SendKeys(chromedp.ID("trust-name"), "release builds"),
			chromedp.SendKeys(chromedp.ID("trust-issuer"), is.URL),
			chromedp.SendKeys(chromedp.ID("trust-claims"), claims),
			chromedp.SendKeys(chromedp.ID("trust-images"), "demo/**"))
	}
	fill("repository=acme/app\nref~**")
	p.do("submit a rule that matches anything", chromedp.Click(chromedp.ID("create-trust")), chromedp.WaitVisible(chromedp.ID("trust-error")))
	if got := p.text("#trust-error"); !strings.Contains(got, "claims[1]") {
		t.Fatalf("error = %q, want it to name claims[1]", got)
	}
	if p.count("section.trust") != 0 {
		t.Fatal("a refused policy was created")
	}
	fill("repository=acme/app\nref~refs/heads/*")
	p.do("create", chromedp.Click(chromedp.ID("create-trust")), chromedp.WaitVisible(chromedp.CSS(`section.trust[data-name="release builds"]`)))
	if got := p.text(`section.trust dd.audience`); got != "tollgate:demo" {
		t.Fatalf("audience = %q, want the default tollgate:demo", got)
	}

	// A GitHub Actions job pulls with its OIDC token as the password.
	jwt := is.Sign(oidcissuer.GitHubActions("acme/app", "tollgate:demo", time.Now()))
	opts := []crane.Option{crane.Insecure, crane.WithAuth(&authn.Basic{Username: "oidc", Password: jwt})}
	if _, err := crane.Manifest(host+"/demo/hello:latest", opts...); err != nil {
		t.Fatalf("pull with the job's OIDC token: %v", err)
	}
	if err := d.Main.Cache.Flush(context.Background()); err != nil { // last used
		t.Fatal(err)
	}
	p.do("reload", chromedp.Navigate(base+"/console/trust"), chromedp.WaitVisible(chromedp.CSS(`tr[data-credential]`)))
	row := p.text(`tr[data-credential]`)
	for _, want := range []string{"repo:acme/app:ref:refs/heads/main", "repository=acme/app", "ref=refs/heads/main", "active", "from 127.0.0.1"} {
		if !strings.Contains(row, want) {
			t.Errorf("credential row %q lacks %q", row, want)
		}
	}
	if strings.Contains(p.eval(`document.body.innerText`), "tge_") {
		t.Fatal("the page shows an ephemeral secret")
	}
	p.shot("trust-policies")

	// The tokens page does not list the credential among the tokens.
	p.do("tokens", chromedp.Navigate(base+"/console/tokens"), chromedp.WaitVisible(chromedp.ID("token-count")))
	if strings.Contains(p.eval(`document.body.innerText`), "oidc: repo:acme/app") {
		t.Error("the tokens page lists an ephemeral credential")
	}

	p.do("delete", chromedp.Navigate(base+"/console/trust"), chromedp.WaitVisible(chromedp.CSS(`form.delete-trust`)),
		chromedp.Click(chromedp.CSS(`form.delete-trust button`)), chromedp.WaitVisible(chromedp.ID("no-trust")))
	if _, err := crane.Manifest(host+"/demo/hello:latest", opts...); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("pull after the policy was deleted: %v, want refused", err)
	}
}
