package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialprovider "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
)

// credentialProvider is cmd/tollgate-credential-provider built for a
// test, run as kubelet runs it.
type credentialProvider string

func buildCredentialProvider(t *testing.T) credentialProvider {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tollgate-credential-provider")
	if out, err := exec.Command("go", "build", "-o", bin, "../tollgate-credential-provider").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return credentialProvider(bin)
}

// ask sends kubelet's request for image with the pod's token and returns
// the answer, or stderr and the exit status.
func (p credentialProvider) ask(t *testing.T, image, podToken string, args ...string) (*credentialprovider.CredentialProviderResponse, string, int) {
	t.Helper()
	req, _ := json.Marshal(credentialprovider.CredentialProviderRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: "credentialprovider.kubelet.k8s.io/v1", Kind: "CredentialProviderRequest"},
		Image:    image, ServiceAccountToken: podToken,
	})
	cmd := exec.Command(string(p), args...)
	cmd.Stdin = bytes.NewReader(req)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, errb.String(), ee.ExitCode()
		}
		t.Fatal(err)
	}
	var resp credentialprovider.CredentialProviderResponse
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatalf("answer: %v\n%s", err, out.String())
	}
	return &resp, errb.String(), 0
}

// TestCredentialProviderPullsWithAPodsServiceAccountToken is keyless
// pulls on Kubernetes end to end: a pod's service-account token, signed
// by a real issuer tollgate fetches the keys of, goes through the
// provider binary to tollgate's exchange, and the credential kubelet gets
// pulls with crane; tokens the trust policy does not match get nothing.
func TestCredentialProviderPullsWithAPodsServiceAccountToken(t *testing.T) {
	e := newOpsEnv(t, func(c *config.Config) { c.OIDC.AllowLoopbackIssuers = true })
	is, err := oidcissuer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	ctx := t.Context()
	e.demoToken(t) // account acme, entitled to demo/**
	if _, err := e.m.Service.CreateTrustPolicy(ctx, "operator", "acme", tollgate.TrustPolicy{
		Name: "cluster", Issuer: is.URL,
		Rules: []tollgate.ClaimRule{{Claim: "sub", Value: "system:serviceaccount:shop:*", Glob: true}},
	}); err != nil {
		t.Fatal(err)
	}
	provider := buildCredentialProvider(t)
	image := e.host + "/demo/hello:latest"
	url := "http://" + e.host

	pod := is.Sign(oidcissuer.ServiceAccount("shop", "puller", "tollgate:acme", time.Now()))
	resp, stderr, code := provider.ask(t, image, pod, "--url", url)
	if code != 0 {
		t.Fatalf("provider exit %d: %s", code, stderr)
	}
	cred, ok := resp.Auth[e.host]
	if !ok || !strings.HasPrefix(cred.Password, tollgate.EphemeralPrefix) {
		t.Fatalf("auth = %v, want an ephemeral credential for %s", resp.Auth, e.host)
	}
	// The default policy lifetime is 15 minutes, but the credential ends
	// with the pod's token (10 minutes): kubelet caches it for less.
	if d := resp.CacheDuration.Duration; d <= 0 || d >= 10*time.Minute {
		t.Errorf("cacheDuration = %v, want below the pod token's 10 minutes", d)
	}
	if _, err := crane.Pull(image, crane.Insecure, crane.WithAuth(&authn.Basic{Username: cred.Username, Password: cred.Password})); err != nil {
		t.Fatalf("crane pull with the provider's credential: %v", err)
	}

	// Node mode: the same exchange with a token from a file; kubelet's
	// request then carries the image only.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(is.Sign(oidcissuer.ServiceAccount("shop", "node-agent", "tollgate:acme", time.Now()))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, stderr, code = provider.ask(t, image, "", "--url", url, "--mode", "node", "--token-file", file)
	if code != 0 {
		t.Fatalf("node mode: exit %d: %s", code, stderr)
	}
	node := resp.Auth[e.host]
	if _, err := crane.Digest(image, crane.Insecure, crane.WithAuth(&authn.Basic{Username: node.Username, Password: node.Password})); err != nil {
		t.Fatalf("crane with node mode's credential: %v", err)
	}

	for name, tok := range map[string]string{
		"another namespace's service account": is.Sign(oidcissuer.ServiceAccount("other", "puller", "tollgate:acme", time.Now())),
		"another audience":                    is.Sign(oidcissuer.ServiceAccount("shop", "puller", "tollgate:globex", time.Now())),
		"a key the issuer never published":    is.SignUnknownKey(oidcissuer.ServiceAccount("shop", "puller", "tollgate:acme", time.Now())),
		"an expired token":                    is.Sign(oidcissuer.ServiceAccount("shop", "puller", "tollgate:acme", time.Now().Add(-time.Hour))),
	} {
		t.Run(name, func(t *testing.T) {
			resp, stderr, code := provider.ask(t, image, tok, "--url", url)
			if code == 0 {
				t.Fatalf("exit 0: %v", resp.Auth)
			}
			if !strings.Contains(stderr, "tollgate refused the token exchange (400 invalid_grant)") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr = %q, want one line saying tollgate refused the exchange", stderr)
			}
			if strings.Contains(stderr, tok) || strings.Contains(stderr, pod) {
				t.Error("stderr carries a token")
			}
		})
	}
}
