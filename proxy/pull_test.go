package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	oras "oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	orasremote "oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/tollgate/tollgate"
)

func craneOpts(secret string) []crane.Option {
	return []crane.Option{crane.Insecure, crane.WithAuth(&authn.Basic{Username: "tollgate", Password: secret})}
}

func TestPullWithCrane(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})

	// By tag: the multi-arch index, then each platform.
	d, err := crane.Digest(e.ref("demo/hello:latest"), craneOpts(secret)...)
	if err != nil || d != e.hello.Digest {
		t.Fatalf("digest by tag = %s, %v; want %s", d, err, e.hello.Digest)
	}
	ref, _ := name.ParseReference(e.ref("demo/hello:latest"), name.Insecure)
	idx, err := remote.Index(ref, remote.WithAuth(&authn.Basic{Username: "u", Password: secret}))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests", len(im.Manifests))
	}
	for _, plat := range []string{"linux/amd64", "linux/arm64"} {
		p, _ := v1.ParsePlatform(plat)
		img, err := crane.Pull(e.ref("demo/hello:latest"), append(craneOpts(secret), crane.WithPlatform(p))...)
		if err != nil {
			t.Fatalf("pull %s: %v", plat, err)
		}
		layers, _ := img.Layers()
		for _, l := range layers {
			rc, err := l.Compressed() // reads the blob through tollgate and checks its digest
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("layer of %s: %v", plat, err)
			}
			rc.Close()
		}
	}
	// By digest, and HEAD.
	if _, err := crane.Pull(e.ref("demo/other@"+e.other.Digest), craneOpts(secret)...); err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	if desc, err := crane.Head(e.ref("demo/other:v1"), craneOpts(secret)...); err != nil || desc.Digest.String() != e.other.Digest {
		t.Fatalf("HEAD = %v, %v", desc, err)
	}
	// Tags.
	if tags, err := crane.ListTags(e.ref("demo/hello"), craneOpts(secret)...); err != nil || !slices.Equal(tags, []string{"latest"}) {
		t.Fatalf("tags = %v, %v", tags, err)
	}
}

func TestCatalogIsFiltered(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	repos, err := crane.Catalog(e.host, craneOpts(secret)...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(repos, []string{"demo/hello", "demo/other"}) {
		t.Fatalf("catalog = %v; private/secret must not show", repos)
	}
	// n and last page through the filtered list.
	tok := e.bearer(secret, "registry:catalog:*")
	resp := e.do("GET", "/v2/_catalog?n=1", map[string]string{"Authorization": "Bearer " + tok})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `["demo/hello"]`) || !strings.Contains(resp.Header.Get("Link"), "last=demo%2Fhello") {
		t.Fatalf("page 1: %d %s Link=%q", resp.StatusCode, body, resp.Header.Get("Link"))
	}
	resp = e.do("GET", "/v2/_catalog?n=1&last=demo/hello", map[string]string{"Authorization": "Bearer " + tok})
	body, _ = io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `["demo/other"]`) {
		t.Fatalf("page 2: %s", body)
	}
}

func TestRangeRequest(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	tok := e.bearer(secret, "repository:demo/other:pull")
	blob := e.other.Layers[0]
	full := e.do("GET", "/v2/demo/other/blobs/"+blob, map[string]string{"Authorization": "Bearer " + tok})
	all, _ := io.ReadAll(full.Body)
	sum := sha256.Sum256(all)
	if full.StatusCode != 200 || "sha256:"+hex.EncodeToString(sum[:]) != blob || full.Header.Get("Docker-Content-Digest") != blob {
		t.Fatalf("blob GET: %d, digest header %q", full.StatusCode, full.Header.Get("Docker-Content-Digest"))
	}
	part := e.do("GET", "/v2/demo/other/blobs/"+blob, map[string]string{"Authorization": "Bearer " + tok, "Range": "bytes=10-19"})
	got, _ := io.ReadAll(part.Body)
	if part.StatusCode != http.StatusPartialContent || string(got) != string(all[10:20]) {
		t.Fatalf("range GET: %d, %q", part.StatusCode, got)
	}
}

func TestPullWithOras(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	ctx := context.Background()
	for _, oauth2 := range []bool{false, true} { // true: POST /token, as containerd does
		client := &auth.Client{
			Credential:         auth.StaticCredential(e.host, auth.Credential{Username: "tollgate", Password: secret}),
			Cache:              auth.NewCache(),
			ForceAttemptOAuth2: oauth2,
		}
		for _, repoName := range []string{"demo/hello", "demo/other"} { // one client, token per repository
			repo, err := orasremote.NewRepository(e.host + "/" + repoName)
			if err != nil {
				t.Fatal(err)
			}
			repo.PlainHTTP = true
			repo.Client = client
			tag := "latest"
			if repoName == "demo/other" {
				tag = "v1"
			}
			desc, err := oras.Copy(ctx, repo, tag, memory.New(), tag, oras.DefaultCopyOptions)
			if err != nil {
				t.Fatalf("oras copy %s (oauth2=%v): %v", repoName, oauth2, err)
			}
			if repoName == "demo/hello" && desc.Digest.String() != e.hello.Digest {
				t.Fatalf("oras digest %s", desc.Digest)
			}
		}
		repo, _ := orasremote.NewRepository(e.host + "/private/secret")
		repo.PlainHTTP, repo.Client = true, client
		if _, err := oras.Copy(ctx, repo, "latest", memory.New(), "latest", oras.DefaultCopyOptions); err == nil {
			t.Fatal("oras pulled a repository the account is not entitled to")
		}
	}
}

// pullErr pulls ref with crane and returns the transport error's status.
func pullStatus(t *testing.T, ref, secret string) int {
	t.Helper()
	_, err := crane.Digest(ref, craneOpts(secret)...)
	if err == nil {
		return 200
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	t.Fatalf("pull %s: unexpected error %v", ref, err)
	return 0
}

func TestDenials(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, good := e.token(tollgate.TokenCreate{})
	if got := pullStatus(t, e.ref("demo/hello:latest"), good); got != 200 {
		t.Fatalf("control pull = %d", got)
	}
	t.Run("WrongPassword", func(t *testing.T) {
		if got := pullStatus(t, e.ref("demo/hello:latest"), tollgate.NewSecret(tollgate.TokenPrefix).Reveal()); got != 401 {
			t.Fatalf("status %d", got)
		}
	})
	t.Run("MalformedToken", func(t *testing.T) {
		last := "Q"
		if strings.HasSuffix(good, last) {
			last = "R" // a changed checksum character, never the secret itself
		}
		for _, bad := range []string{"x", good[:len(good)-1] + last, "tg_" + strings.Repeat("a", 200), good + " "} {
			if got := pullStatus(t, e.ref("demo/hello:latest"), bad); got != 401 {
				t.Fatalf("%q: status %d", bad[:min(len(bad), 8)], got)
			}
		}
	})
	t.Run("NotEntitledLooksLikeMissing", func(t *testing.T) {
		tok := e.bearer(good, "repository:private/secret:pull", "repository:demo/missing:pull")
		a := e.do("GET", "/v2/private/secret/manifests/latest", map[string]string{"Authorization": "Bearer " + tok})
		b := e.do("GET", "/v2/demo/missing/manifests/latest", map[string]string{"Authorization": "Bearer " + tok})
		ab, _ := io.ReadAll(a.Body)
		bb, _ := io.ReadAll(b.Body)
		if a.StatusCode != 401 || b.StatusCode != 401 {
			t.Fatalf("statuses %d %d", a.StatusCode, b.StatusCode)
		}
		norm := func(s, repo string) string { return strings.ReplaceAll(s, repo, "REPO") }
		if norm(string(ab), "private/secret") != norm(string(bb), "demo/missing") ||
			norm(a.Header.Get("WWW-Authenticate"), "private/secret") != norm(b.Header.Get("WWW-Authenticate"), "demo/missing") {
			t.Fatalf("non-entitled and missing differ:\n%s\n%s", ab, bb)
		}
	})
	t.Run("PackagesOnlyScope", func(t *testing.T) {
		if _, err := e.svc.GrantPackages(ctx, "operator", e.acctName); err != nil {
			t.Fatal(err)
		}
		_, pk := e.token(tollgate.TokenCreate{Name: "pk", Scope: tollgate.ScopePackages})
		if got := pullStatus(t, e.ref("demo/hello:latest"), pk); got != 401 {
			t.Fatalf("status %d", got)
		}
	})
	t.Run("RevokedIncludingIssuedJWT", func(t *testing.T) {
		tok, secret := e.token(tollgate.TokenCreate{Name: "rv"})
		jwt := e.bearer(secret, "repository:demo/hello:pull")
		auth := map[string]string{"Authorization": "Bearer " + jwt}
		if r := e.do("HEAD", "/v2/demo/hello/manifests/latest", auth); r.StatusCode != 200 {
			t.Fatalf("before revoke: %d", r.StatusCode)
		}
		if _, err := e.svc.RevokeToken(ctx, "operator", tok.ID); err != nil {
			t.Fatal(err)
		}
		wantChallenge(t, e.do("GET", "/v2/demo/hello/manifests/latest", auth), "repository:demo/hello:pull", "invalid_token")
		if got := pullStatus(t, e.ref("demo/hello:latest"), secret); got != 401 {
			t.Fatalf("new pull with revoked token: %d", got)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		_, secret := e.token(tollgate.TokenCreate{Name: "ex", Expiry: tollgate.Expiry{At: e.clock.Now().Add(time.Hour)}})
		jwt := e.bearer(secret, "repository:demo/hello:pull")
		e.clock.Add(30 * time.Minute)
		// The JWT's own lifetime (15 min) is over too: refused either way.
		wantChallenge(t, e.do("GET", "/v2/demo/hello/manifests/latest", map[string]string{"Authorization": "Bearer " + jwt}), "", "invalid_token")
		e.clock.Add(31 * time.Minute)
		if got := pullStatus(t, e.ref("demo/hello:latest"), secret); got != 401 {
			t.Fatalf("expired token pull: %d", got)
		}
	})
	t.Run("JWTNeverOutlivesToken", func(t *testing.T) {
		_, secret := e.token(tollgate.TokenCreate{Name: "short", Expiry: tollgate.Expiry{At: e.clock.Now().Add(5 * time.Minute)}})
		jwt := e.bearer(secret, "repository:demo/hello:pull")
		claims, err := e.verifier.Verify(jwt)
		if err != nil || claims.ExpiresAt.After(e.clock.Now().Add(5*time.Minute)) {
			t.Fatalf("JWT expires %v, token in 5 min (%v)", claims.ExpiresAt, err)
		}
	})
	t.Run("Suspended", func(t *testing.T) {
		jwt := e.bearer(good, "repository:demo/hello:pull")
		if _, err := e.svc.SuspendAccount(ctx, "operator", e.acctName); err != nil {
			t.Fatal(err)
		}
		wantChallenge(t, e.do("GET", "/v2/demo/hello/manifests/latest", map[string]string{"Authorization": "Bearer " + jwt}), "", "invalid_token")
		if got := pullStatus(t, e.ref("demo/hello:latest"), good); got != 401 {
			t.Fatalf("suspended pull: %d", got)
		}
		e.svc.ResumeAccount(ctx, "operator", e.acctName)
		if got := pullStatus(t, e.ref("demo/hello:latest"), good); got != 200 {
			t.Fatalf("after resume: %d", got)
		}
	})
	t.Run("SubscriptionChangeBitesIssuedJWT", func(t *testing.T) {
		jwt := e.bearer(good, "repository:demo/hello:pull")
		e.svc.SetSubscription(ctx, "operator", e.acctName, tollgate.Subscription{Images: []string{"demo/other"}})
		defer e.svc.SetSubscription(ctx, "operator", e.acctName, tollgate.Subscription{Images: []string{"demo/*"}})
		wantChallenge(t, e.do("GET", "/v2/demo/hello/manifests/latest", map[string]string{"Authorization": "Bearer " + jwt}), "repository:demo/hello:pull", "insufficient_scope")
	})
	t.Run("JWTForRepoAOnRepoB", func(t *testing.T) {
		jwt := e.bearer(good, "repository:demo/other:pull")
		wantChallenge(t, e.do("GET", "/v2/demo/hello/manifests/latest", map[string]string{"Authorization": "Bearer " + jwt}), "repository:demo/hello:pull", "insufficient_scope")
	})
	t.Run("WritesAreDenied", func(t *testing.T) {
		jwt := e.bearer(good, "repository:demo/hello:pull,push")
		for _, m := range []struct{ method, path string }{
			{"PUT", "/v2/demo/hello/manifests/latest"}, {"DELETE", "/v2/demo/hello/manifests/latest"},
			{"POST", "/v2/demo/hello/blobs/uploads/"}, {"PATCH", "/v2/demo/hello/blobs/uploads/abc"},
		} {
			r := e.do(m.method, m.path, map[string]string{"Authorization": "Bearer " + jwt})
			body, _ := io.ReadAll(r.Body)
			if r.StatusCode != 403 || !strings.Contains(string(body), `"DENIED"`) {
				t.Fatalf("%s %s: %d %s", m.method, m.path, r.StatusCode, body)
			}
			wantChallenge(t, e.do(m.method, m.path, nil), "", "")
		}
		claims, _ := e.verifier.Verify(jwt)
		if claims.Allows("repository", "demo/hello", "push") {
			t.Fatal("push was granted")
		}
	})
}

func TestLoginFlow(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	// docker login: ping, token without scope, ping with the bearer.
	wantChallenge(t, e.do("GET", "/v2/", nil), "", "")
	resp := e.do("GET", "/v2/", map[string]string{"Authorization": "Bearer " + e.bearer(secret)})
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Fatalf("ping with bearer: %d", resp.StatusCode)
	}
	// A bad password is a 401 at /token, never an anonymous token.
	req, _ := http.NewRequest("GET", e.srv.URL+"/token?service="+e.host+"&offline_token=true&client_id=docker", nil)
	req.SetBasicAuth("tollgate", tollgate.NewSecret(tollgate.TokenPrefix).Reveal())
	r, _ := http.DefaultClient.Do(req)
	if r.StatusCode != 401 {
		t.Fatalf("bad login: %d", r.StatusCode)
	}
	r.Body.Close()
	// curl -u with the registry token directly.
	req, _ = http.NewRequest("GET", e.srv.URL+"/v2/demo/hello/tags/list", nil)
	req.SetBasicAuth("me", secret)
	r, _ = http.DefaultClient.Do(req)
	if body, _ := io.ReadAll(r.Body); r.StatusCode != 200 || !strings.Contains(string(body), `"latest"`) {
		t.Fatalf("basic on /v2: %d %s", r.StatusCode, body)
	}
}

func TestUpstreamSeesOnlyTollgateCredentials(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	e.up.ResetRequests()
	if _, err := crane.Pull(e.ref("demo/other:v1"), craneOpts(secret)...); err != nil {
		t.Fatal(err)
	}
	reqs := e.up.Requests()
	if len(reqs) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	for _, r := range reqs {
		user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth()
		if !ok || user != e.upCreds.User || pass != e.upCreds.Password {
			t.Fatalf("%s %s reached upstream with Authorization %q", r.Method, r.Path, r.Header.Get("Authorization"))
		}
		for _, v := range r.Header {
			if strings.Contains(strings.Join(v, " "), secret) {
				t.Fatal("the client's registry token reached the upstream")
			}
		}
	}
}

func TestAnonymousPulls(t *testing.T) {
	e := newEnv(t, withAnonymous("demo/other"))
	if got := pullStatus(t, e.ref("demo/other:v1"), ""); got != 200 {
		t.Fatalf("anonymous pull of a public repository: %d", got)
	}
	_, err := crane.Digest(e.ref("demo/hello:latest"), crane.Insecure)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != 401 {
		t.Fatalf("anonymous pull of a private repository: %v", err)
	}
	off := newEnv(t)
	if _, err := crane.Digest(off.ref("demo/other:v1"), crane.Insecure); err == nil {
		t.Fatal("anonymous pull works while anonymous access is off")
	}
}

func TestUpstreamDownIsAGatewayError(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	jwt := e.bearer(secret, "repository:demo/hello:pull")
	e.up.Close()
	start := time.Now()
	r := e.do("GET", "/v2/demo/hello/manifests/latest", map[string]string{"Authorization": "Bearer " + jwt})
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 502 || !strings.Contains(string(body), `"UNAVAILABLE"`) {
		t.Fatalf("upstream down: %d %s", r.StatusCode, body)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %v to report the upstream down", time.Since(start))
	}
}

func TestUpstreamTokenExchange(t *testing.T) {
	e := newEnv(t, withBearerUpstream())
	_, secret := e.token(tollgate.TokenCreate{})
	before := e.up.TokensIssued()
	for range 3 {
		for _, ref := range []string{"demo/hello:latest", "demo/other:v1"} {
			if _, err := crane.Pull(e.ref(ref), craneOpts(secret)...); err != nil {
				t.Fatalf("pull %s through a bearer-protected upstream: %v", ref, err)
			}
		}
	}
	// One upstream token per repository, reused for every later request.
	if got := e.up.TokensIssued() - before; got != 2 {
		t.Fatalf("tollgate fetched %d upstream tokens for 2 repositories over 3 pulls each, want 2", got)
	}
	for _, r := range e.up.Requests() {
		if strings.Contains(r.Header.Get("Authorization"), secret) {
			t.Fatal("the client's token reached the upstream")
		}
	}
}
