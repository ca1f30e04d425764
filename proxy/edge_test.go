package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/dev/upstream"
	"github.com/tollgate/tollgate/internal/ratelimit"
)

// TestNoProtocolSwitchThroughTheEdge: an upstream that answers 101 would
// turn the client's connection into a tunnel to the upstream, carrying
// requests tollgate never decided. Upgrade headers never go upstream and a
// 101 never comes back, on image and package routes.
func TestNoProtocolSwitchThroughTheEdge(t *testing.T) {
	e := newEnv(t)
	var sawUpgrade atomic.Bool
	switcher := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" || strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			sawUpgrade.Store(true)
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\ntunnel-open\n")
		rw.Flush()
		io.Copy(io.Discard, conn)
	}))
	defer switcher.Close()

	ctx := context.Background()
	if _, err := e.svc.GrantPackages(ctx, "operator", e.acctName); err != nil {
		t.Fatal(err)
	}
	_, secret := e.token(tollgate.TokenCreate{Scope: tollgate.ScopeImages | tollgate.ScopePackages})
	o := e.opts
	var err error
	if o.Upstream, err = NewUpstream(UpstreamOptions{URL: switcher.URL}); err != nil {
		t.Fatal(err)
	}
	o.Packages = PackagesOptions{Repos: []PackageUpstream{{Format: FormatApt, Name: "os", URL: switcher.URL}}}
	edge, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(edge)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	for _, path := range []string{"/v2/demo/hello/manifests/latest", "/apt/os/dists/stable/InRelease"} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: Basic "+basicAuth("tollgate", secret)+
				"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode == http.StatusSwitchingProtocols || strings.Contains(string(body), "tunnel-open") {
				t.Fatalf("the upstream's protocol switch reached the client: %d %q", resp.StatusCode, body)
			}
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d %s, want 502", resp.StatusCode, body)
			}
		})
	}
	if sawUpgrade.Load() {
		t.Fatal("the client's Upgrade request reached the upstream")
	}
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// tokenStatus asks /token with Basic credentials from the env's server.
func (e *env) tokenStatus(secret string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/token?service="+e.host+"&scope=repository:demo/hello:pull", nil)
	req.SetBasicAuth("tollgate", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestValidTokenNeverLockedOutByOthersFailures: the failed-auth limit is
// per client address, and many customers share one (a NAT, a CI fleet).
// Once someone behind it has used up the bucket with guesses, a valid
// token from the same address must still pass on /token, /v2/ and the
// package routes; only failing attempts are refused.
func TestValidTokenNeverLockedOutByOthersFailures(t *testing.T) {
	lim := ratelimit.New(ratelimit.Options{PerMinute: 1, Burst: 3})
	e := newEnv(t, withLimiter(lim))
	_, secret := e.token(tollgate.TokenCreate{})
	limited := false
	for range 10 {
		if e.tokenStatus(tollgate.NewSecret(tollgate.TokenPrefix).Reveal()) == http.StatusTooManyRequests {
			limited = true
		}
	}
	if !limited {
		t.Fatal("ten different guesses from one address were never limited")
	}
	if got := e.tokenStatus(secret); got != http.StatusOK {
		t.Fatalf("a valid token from the exhausted address got %d at /token", got)
	}
	resp := e.do("GET", "/v2/demo/hello/tags/list", map[string]string{"Authorization": "Basic " + basicAuth("x", secret)})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a valid token from the exhausted address got %d on /v2/ with Basic", resp.StatusCode)
	}
	if got := e.tokenStatus(tollgate.NewSecret(tollgate.TokenPrefix).Reveal()); got != http.StatusTooManyRequests {
		t.Fatalf("another guess from the exhausted address got %d, want 429", got)
	}
}

// TestRevokedSecretIsNotChargedToTheAddress: a CI fleet that keeps using a
// token after it was revoked is not guessing. Its failures are charged to
// that token, so the fleet's address keeps its whole bucket for everyone
// else, and the fleet keeps hearing why: "revoked".
func TestRevokedSecretIsNotChargedToTheAddress(t *testing.T) {
	lim := ratelimit.New(ratelimit.Options{PerMinute: 1, Burst: 3})
	e := newEnv(t, withLimiter(lim))
	old, oldSecret := e.token(tollgate.TokenCreate{Name: "old"})
	if _, err := e.svc.RevokeToken(context.Background(), "operator", old.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if got := e.tokenStatus(oldSecret); got != http.StatusUnauthorized {
			t.Fatalf("use %d of a revoked token: %d, want 401", i, got)
		}
	}
	// The address still has its whole bucket: three guesses are 401.
	for i := range 3 {
		if got := e.tokenStatus(tollgate.NewSecret(tollgate.TokenPrefix).Reveal()); got != http.StatusUnauthorized {
			t.Fatalf("guess %d from an address that only used a revoked token: %d, want 401", i, got)
		}
	}
}

// TestContainerdRetryOfOneBadCredentialCountsOnce: containerd POSTs
// /token, and on a 401 tries GET with the same credential. One mistake
// must cost one token of the bucket, not two.
func TestContainerdRetryOfOneBadCredentialCountsOnce(t *testing.T) {
	lim := ratelimit.New(ratelimit.Options{PerMinute: 1, Burst: 2})
	e := newEnv(t, withLimiter(lim))
	bad := tollgate.NewSecret(tollgate.TokenPrefix).Reveal()
	form := url.Values{"grant_type": {"password"}, "username": {"tollgate"}, "password": {bad}, "service": {e.host},
		"client_id": {"containerd-client"}, "scope": {"repository:demo/hello:pull"}}
	for i := range 3 { // three pulls with the same wrong password
		resp, err := http.PostForm(e.srv.URL+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("POST %d: %d", i, resp.StatusCode)
		}
		if got := e.tokenStatus(bad); got != http.StatusUnauthorized {
			t.Fatalf("GET retry %d: %d", i, got)
		}
	}
	// The bucket (2) still has room for one more distinct failure.
	if got := e.tokenStatus(tollgate.NewSecret(tollgate.TokenPrefix).Reveal()); got != http.StatusUnauthorized {
		t.Fatalf("a second distinct credential got %d: the retries were charged", got)
	}
}

// TestTokenResponsesAreNotCached: a JWT is a credential; no shared cache
// between tollgate and the client may keep one.
func TestTokenResponsesAreNotCached(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	resp := e.do("GET", "/token?service="+e.host+"&scope=repository:demo/hello:pull", map[string]string{"Authorization": "Basic " + basicAuth("u", secret)})
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token answer: %d Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
}

// TestTokenRefusesTooManyScopes: a request for hundreds of scopes would
// make a huge JWT that every later request must verify.
func TestTokenRefusesTooManyScopes(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	q := url.Values{"service": {e.host}}
	for i := range 300 {
		q.Add("scope", "repository:demo/r"+strconv.Itoa(i)+":pull")
	}
	resp := e.do("GET", "/token?"+q.Encode(), map[string]string{"Authorization": "Basic " + basicAuth("u", secret)})
	var body struct {
		ErrorDescription string `json:"error_description"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.ErrorDescription, "more than 64") {
		t.Fatalf("300 scopes: %d %+v", resp.StatusCode, body)
	}
}

// TestErrorsUseTheRegisteredStatus: distribution registers NAME_INVALID as
// 400; an unavailable lookup is 503 UNAVAILABLE with Retry-After, never a
// 500.
func TestErrorsUseTheRegisteredStatus(t *testing.T) {
	e := newEnv(t)
	resp := e.do("GET", "/v2/Bad..Name/manifests/latest", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "NAME_INVALID") {
		t.Fatalf("invalid name: %d %s", resp.StatusCode, body)
	}

	o := e.opts
	o.Lookup = downLookup{}
	edge, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	_, secret := e.token(tollgate.TokenCreate{})
	for _, path := range []string{"/token?service=" + e.host, "/v2/demo/hello/tags/list"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.SetBasicAuth("u", secret)
		edge.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "UNAVAILABLE") {
			t.Fatalf("%s with the lookup down: %d %q %s", path, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
}

type downLookup struct{}

func (downLookup) Token(context.Context, []byte) (*tollgate.Token, *tollgate.Account, error) {
	return nil, nil, tollgate.Unavailable("store", io.ErrUnexpectedEOF)
}

func (downLookup) TokenByID(context.Context, string) (*tollgate.Token, *tollgate.Account, error) {
	return nil, nil, tollgate.Unavailable("store", io.ErrUnexpectedEOF)
}

// TestUpstreamNamesStayPrivate: with mappings, the upstream's repository
// names are the vendor's business. Nothing a client receives — tag lists,
// error messages and details, the catalog — may name them.
func TestUpstreamNamesStayPrivate(t *testing.T) {
	e := newEnv(t, withMappings(Mapping{Public: "pub/", Upstream: "demo/"}))
	if _, err := e.svc.SetSubscription(context.Background(), "operator", e.acctName, tollgate.Subscription{Images: []string{"pub/*"}}); err != nil {
		t.Fatal(err)
	}
	_, secret := e.token(tollgate.TokenCreate{})
	jwt := e.bearer(secret, "repository:pub/hello:pull", "registry:catalog:*")
	auth := map[string]string{"Authorization": "Bearer " + jwt}
	for _, path := range []string{
		"/v2/pub/hello/tags/list",
		"/v2/pub/hello/manifests/no-such-tag",
		"/v2/pub/hello/blobs/sha256:" + strings.Repeat("0", 64),
		"/v2/_catalog",
	} {
		resp := e.do("GET", path, auth)
		body, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(body), "demo/") || strings.Contains(resp.Header.Get("Location"), "demo/") || strings.Contains(resp.Header.Get("Link"), "demo/") {
			t.Errorf("%s (%d) names the upstream repository: %s", path, resp.StatusCode, body)
		}
		if path == "/v2/pub/hello/tags/list" {
			var list struct{ Name string }
			if json.Unmarshal(body, &list); list.Name != "pub/hello" {
				t.Errorf("tag list name %q, want pub/hello", list.Name)
			}
		}
	}
}

// TestUpstreamCredentialsNotSentToForeignRealm: the realm of a Bearer
// challenge comes from whatever answered tollgate. Credentials go to the
// upstream's own origin (or hosts the operator named), never elsewhere,
// and never over plain http when the upstream is https.
func TestUpstreamCredentialsNotSentToForeignRealm(t *testing.T) {
	var mu sync.Mutex
	sent := map[string]string{} // realm host → Authorization it received
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), Request: r}
		switch {
		case strings.HasSuffix(r.URL.Path, "/token"):
			mu.Lock()
			sent[r.URL.Scheme+"://"+r.URL.Host] = r.Header.Get("Authorization")
			mu.Unlock()
			resp.Body = io.NopCloser(strings.NewReader(`{"token":"t","expires_in":300}`))
		case !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
			resp.StatusCode = http.StatusUnauthorized
			realm := map[string]string{
				"/v2/own/manifests/x":     "https://upstream.internal/token",
				"/v2/named/manifests/x":   "https://auth.vendor.example/token",
				"/v2/foreign/manifests/x": "https://attacker.example/token",
				"/v2/plain/manifests/x":   "http://upstream.internal/token",
			}[r.URL.Path]
			resp.Header.Set("WWW-Authenticate", `Bearer realm="`+realm+`",service="s",scope="repository:x:pull"`)
		}
		return resp, nil
	})
	a := newUpstreamAuth(up, &url.URL{Scheme: "https", Host: "upstream.internal"}, "tollgate", "pw", []string{"auth.vendor.example"}, nil)
	for _, repo := range []string{"own", "named", "foreign", "plain"} {
		req, _ := http.NewRequest("GET", "https://upstream.internal/v2/"+repo+"/manifests/x", nil)
		if resp, err := a.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(sent["https://upstream.internal"], "Basic ") || !strings.HasPrefix(sent["https://auth.vendor.example"], "Basic ") {
		t.Fatalf("the trusted realms did not get the credentials: %v", sent)
	}
	if got, asked := sent["https://attacker.example"]; !asked || got != "" {
		t.Fatalf("a foreign realm: asked %v, received %q (want an anonymous request)", asked, got)
	}
	if _, asked := sent["http://upstream.internal"]; asked {
		t.Fatal("a plain-http realm of an https upstream was asked at all")
	}
}

// TestReusedJWTStillDiesWithItsToken: /token hands out the same JWT for
// the same grant; revoking the registry token must still refuse that JWT
// on the next request and refuse a new one at /token.
func TestReusedJWTStillDiesWithItsToken(t *testing.T) {
	e := newEnv(t)
	tok, secret := e.token(tollgate.TokenCreate{})
	first := e.bearer(secret, "repository:demo/hello:pull")
	if again := e.bearer(secret, "repository:demo/hello:pull"); again != first {
		t.Fatal("the same grant was signed twice")
	}
	if _, err := e.svc.RevokeToken(context.Background(), "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	wantChallenge(t, e.do("GET", "/v2/demo/hello/tags/list", map[string]string{"Authorization": "Bearer " + first}), "repository:demo/hello:pull", "invalid_token")
	if got := e.tokenStatus(secret); got != http.StatusUnauthorized {
		t.Fatalf("/token with the revoked token: %d", got)
	}
}

// manifestHeaders are what a client reads from a manifest answer.
var manifestHeaders = []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "Etag"}

const ociAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// TestManifestCacheAnswersLikeTheUpstream: the second HEAD and GET of a
// tag (kubelet's imagePullPolicy: Always) come from memory, with the
// headers and bytes the upstream gives.
func TestManifestCacheAnswersLikeTheUpstream(t *testing.T) {
	e := newEnv(t, withManifestCache(1<<20, 5*time.Second))
	_, secret := e.token(tollgate.TokenCreate{})
	auth := map[string]string{"Authorization": "Bearer " + e.bearer(secret, "repository:demo/hello:pull"), "Accept": ociAccept}
	for _, method := range []string{"HEAD", "GET"} {
		for _, ref := range []string{"latest", e.hello.Digest} {
			first := e.do(method, "/v2/demo/hello/manifests/"+ref, auth)
			firstBody, _ := io.ReadAll(first.Body)
			before := e.opts.Upstream.ManifestCacheStats().Hits
			again := e.do(method, "/v2/demo/hello/manifests/"+ref, auth)
			againBody, _ := io.ReadAll(again.Body)
			if e.opts.Upstream.ManifestCacheStats().Hits != before+1 && !(method == "HEAD" && ref == e.hello.Digest) {
				t.Errorf("%s %s: the second answer did not come from the cache", method, ref)
			}
			if first.StatusCode != 200 || again.StatusCode != 200 || string(firstBody) != string(againBody) {
				t.Fatalf("%s %s: %d then %d, bodies equal %v", method, ref, first.StatusCode, again.StatusCode, string(firstBody) == string(againBody))
			}
			for _, h := range manifestHeaders {
				if first.Header.Get(h) != again.Header.Get(h) {
					t.Errorf("%s %s: %s %q from the upstream, %q from the cache", method, ref, h, first.Header.Get(h), again.Header.Get(h))
				}
			}
			if again.Header.Get("Docker-Content-Digest") != e.hello.Digest {
				t.Errorf("%s %s: digest %q", method, ref, again.Header.Get("Docker-Content-Digest"))
			}
		}
	}
}

// TestManifestCacheKeysByAccept: a registry may answer a tag by what the
// client accepts (distribution v3 does not, so TestManifestEntryPerAccept
// shows the separation): every answer is the upstream's own; the same
// types in another order or with parameters are the same entry; and
// however many Accept headers clients send, the cache remembers a
// bounded number of them.
func TestManifestCacheKeysByAccept(t *testing.T) {
	e := newEnv(t, withManifestCache(1<<20, time.Minute))
	_, secret := e.token(tollgate.TokenCreate{})
	bearer := "Bearer " + e.bearer(secret, "repository:demo/hello:pull")
	const path = "/v2/demo/hello/manifests/latest"
	direct := func(accept string) (int, string, string) {
		req, _ := http.NewRequest("HEAD", e.up.URL+path, nil)
		req.SetBasicAuth(e.upCreds.User, e.upCreds.Password)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest")
	}
	check := func(accept string) {
		t.Helper()
		resp := e.do("HEAD", path, map[string]string{"Authorization": bearer, "Accept": accept})
		status, ct, digest := direct(accept)
		if resp.StatusCode != status || resp.Header.Get("Content-Type") != ct || resp.Header.Get("Docker-Content-Digest") != digest {
			t.Fatalf("Accept %q: tollgate %d %q %q, the upstream %d %q %q", accept, resp.StatusCode, resp.Header.Get("Content-Type"),
				resp.Header.Get("Docker-Content-Digest"), status, ct, digest)
		}
	}
	const index, manifest = "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"
	for range 2 { // the second round from the cache
		check(ociAccept)
		check(manifest)
		check("application/vnd.docker.distribution.manifest.v2+json")
	}
	check(index + ", " + manifest)
	e.up.ResetRequests()
	for _, same := range []string{manifest + ";q=0.9," + index, " " + index + " , " + manifest + " ", index + "," + manifest + "," + index} {
		check(same)
	}
	if n := len(e.up.Requests()); n != 3 { // check's own direct HEADs only
		t.Errorf("%d requests reached the upstream for one entry asked three more ways", n)
	}
	for i := range 2 * maxAccepts {
		check(fmt.Sprintf("%s, application/x-%d", index, i))
	}
	check(index + ", " + strings.Repeat("application/x-long,", maxAcceptLen/10))
	e.opts.Upstream.manifests.acceptsMu.RLock()
	defer e.opts.Upstream.manifests.acceptsMu.RUnlock()
	if n := len(e.opts.Upstream.manifests.accepts); n > maxAccepts {
		t.Errorf("%d Accept headers remembered, bound %d", n, maxAccepts)
	}
}

// TestManifestCacheNeverStaleBeyondTagTTL: a tag moved upstream is seen
// through tollgate once the tag TTL has passed, never later.
func TestManifestCacheNeverStaleBeyondTagTTL(t *testing.T) {
	const ttl = 5 * time.Second
	e := newEnv(t, withManifestCache(1<<20, ttl))
	_, secret := e.token(tollgate.TokenCreate{})
	auth := map[string]string{"Authorization": "Bearer " + e.bearer(secret, "repository:demo/other:pull"), "Accept": ociAccept}
	digest := func() string {
		resp := e.do("HEAD", "/v2/demo/other/manifests/v1", auth)
		if resp.StatusCode != 200 {
			t.Fatalf("HEAD: %d", resp.StatusCode)
		}
		return resp.Header.Get("Docker-Content-Digest")
	}
	if got := digest(); got != e.other.Digest {
		t.Fatalf("digest %s, want %s", got, e.other.Digest)
	}
	moved, err := upstream.Seed(context.Background(), e.up, "demo/other:v1", upstream.SeedOptions{Seed: 42})
	if err != nil || moved.Digest == e.other.Digest {
		t.Fatal(err)
	}
	e.clock.Add(ttl - time.Second)
	if got := digest(); got != e.other.Digest && got != moved.Digest {
		t.Fatalf("within the TTL: %s", got)
	}
	e.clock.Add(time.Second)
	if got := digest(); got != moved.Digest {
		t.Fatalf("the tag moved upstream %v ago and tollgate still answers %s", ttl, got)
	}
}

// TestManifestCacheNeverCrossesAuthorization: the cache is asked only after
// the request is authorized, and one repository's entry never answers
// another's.
func TestManifestCacheNeverCrossesAuthorization(t *testing.T) {
	e := newEnv(t, withManifestCache(1<<20, time.Minute))
	_, secret := e.token(tollgate.TokenCreate{})
	hdr := func(scope string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + e.bearer(secret, scope), "Accept": ociAccept}
	}
	if resp := e.do("GET", "/v2/demo/hello/manifests/latest", hdr("repository:demo/hello:pull")); resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	// A token for demo/other asks for demo/hello's cached tag.
	wantChallenge(t, e.do("GET", "/v2/demo/hello/manifests/latest", hdr("repository:demo/other:pull")), "repository:demo/hello:pull", "insufficient_scope")
	// demo/other has no "latest": hello's entry must not answer for it.
	resp := e.do("GET", "/v2/demo/other/manifests/latest", hdr("repository:demo/other:pull"))
	if resp.StatusCode == 200 {
		t.Fatal("demo/other:latest was answered with another repository's manifest")
	}
	// An account whose subscription no longer covers the repository.
	if _, err := e.svc.SetSubscription(context.Background(), "operator", e.acctName, tollgate.Subscription{Images: []string{"other/*"}}); err != nil {
		t.Fatal(err)
	}
	if resp := e.do("HEAD", "/v2/demo/hello/manifests/latest", hdr("repository:demo/hello:pull")); resp.StatusCode != 401 {
		t.Fatalf("de-entitled repository answered %d", resp.StatusCode)
	}
}

// TestEmptyUserNameWorksLikeAnyOther: a Docker config whose auth is
// base64(":TOKEN") (some tools write it that way) must pull like any
// other user name: tollgate reads only the password.
func TestEmptyUserNameWorksLikeAnyOther(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	if got := e.do("GET", "/token?service="+e.host+"&scope=repository:demo/hello:pull", map[string]string{"Authorization": "Basic " + basicAuth("", secret)}); got.StatusCode != 200 {
		t.Fatalf("/token with an empty user name: %d", got.StatusCode)
	}
	form := url.Values{"grant_type": {"password"}, "username": {""}, "password": {secret}, "service": {e.host}}
	resp, err := http.PostForm(e.srv.URL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /token with an empty user name: %d", resp.StatusCode)
	}
}

// TestExpiresInNeverBelowSixtySeconds: the token spec asks for at least
// 60 s; a registry token that expires sooner gets a refusal that says
// what to do instead of a JWT that clients would round up and reuse
// after it died.
func TestExpiresInNeverBelowSixtySeconds(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	_, soon := e.token(tollgate.TokenCreate{Name: "soon", Expiry: tollgate.Expiry{At: now.Add(90 * time.Second)}})
	resp := e.do("GET", "/token?service="+e.host, map[string]string{"Authorization": "Basic " + basicAuth("u", soon)})
	var tr tokenResponse
	json.NewDecoder(resp.Body).Decode(&tr)
	if resp.StatusCode != 200 || tr.ExpiresIn < 60 || tr.ExpiresIn > 90 {
		t.Fatalf("token expiring in 90 s: %d expires_in %d", resp.StatusCode, tr.ExpiresIn)
	}
	e.clock.Add(45 * time.Second)
	resp = e.do("GET", "/token?service="+e.host, map[string]string{"Authorization": "Basic " + basicAuth("u", soon)})
	var refusal struct {
		Description string `json:"error_description"`
	}
	json.NewDecoder(resp.Body).Decode(&refusal)
	if resp.StatusCode != 401 || !strings.Contains(refusal.Description, "extend") {
		t.Fatalf("token expiring in 45 s: %d %q", resp.StatusCode, refusal.Description)
	}
}

// TestFirstChallengeCarriesNoError: the first 401 of a client that sent
// no credentials (docker login's ping, containerd's first manifest
// request) is a plain challenge with no error= parameter (RFC 6750 §3.1:
// a request without authentication gets no error code); a request with
// bad or dead credentials gets error="invalid_token", which is what makes
// containerd drop its cached token and fetch a new one. Clients treat the
// two differently, so the two must not be mixed up.
func TestFirstChallengeCarriesNoError(t *testing.T) {
	e := newEnv(t)
	tok, secret := e.token(tollgate.TokenCreate{})
	bearer := e.bearer(secret, "repository:demo/hello:pull")
	plain := func(what string, resp *http.Response, scope string) {
		t.Helper()
		ch := resp.Header.Get("WWW-Authenticate")
		wantChallenge(t, resp, scope, "")
		if strings.Contains(ch, "error=") {
			t.Fatalf("%s without credentials: challenge %q has an error parameter", what, ch)
		}
	}
	plain("GET /v2/", e.do("GET", "/v2/", nil), "")
	plain("GET a manifest", e.do("GET", "/v2/demo/hello/manifests/latest", nil), "repository:demo/hello:pull")
	plain("GET a repository not entitled", e.do("GET", "/v2/private/secret/manifests/latest", nil), "repository:private/secret:pull")

	wrong := tollgate.NewSecret(tollgate.TokenPrefix).Reveal()
	wantChallenge(t, e.do("GET", "/v2/", map[string]string{"Authorization": "Basic " + basicAuth("tollgate", wrong)}), "", "invalid_token")
	wantChallenge(t, e.do("GET", "/v2/", map[string]string{"Authorization": "Bearer not-a-jwt"}), "", "invalid_token")
	if _, err := e.svc.RevokeToken(context.Background(), "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	wantChallenge(t, e.do("GET", "/v2/", map[string]string{"Authorization": "Bearer " + bearer}), "", "invalid_token")
	wantChallenge(t, e.do("GET", "/v2/demo/hello/manifests/latest", map[string]string{"Authorization": "Bearer " + bearer}), "repository:demo/hello:pull", "invalid_token")
	wantChallenge(t, e.do("GET", "/v2/", map[string]string{"Authorization": "Basic " + basicAuth("tollgate", secret)}), "", "invalid_token")
}

// TestManifestEntryPerAccept: what the upstream answered for one Accept
// header never answers another, for a tag or a digest.
func TestManifestEntryPerAccept(t *testing.T) {
	c := newManifestCache(1<<20, time.Minute, nil)
	const body = `{"schemaVersion":2}`
	sum := sha256.Sum256([]byte(body))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	ask := func(method, ref, accept string) *http.Request {
		r := httptest.NewRequest(method, "/v2/demo/hello/manifests/"+ref, nil)
		r.Header.Set("Accept", accept)
		return r
	}
	for _, ref := range []string{"latest", digest} {
		req := ask("GET", ref, "application/vnd.oci.image.manifest.v1+json")
		resp := &http.Response{StatusCode: 200, Request: req, ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)),
			Header: http.Header{"Docker-Content-Digest": {digest}, "Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}}
		c.fill(resp, "demo/hello", ref, c.acceptKey(req))
		for _, method := range []string{"GET", "HEAD"} {
			for accept, want := range map[string]bool{
				"application/vnd.oci.image.manifest.v1+json":                                          true,
				"application/vnd.docker.distribution.manifest.v2+json":                                false,
				"application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json": false,
			} {
				r := ask(method, ref, accept)
				w := httptest.NewRecorder()
				if got := c.serve(w, r, "demo/hello", ref, c.acceptKey(r)); got != want {
					t.Errorf("%s %s with Accept %q: answered from the cache %v, want %v", method, ref, accept, got, want)
				}
				if want && (w.Header().Get("Docker-Content-Digest") != digest || w.Header().Get("Content-Length") != strconv.Itoa(len(body))) {
					t.Errorf("%s %s: headers %v", method, ref, w.Header())
				}
			}
		}
	}
}
