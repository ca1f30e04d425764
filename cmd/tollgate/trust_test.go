package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
)

// TestTrustPolicyThroughCLI: create, use, show, edit and delete a trust
// policy as an operator would, with a real issuer; errors name the field.
func TestTrustPolicyThroughCLI(t *testing.T) {
	c, _ := devCLI(t)
	env := c.env
	is, err := oidcissuer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)

	errs := c.fail("trust", "create", "--account", "demo", "--name", "ci", "--issuer", is.URL)
	if !strings.Contains(errs, "claims: required (--claim)") {
		t.Fatalf("no --claim: %s", errs)
	}
	errs = c.fail("trust", "create", "--account", "demo", "--name", "ci", "--issuer", is.URL, "--claim", "repository")
	if !strings.Contains(errs, "claims[0]:") {
		t.Fatalf("malformed --claim: %s", errs)
	}
	errs = c.fail("trust", "create", "--account", "demo", "--name", "ci", "--issuer", "http://issuer.example.com", "--claim", "repository=acme/app")
	if !strings.Contains(errs, "issuer:") {
		t.Fatalf("http issuer: %s", errs)
	}
	errs = c.fail("trust", "create", "--account", "demo", "--name", "ci", "--issuer", is.URL, "--claim", "repository=acme/app", "--lifetime", "13h")
	if !strings.Contains(errs, "lifetime:") {
		t.Fatalf("lifetime 13h: %s", errs)
	}
	out := c.ok("trust", "create", "--account", "demo", "--name", "ci", "--issuer", is.URL, "--claim", "repository=acme/app", "--claim", "ref~refs/heads/*")
	host := strings.TrimPrefix(env["TOLLGATE_URL"], "http://")
	if !strings.Contains(out, `echo "$ID_TOKEN" | docker login `+host+` -u oidc --password-stdin`) || !strings.Contains(out, "tollgate:demo") {
		t.Fatalf("create printed:\n%s", out)
	}
	var list api.TrustPolicyList
	c.json(&list, "trust", "list", "--account", "demo")
	if len(list.TrustPolicies) != 1 || list.TrustPolicies[0].Claims[1].Glob != true {
		t.Fatalf("list: %+v", list)
	}
	id := list.TrustPolicies[0].ID

	// A GitHub Actions job logs in with its token.
	jwt := is.Sign(oidcissuer.GitHubActions("acme/app", "tollgate:demo", time.Now()))
	if got := basicStatus(t, env["TOLLGATE_URL"]+"/token?service="+host+"&scope=repository:demo/hello:pull", jwt); got != http.StatusOK {
		t.Fatalf("OIDC token at /token: %d", got)
	}
	out = c.ok("trust", "show", id)
	if !strings.Contains(out, "repo:acme/app:ref:refs/heads/main") || !strings.Contains(out, "active") {
		t.Fatalf("show lacks the credential issued:\n%s", out)
	}
	var tokens []api.Token
	c.json(&tokens, "token", "list", "--account", "demo")
	if n := len(tokens); n != 2 || !tokens[1].Ephemeral || tokens[1].Identity == nil || tokens[1].Identity.Claims["repository"] != "acme/app" {
		t.Fatalf("token list: %d tokens, the ephemeral one not shown with its identity", n)
	}

	// Edit: the credential issued under the old rules ends.
	c.ok("trust", "edit", id, "--claim", "repository=acme/other")
	var shown api.TrustPolicy
	c.json(&shown, "trust", "show", id)
	if len(shown.Credentials) != 1 || shown.Credentials[0].Status != "revoked" || shown.Claims[0].Value != "acme/other" {
		t.Fatalf("after edit: %+v", shown)
	}
	if got := basicStatus(t, env["TOLLGATE_URL"]+"/token?service="+host, jwt); got != http.StatusUnauthorized {
		t.Fatalf("OIDC token the edited policy no longer admits: %d", got)
	}
	c.ok("trust", "delete", id)
	if errs := c.fail("trust", "show", id); !strings.Contains(errs, "not found") {
		t.Fatalf("show after delete: %s", errs)
	}
}

func basicStatus(t *testing.T, url, password string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("oidc", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
