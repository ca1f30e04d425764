package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/obs"
)

// Mapping rewrites a public repository name prefix to an upstream one:
// {Public: "", Upstream: "images/"} serves upstream images/nginx as nginx.
type Mapping struct {
	Public   string
	Upstream string
}

// UpstreamOptions configures the upstream registry.
type UpstreamOptions struct {
	URL      string      // base URL, e.g. https://registry.internal:5000
	TLS      *tls.Config // nil: system roots
	Username string      // tollgate's own credentials at the upstream
	Password string
	Mappings []Mapping // first matching Public prefix wins; none: identity
	Logger   *slog.Logger
	// Transport overrides the default transport (tests).
	Transport http.RoundTripper
	// Metrics, if set, observes every upstream round trip as "registry".
	Metrics *obs.Metrics
}

// Upstream forwards authorized requests to the upstream registry.
type Upstream struct {
	base     *url.URL
	mappings []Mapping
	client   *http.Client // for catalog listing
	proxy    *httputil.ReverseProxy
	logger   *slog.Logger
}

// ctxKey carries the forwarded target from serveV2 to Rewrite.
type ctxKey struct{}

type target struct {
	path, query string
	rt          route
	g           *Registry
}

// NewUpstream builds the reverse proxy. Its transport has dial, TLS and
// response-header timeouts but no whole-body timeout (blobs are large),
// never asks for compression (bytes pass through untouched) and keeps
// plenty of idle connections.
func NewUpstream(o UpstreamOptions) (*Upstream, error) {
	base, err := url.Parse(strings.TrimSuffix(o.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("upstream.url: must be an absolute http or https URL")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	rt := o.Transport
	if rt == nil {
		rt = &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       o.TLS,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          512,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
			ForceAttemptHTTP2:     true,
			ReadBufferSize:        64 << 10,
			WriteBufferSize:       64 << 10,
		}
	}
	rt = &upstreamAuth{next: rt, user: o.Username, pass: o.Password, tokens: map[string]cachedToken{}}
	if o.Metrics != nil {
		rt = MeasuredTransport(rt, o.Metrics, "registry")
	}
	u := &Upstream{base: base, mappings: o.Mappings, logger: o.Logger,
		client: &http.Client{Transport: rt, Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	u.proxy = &httputil.ReverseProxy{
		Rewrite:        u.rewrite,
		Transport:      rt,
		ModifyResponse: u.modifyResponse,
		ErrorHandler:   u.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	return u, nil
}

// ToUpstream maps a public repository name to the upstream's. With
// mappings configured, a name no mapping covers is not served (ok false):
// "team-a/=vendor/team-a/" exposes that subtree and nothing else.
func (u *Upstream) ToUpstream(name string) (up string, ok bool) {
	if len(u.mappings) == 0 {
		return name, true
	}
	for _, m := range u.mappings {
		if strings.HasPrefix(name, m.Public) {
			return m.Upstream + strings.TrimPrefix(name, m.Public), true
		}
	}
	return "", false
}

// mapped is ToUpstream for names already known to be served.
func (u *Upstream) mapped(name string) string {
	up, _ := u.ToUpstream(name)
	return up
}

// FromUpstream maps an upstream name back; ok is false for names no
// mapping produces (they are not served).
func (u *Upstream) FromUpstream(name string) (string, bool) {
	if len(u.mappings) == 0 {
		return name, true
	}
	for _, m := range u.mappings {
		if strings.HasPrefix(name, m.Upstream) {
			pub := m.Public + strings.TrimPrefix(name, m.Upstream)
			if up, ok := u.ToUpstream(pub); ok && up == name {
				return pub, true
			}
		}
	}
	return "", false
}

func (u *Upstream) upstreamPath(rt route) string {
	name := u.mapped(rt.name)
	p := strings.TrimSuffix(u.base.Path, "/") + "/v2/" + name
	switch rt.kind {
	case routeManifest:
		return p + "/manifests/" + rt.ref
	case routeBlob:
		return p + "/blobs/" + rt.ref
	case routeTags:
		return p + "/tags/list"
	case routeReferrers:
		return p + "/referrers/" + rt.ref
	}
	panic("proxy: no upstream path for route " + rt.kind)
}

// forward streams the request for an authorized route to the upstream.
func (u *Upstream) forward(w http.ResponseWriter, r *http.Request, rt route, g *Registry) {
	q := url.Values{}
	in := r.URL.Query()
	switch rt.kind {
	case routeTags:
		for _, k := range []string{"n", "last"} {
			if v := in.Get(k); v != "" {
				q.Set(k, v)
			}
		}
	case routeReferrers:
		if v := in.Get("artifactType"); v != "" {
			q.Set("artifactType", v)
		}
	}
	t := &target{path: u.upstreamPath(rt), query: q.Encode(), rt: rt, g: g}
	u.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, t)))
}

func (u *Upstream) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(ctxKey{}).(*target)
	out := pr.Out
	out.URL.Scheme = u.base.Scheme
	out.URL.Host = u.base.Host
	out.URL.Path = t.path
	out.URL.RawPath = ""
	out.URL.RawQuery = t.query
	out.Host = u.base.Host
	// The client's credentials never go upstream; upstreamAuth adds ours.
	out.Header.Del("Authorization")
	out.Header.Del("Cookie")
	out.Header.Del("Proxy-Authorization")
}

func (u *Upstream) modifyResponse(resp *http.Response) error {
	t := resp.Request.Context().Value(ctxKey{}).(*target)
	resp.Header.Del("Set-Cookie")
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// Our own credentials were refused: that is the upstream's (or
		// the operator's) problem, not the client's.
		u.logger.Error("upstream refused tollgate's credentials", "status", resp.StatusCode, "path", t.path)
		return errUpstreamAuth
	case resp.StatusCode == http.StatusNotFound:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		// A missing repository must look like one the caller is not
		// entitled to. distribution answers MANIFEST_UNKNOWN for a tag
		// of a missing repository, so ask its tag list to tell them apart.
		if bytes.Contains(body, []byte(codeNameUnknown)) || (t.rt.kind != routeTags && !u.repoExists(resp.Request.Context(), t.rt.name)) {
			return errNameUnknown
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		if loc := resp.Header.Get("Location"); loc != "" {
			resp.Header.Set("Location", u.rewriteLocation(loc, t.g))
		}
	}
	if link := resp.Header.Get("Link"); link != "" && t.rt.kind == routeTags {
		resp.Header.Set("Link", u.rewriteLink(link, t.rt.name))
	}
	resp.Header.Del("WWW-Authenticate")
	resp.Header.Set("Docker-Distribution-Api-Version", "registry/2.0")
	return nil
}

// repoExists asks the upstream whether a repository exists; when it
// cannot tell, it says yes (the upstream's own 404 then stands).
func (u *Upstream) repoExists(ctx context.Context, name string) bool {
	p := strings.TrimSuffix(u.base.Path, "/") + "/v2/" + u.mapped(name) + "/tags/list?n=1"
	ref, _ := url.Parse(p)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base.ResolveReference(ref).String(), nil)
	if err != nil {
		return true
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return true
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return !(resp.StatusCode == http.StatusNotFound && bytes.Contains(body, []byte(codeNameUnknown)))
}

// rewriteLocation maps a redirect to the upstream itself onto tollgate's
// public URL; a redirect elsewhere (a presigned storage URL) passes through
// unchanged, and tollgate never follows it with credentials.
func (u *Upstream) rewriteLocation(loc string, g *Registry) string {
	l, err := u.base.Parse(loc)
	if err != nil || l.Host != u.base.Host {
		return loc
	}
	pub, err := url.Parse(g.PublicURL)
	if err != nil {
		return loc
	}
	p := strings.TrimPrefix(l.Path, strings.TrimSuffix(u.base.Path, "/"))
	if rest, ok := strings.CutPrefix(p, "/v2/"); ok {
		for _, suffix := range []string{"/blobs/", "/manifests/"} {
			if i := strings.LastIndex(rest, suffix); i > 0 {
				if name, ok := u.FromUpstream(rest[:i]); ok {
					p = "/v2/" + name + rest[i:]
				}
				break
			}
		}
	}
	l.Scheme, l.Host, l.Path, l.RawPath = pub.Scheme, pub.Host, p, ""
	return l.String()
}

// rewriteLink maps the upstream name in a tags list's Link header back.
func (u *Upstream) rewriteLink(link, public string) string {
	up := "/v2/" + u.mapped(public) + "/tags/list"
	return strings.Replace(link, strings.TrimSuffix(u.base.Path, "/")+up, "/v2/"+public+"/tags/list", 1)
}

var (
	errUpstreamAuth = errors.New("upstream refused credentials")
	errNameUnknown  = errors.New("repository unknown upstream")
)

func (u *Upstream) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t := r.Context().Value(ctxKey{}).(*target)
	switch {
	case errors.Is(err, errNameUnknown):
		t.g.unauthorized(w, t.rt, authz.ErrInsufficientScope, "authentication required")
	case errors.Is(err, context.Canceled) || r.Context().Err() != nil:
		// The client went away; the upstream request is already cancelled.
	case errors.Is(err, errUpstreamAuth):
		writeOCIError(w, http.StatusBadGateway, codeUnavailable, "upstream registry refused the request", nil)
	case isTimeout(err):
		u.logger.Warn("upstream timeout", "path", t.path, "err", err)
		writeOCIError(w, http.StatusGatewayTimeout, codeUnavailable, "upstream registry timed out", nil)
	default:
		u.logger.Warn("upstream unavailable", "path", t.path, "err", err)
		writeOCIError(w, http.StatusBadGateway, codeUnavailable, "upstream registry unavailable", nil)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// MeasuredTransport observes the time to response headers of every round
// trip through next, and counts failures (no response, or 5xx).
func MeasuredTransport(next http.RoundTripper, m *obs.Metrics, name string) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := next.RoundTrip(req)
		failed := err != nil && req.Context().Err() == nil || resp != nil && resp.StatusCode >= 500
		m.Upstream(name, time.Since(start).Seconds(), failed)
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Ping asks the upstream's /v2/ whether it answers at all (any status
// below 500 will do: it usually wants credentials), for readiness.
func (u *Upstream) Ping(ctx context.Context) error {
	ref, _ := url.Parse(strings.TrimSuffix(u.base.Path, "/") + "/v2/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base.ResolveReference(ref).String(), nil)
	if err != nil {
		return err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("upstream /v2/: status %d", resp.StatusCode)
	}
	return nil
}

// bufferPool gives the reverse proxy 256 KiB copy buffers: with the
// default 32 KiB a loopback pull loses a good part of its throughput.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// upstreamAuth adds tollgate's own credentials to upstream requests: Basic
// when the upstream accepts it, or the registry token exchange when the
// upstream answers with a Bearer challenge (tokens cached per scope).
type upstreamAuth struct {
	next       http.RoundTripper
	user, pass string

	mu     sync.Mutex
	tokens map[string]cachedToken // by challenge scope
	bearer bool                   // the upstream asked for bearer tokens
}

type cachedToken struct {
	token   string
	expires time.Time
}

// maxUpstreamTokens bounds the cached upstream tokens: the scopes are
// repository paths, and callers choose the repository names.
const maxUpstreamTokens = 10_000

// sweep drops expired tokens, then, if that frees too little, arbitrary
// ones until the cache is 7/8 full, so a full cache is swept once per
// many inserts. Called with mu held.
func (a *upstreamAuth) sweep() {
	now := time.Now()
	for k, t := range a.tokens {
		if !now.Before(t.expires) {
			delete(a.tokens, k)
		}
	}
	for k := range a.tokens {
		if len(a.tokens) < maxUpstreamTokens-maxUpstreamTokens/8 {
			break
		}
		delete(a.tokens, k)
	}
}

func (a *upstreamAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	scope := upstreamScope(req.URL.Path)
	a.mu.Lock()
	bearer := a.bearer
	tok, ok := a.tokens[scope]
	a.mu.Unlock()
	out := req.Clone(req.Context())
	switch {
	case bearer && ok && time.Now().Before(tok.expires):
		out.Header.Set("Authorization", "Bearer "+tok.token)
	case a.user != "":
		out.SetBasicAuth(a.user, a.pass)
	}
	resp, err := a.next.RoundTrip(out)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || req.Body != nil && req.Body != http.NoBody {
		return resp, err
	}
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(strings.ToLower(ch), "bearer ") {
		return resp, nil
	}
	token, ttl, err := a.fetchToken(req.Context(), ch)
	if err != nil {
		return resp, nil // the 401 stands; modifyResponse reports it
	}
	resp.Body.Close()
	a.mu.Lock()
	a.bearer = true
	if _, ok := a.tokens[scope]; !ok && len(a.tokens) >= maxUpstreamTokens {
		a.sweep()
	}
	a.tokens[scope] = cachedToken{token: token, expires: time.Now().Add(ttl - ttl/5)}
	a.mu.Unlock()
	out = req.Clone(req.Context())
	out.Header.Set("Authorization", "Bearer "+token)
	return a.next.RoundTrip(out)
}

// upstreamScope is the cache key for a path's bearer token: its repository.
func upstreamScope(p string) string {
	for _, s := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.Index(p, s); i > 0 {
			return p[:i]
		}
	}
	return p
}

func (a *upstreamAuth) fetchToken(ctx context.Context, challenge string) (string, time.Duration, error) {
	params := parseChallengeParams(challenge[len("bearer "):])
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "http" && realm.Scheme != "https") {
		return "", 0, errors.New("upstream challenge has no usable realm")
	}
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", 0, err
	}
	if a.user != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.user+":"+a.pass)))
	}
	resp, err := a.next.RoundTrip(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("upstream token endpoint: status %d", resp.StatusCode)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tr); err != nil {
		return "", 0, err
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", 0, errors.New("upstream token endpoint returned no token")
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if ttl < time.Minute {
		ttl = time.Minute
	}
	return tok, ttl, nil
}

// parseChallengeParams parses `k="v",k2="v2"` (quoted or bare values).
func parseChallengeParams(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(strings.TrimSpace(s), ",") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var v string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			v, s = b.String(), rest[min(i+1, len(rest)):]
		} else {
			v, s, _ = strings.Cut(rest, ",")
		}
		out[k] = strings.TrimSpace(v)
	}
	return out
}
