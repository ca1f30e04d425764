package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/dev/upstream"
	"github.com/tollgate/tollgate/internal/ratelimit"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/sqlite"
	"github.com/tollgate/tollgate/store/storetest"
	"github.com/tollgate/tollgate/tokencache"
)

// env is tollgate's image front door in front of a real in-process
// distribution registry, with a real SQLite store.
type env struct {
	t             testing.TB
	svc           *tollgate.Service
	up            *upstream.Registry
	opts          Options // what the edge was built with
	edge          *Edge
	verifier      *authz.Verifier
	srv           *httptest.Server
	host          string         // tollgate's host:port
	clock         *testenv.Clock // shared by the service, signer, verifier and proxy
	key           *ecdsa.PrivateKey
	hello         upstream.Image // demo/hello:latest (multi-arch)
	other         upstream.Image // demo/other:v1
	private       upstream.Image // private/secret:latest (never entitled)
	upCreds       upstream.BasicAuth
	acctName      string
	bearerUp      bool
	mappings      []Mapping
	manifestCache int           // bytes; 0: no manifest cache
	tagTTL        time.Duration // of the manifest cache
}

type envOption func(*env, *Options)

// Options run twice: before the upstream starts (o == nil), then on the
// edge's Options.
func withAnonymous(patterns ...string) envOption {
	return func(_ *env, o *Options) {
		if o != nil {
			o.Anonymous = patterns
		}
	}
}

// withMappings serves the upstream's repositories under other names.
func withMappings(m ...Mapping) envOption {
	return func(e *env, o *Options) {
		if o == nil {
			e.mappings = m
		}
	}
}

// withManifestCache puts the manifest cache in front of the upstream.
func withManifestCache(bytes int, tagTTL time.Duration) envOption {
	return func(e *env, o *Options) {
		if o == nil {
			e.manifestCache, e.tagTTL = bytes, tagTTL
		}
	}
}

// withLimiter limits failed authentications.
func withLimiter(l *ratelimit.Limiter) envOption {
	return func(_ *env, o *Options) {
		if o != nil {
			o.Limiter = l
		}
	}
}

// withBearerUpstream makes the upstream use the Docker token protocol.
func withBearerUpstream() envOption {
	return func(e *env, o *Options) {
		if o == nil {
			e.bearerUp = true
		}
	}
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, clock: testenv.NewClock(time.Now().UTC().Truncate(time.Second)), acctName: "acme"}

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys := storetest.NewKeys(t)
	e.svc = tollgate.NewService(st, keys)
	e.svc.Now = e.clock.Now
	// The production lookup path: the token cache, invalidated by the
	// service's writes.
	cache, err := tokencache.New(tokencache.Options{Store: st, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Changed = cache.Invalidate

	for _, o := range opts {
		o(e, nil)
	}
	e.upCreds = upstream.BasicAuth{User: "tollgate-upstream", Password: "upstream-secret-pw"}
	if e.up, err = upstream.Start(ctx, upstream.Options{BasicAuth: &e.upCreds, Bearer: e.bearerUp}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.up.Close() })
	if e.hello, err = upstream.Seed(ctx, e.up, "demo/hello:latest", upstream.SeedOptions{Platforms: []string{"linux/amd64", "linux/arm64"}, LayerSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	if e.other, err = upstream.Seed(ctx, e.up, "demo/other:v1", upstream.SeedOptions{}); err != nil {
		t.Fatal(err)
	}
	if e.private, err = upstream.Seed(ctx, e.up, "private/secret:latest", upstream.SeedOptions{}); err != nil {
		t.Fatal(err)
	}

	e.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.srv = httptest.NewUnstartedServer(nil)
	e.host = e.srv.Listener.Addr().String()
	public := "http://" + e.host
	signer, err := authz.NewSigner(e.key, public, 15*time.Minute, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	signer.EnableReuse(1 << 20) // as in production
	jwks, _ := authz.JWKS([]*ecdsa.PublicKey{&e.key.PublicKey})
	up, err := NewUpstream(UpstreamOptions{URL: e.up.URL, Username: e.upCreds.User, Password: e.upCreds.Password, PublicURL: public, Mappings: e.mappings,
		ManifestCacheBytes: e.manifestCache, ManifestTagTTL: e.tagTTL, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.verifier = authz.NewVerifier([]*ecdsa.PublicKey{&e.key.PublicKey}, public, e.host, time.Minute, e.clock.Now)
	e.opts = Options{
		Lookup:    cache,
		Usage:     cache,
		Keys:      keys,
		Signer:    signer,
		Verifier:  e.verifier,
		JWKS:      jwks,
		PublicURL: public,
		Service:   e.host,
		Upstream:  up,
		Now:       e.clock.Now,
	}
	for _, o := range opts {
		o(e, &e.opts)
	}
	if e.edge, err = New(e.opts); err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = e.edge
	e.srv.Start()
	t.Cleanup(e.srv.Close)

	if _, _, _, err := e.svc.CreateAccount(ctx, "operator", e.acctName); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetSubscription(ctx, "operator", e.acctName, tollgate.Subscription{Images: []string{"demo/*"}, Packages: []string{"os"}}); err != nil {
		t.Fatal(err)
	}
	return e
}

// token creates a registry token for the test account.
func (e *env) token(in tollgate.TokenCreate) (*tollgate.Token, string) {
	e.t.Helper()
	if in.Account == "" {
		in.Account = e.acctName
	}
	if in.Name == "" {
		in.Name = "t"
	}
	tok, secret, err := e.svc.CreateToken(context.Background(), "operator", in)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok, secret.Reveal()
}

func (e *env) ref(repoTag string) string { return e.host + "/" + repoTag }

// do sends a request to tollgate.
func (e *env) do(method, path string, hdr map[string]string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// bearer fetches a JWT for the scopes with the registry token secret.
func (e *env) bearer(secret string, scopes ...string) string {
	e.t.Helper()
	q := url.Values{"service": {e.host}, "scope": scopes}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/token?"+q.Encode(), nil)
	req.SetBasicAuth("tollgate", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, &tr) != nil || tr.Token == "" {
		e.t.Fatalf("token request: %d %s", resp.StatusCode, body)
	}
	return tr.Token
}

// wantChallenge checks a 401 with the full Bearer challenge.
func wantChallenge(t testing.TB, resp *http.Response, scope, errCode string) {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d (%s), want 401", resp.StatusCode, body)
	}
	ch := resp.Header.Get("WWW-Authenticate")
	for _, want := range []string{`Bearer realm="http://`, `/token"`, `service="`} {
		if !strings.Contains(ch, want) {
			t.Fatalf("challenge %q lacks %q", ch, want)
		}
	}
	if scope != "" && !strings.Contains(ch, `scope="`+scope+`"`) {
		t.Fatalf("challenge %q lacks scope %q", ch, scope)
	}
	if errCode != "" && !strings.Contains(ch, `error="`+errCode+`"`) {
		t.Fatalf("challenge %q lacks error %q", ch, errCode)
	}
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != "UNAUTHORIZED" {
		t.Fatalf("401 body is not an UNAUTHORIZED envelope: %+v, %v", body, err)
	}
}

// storeLookup answers Lookup from the store directly, for tests that put
// no cache in front of it.
type storeLookup struct{ store tollgate.Store }

func (l storeLookup) Token(ctx context.Context, hash []byte) (*tollgate.Token, *tollgate.Account, error) {
	return l.find(ctx, func(tx tollgate.Tx) (*tollgate.Token, error) { return tx.TokenByHash(ctx, hash) })
}

func (l storeLookup) TokenByID(ctx context.Context, id string) (*tollgate.Token, *tollgate.Account, error) {
	return l.find(ctx, func(tx tollgate.Tx) (*tollgate.Token, error) { return tx.TokenByID(ctx, id) })
}

func (l storeLookup) find(ctx context.Context, get func(tollgate.Tx) (*tollgate.Token, error)) (*tollgate.Token, *tollgate.Account, error) {
	var t *tollgate.Token
	var a *tollgate.Account
	err := l.store.View(ctx, func(tx tollgate.Tx) (err error) {
		if t, err = get(tx); err != nil {
			return err
		}
		a, err = tx.AccountByID(ctx, t.AccountID, false)
		return err
	})
	if tollgate.ErrorCode(err) == tollgate.ENOTFOUND {
		return nil, nil, tollgate.Errorf(tollgate.EUNAUTHORIZED, "invalid credentials")
	}
	return t, a, err
}
