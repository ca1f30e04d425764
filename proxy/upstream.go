package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	// RealmHosts are hosts besides the upstream's own to which tollgate
	// sends its credentials when the upstream's Bearer challenge names
	// them as the token realm (a separate token server).
	RealmHosts []string
	Mappings   []Mapping // first matching Public prefix wins; none: identity
	// PublicURL is tollgate's base URL: redirects to the upstream itself
	// are rewritten onto it.
	PublicURL string
	Logger    *slog.Logger
	// Transport overrides the default transport (tests).
	Transport http.RoundTripper
	// Metrics, if set, observes every upstream round trip as "registry".
	Metrics *obs.Metrics
	// Now is the clock of the upstream token and manifest caches (nil:
	// time.Now).
	Now func() time.Time
	// ManifestCacheBytes bounds the manifest cache (0: no cache);
	// ManifestTagTTL is how long a tag's digest is believed (0: tags are
	// always asked upstream; manifests by digest are still cached).
	ManifestCacheBytes int
	ManifestTagTTL     time.Duration
}

// Upstream forwards authorized requests to the upstream registry.
type Upstream struct {
	base     *url.URL
	public   *url.URL // nil: redirects are not rewritten
	mappings []Mapping
	client   *http.Client // for catalog listing and existence checks
	proxy    *httputil.ReverseProxy
	resp     responder
	// manifests answers authorized manifest requests from memory (nil: off).
	manifests *manifestCache
}

// ctxKey carries the forwarded target from serveV2 to Rewrite.
type ctxKey struct{}

type target struct {
	path, query string
	rt          route
	// unknown builds the answer for a repository the upstream does not
	// have: the same refusal as for one the caller may not pull. Built
	// only when needed: most requests never need it.
	unknown func() error
	// accept is set when the answer may fill the manifest cache.
	accept *string
}

// NewUpstream builds the reverse proxy (see newTransport).
func NewUpstream(o UpstreamOptions) (*Upstream, error) {
	base, err := url.Parse(strings.TrimSuffix(o.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil {
		return nil, fmt.Errorf("upstream.url: must be an absolute http or https URL without credentials")
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	rt := o.Transport
	if rt == nil {
		rt = newTransport(o.TLS, 60*time.Second, 128)
	}
	rt = newUpstreamAuth(rt, &url.URL{Scheme: base.Scheme, Host: base.Host}, o.Username, o.Password, o.RealmHosts, o.Now)
	if o.Metrics != nil {
		rt = MeasuredTransport(rt, o.Metrics, "registry")
	}
	u := &Upstream{base: base, mappings: o.Mappings, resp: responder{log: o.Logger, metrics: o.Metrics},
		client: &http.Client{Transport: rt, Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if o.ManifestCacheBytes > 0 {
		u.manifests = newManifestCache(o.ManifestCacheBytes, o.ManifestTagTTL, o.Now)
	}
	if o.PublicURL != "" {
		if u.public, err = url.Parse(o.PublicURL); err != nil {
			return nil, fmt.Errorf("public_url: %w", err)
		}
	}
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
// unknown builds the answer for a repository the upstream does not have.
func (u *Upstream) forward(w http.ResponseWriter, r *http.Request, rt route, unknown func() error) {
	var accept *string
	if rt.kind == routeManifest && u.manifests != nil && cacheable(r) {
		a := u.manifests.acceptKey(r)
		if u.manifests.serve(w, r, u.mapped(rt.name), rt.ref, a) {
			return
		}
		accept = &a
	}
	var query string
	if r.URL.RawQuery != "" && (rt.kind == routeTags || rt.kind == routeReferrers) {
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
		query = q.Encode()
	}
	t := &target{path: u.upstreamPath(rt), query: query, rt: rt, unknown: unknown, accept: accept}
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
	stripUpgrade(out.Header)
}

// Errors from modifyResponse, answered by errorHandler.
var (
	errUpstreamAuth = errors.New("upstream refused credentials")
	errNameUnknown  = errors.New("repository unknown upstream")
)

// maxSmallBody bounds the upstream bodies tollgate reads to rewrite
// (error envelopes, tag lists).
const maxSmallBody = 4 << 20

func (u *Upstream) modifyResponse(resp *http.Response) error {
	t := resp.Request.Context().Value(ctxKey{}).(*target)
	h := resp.Header
	h.Del("Set-Cookie")
	h.Del("WWW-Authenticate")
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	switch s := resp.StatusCode; {
	case s == http.StatusSwitchingProtocols:
		return errProtocolSwitch
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		// Our own credentials were refused: that is the upstream's (or
		// the operator's) problem, not the client's.
		u.resp.log.Error("upstream refused tollgate's credentials", "status", s, "path", obs.RedactPath(t.path))
		return errUpstreamAuth
	case s == http.StatusNotFound:
		body, _ := readSmall(resp.Body, 64<<10)
		// A missing repository must look like one the caller is not
		// entitled to. distribution answers MANIFEST_UNKNOWN for a tag
		// of a missing repository, so ask its tag list to tell them apart.
		if bytes.Contains(body, []byte(errcode.ErrorCodeNameUnknown.String())) || (t.rt.kind != routeTags && !u.repoExists(resp.Request.Context(), t.rt.name)) {
			return errNameUnknown
		}
		setBody(resp, u.publicErrors(body, t.rt.name))
	case s >= 400:
		if u.mapped(t.rt.name) != t.rt.name && resp.Request.Method != http.MethodHead {
			body, _ := readSmall(resp.Body, 64<<10)
			setBody(resp, u.publicErrors(body, t.rt.name))
		}
	case s >= 300 && s < 400:
		if loc := h.Get("Location"); loc != "" {
			h.Set("Location", u.rewriteLocation(loc))
		}
	case s == http.StatusOK && t.rt.kind == routeTags && resp.Request.Method == http.MethodGet && u.mapped(t.rt.name) != t.rt.name:
		body, err := readSmall(resp.Body, maxSmallBody)
		if err != nil {
			return err
		}
		setBody(resp, publicTagList(body, t.rt.name))
	}
	if t.accept != nil && resp.StatusCode == http.StatusOK {
		u.manifests.fill(resp, u.mapped(t.rt.name), t.rt.ref, *t.accept)
	}
	if link := h.Get("Link"); link != "" && t.rt.kind == routeTags {
		h.Set("Link", u.rewriteLink(link, t.rt.name))
	}
	return nil
}

// setBody replaces resp's body with b.
func setBody(resp *http.Response, b []byte) {
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	resp.Header.Del("Content-Encoding")
}

// publicErrors rewrites an upstream error envelope so that it speaks the
// public repository name: messages mention it instead of the upstream's,
// and details (which may hold upstream names or paths) are dropped. A
// body that is not an envelope becomes a generic one.
func (u *Upstream) publicErrors(body []byte, public string) []byte {
	up := u.mapped(public)
	if up == public {
		return body
	}
	var env struct {
		Errors []errcode.Error `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 {
		env.Errors = []errcode.Error{{Code: errcode.ErrorCodeUnknown, Message: "upstream error"}}
	}
	for i := range env.Errors {
		env.Errors[i].Message = strings.ReplaceAll(env.Errors[i].Message, up, public)
		env.Errors[i].Detail = nil
	}
	out, _ := json.Marshal(env)
	return out
}

// publicTagList sets a tag list's name to the public repository name.
func publicTagList(body []byte, public string) []byte {
	var list map[string]json.RawMessage
	if json.Unmarshal(body, &list) != nil {
		return body
	}
	list["name"], _ = json.Marshal(public)
	out, _ := json.Marshal(list)
	return out
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
	body, _ := readSmall(resp.Body, 64<<10)
	return !(resp.StatusCode == http.StatusNotFound && bytes.Contains(body, []byte(errcode.ErrorCodeNameUnknown.String())))
}

// rewriteLocation maps a redirect to the upstream itself onto tollgate's
// public URL and public names; a redirect elsewhere (a presigned storage
// URL) passes through unchanged, and tollgate never follows it with
// credentials.
func (u *Upstream) rewriteLocation(loc string) string {
	l, err := u.base.Parse(loc)
	if err != nil || l.Host != u.base.Host || u.public == nil {
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
	l.Scheme, l.Host, l.Path, l.RawPath = u.public.Scheme, u.public.Host, strings.TrimSuffix(u.public.Path, "/")+p, ""
	return l.String()
}

// rewriteLink maps the upstream name in a tags list's Link header back.
func (u *Upstream) rewriteLink(link, public string) string {
	up := "/v2/" + u.mapped(public) + "/tags/list"
	return strings.Replace(link, strings.TrimSuffix(u.base.Path, "/")+up, "/v2/"+public+"/tags/list", 1)
}

func (u *Upstream) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t := r.Context().Value(ctxKey{}).(*target)
	if errors.Is(err, errNameUnknown) {
		u.resp.fail(w, r, styleOCI, t.unknown())
		return
	}
	e := &refusal{code: errcode.ErrorCodeUnavailable, status: http.StatusBadGateway, message: "upstream registry unavailable", err: err}
	switch {
	case errors.Is(err, errUpstreamAuth):
		e.message = "upstream registry refused the request"
	case isTimeout(err):
		e.status, e.message = http.StatusGatewayTimeout, "upstream registry timed out"
	}
	u.resp.fail(w, r, styleOCI, e)
}

// ManifestCacheStats reports what the manifest cache did (zero without one).
func (u *Upstream) ManifestCacheStats() ManifestCacheStats {
	if u.manifests == nil {
		return ManifestCacheStats{}
	}
	return u.manifests.Stats()
}

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
