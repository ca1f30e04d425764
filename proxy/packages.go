package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/obs"
)

// Package repository formats: the first path segment, /apt/ or /apk/.
const (
	FormatApt = tollgate.PackageApt
	FormatApk = tollgate.PackageApk
)

// PackageRealm is the realm of the Basic challenge on /apt/ and /apk/
// when there is no public URL. With one, the realm is its host without
// the port (packageRealm), the host HTTP_AUTH=basic:HOST:user:pass names
// (tollgate.HTTPAuth says why there is no port in it).
const PackageRealm = "tollgate"

func packageRealm(publicURL string) string {
	if u, err := url.Parse(publicURL); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return PackageRealm
}

// PackageUpstream is one apt or apk repository and its upstream.
type PackageUpstream struct {
	Format tollgate.PackageFormat
	Name   string // the path segment after /apt/ or /apk/
	// URL is the upstream base URL the repository's files are below.
	URL string
	// TLS for the upstream; nil: system roots.
	TLS *tls.Config
	// Username and Password are tollgate's own Basic credentials at the
	// upstream, sent only to the upstream's own scheme://host:port, never
	// to a host it redirects to.
	Username, Password string
}

// PackagesOptions configures the package routes.
type PackagesOptions struct {
	Repos []PackageUpstream
	// MaxRedirects bounds the upstream redirects followed for one request
	// (0: none; a redirect is then a 502). Clients never see redirects.
	MaxRedirects int
	// HeaderTimeout bounds the wait for the upstream's response headers
	// (0: 60 s). Bodies have no overall timeout: files can be large.
	HeaderTimeout time.Duration
	// Transport replaces the transport to the upstreams (tests).
	Transport http.RoundTripper
}

// Packages serves /apt/REPO/... and /apk/REPO/... through the shared
// front: HTTP Basic with a registry token as the password, decided by
// authz.Decide for the package repository REPO, then the file streamed
// from REPO's upstream byte for byte.
type Packages struct {
	f     *front
	realm string
	repos map[string]*pkgUpstream // by "format/name"
}

type pkgUpstream struct {
	repo  PackageUpstream
	base  *url.URL
	proxy *httputil.ReverseProxy
}

// pkgTarget carries the authorized upstream path from serve to Rewrite.
type pkgTarget struct {
	caller  caller
	up      *pkgUpstream
	path    string // unescaped, below the upstream base
	rawPath string // the same, escaped
	logPath string // what the client asked for, for logs
	tok     *tollgate.Token
}

type pkgCtxKey struct{}

// newPackages checks the repositories and builds their reverse proxies.
func newPackages(f *front, o PackagesOptions, realm string) (*Packages, error) {
	p := &Packages{f: f, realm: realm, repos: map[string]*pkgUpstream{}}
	for _, r := range o.Repos {
		field := "packages: " + string(r.Format) + " repository " + strconv.Quote(r.Name)
		if r.Format != FormatApt && r.Format != FormatApk {
			return nil, fmt.Errorf("%s: format must be apt or apk", field)
		}
		if !tollgate.ValidPackageRepoName(r.Name) {
			return nil, fmt.Errorf("%s: invalid name", field)
		}
		if p.repos[string(r.Format)+"/"+r.Name] != nil {
			return nil, fmt.Errorf("%s: listed twice", field)
		}
		base, err := url.Parse(strings.TrimSuffix(r.URL, "/"))
		if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil {
			// The URL is not quoted: it could carry credentials.
			return nil, fmt.Errorf("%s: url must be an absolute http or https URL without credentials", field)
		}
		up := &pkgUpstream{repo: r, base: base}
		rt := o.Transport
		if rt == nil {
			rt = newTransport(r.TLS, o.HeaderTimeout, 64)
		}
		rt = &originAuth{next: rt, scheme: base.Scheme, host: base.Host, user: r.Username, pass: r.Password}
		rt = &followRedirects{next: rt, max: o.MaxRedirects}
		up.proxy = &httputil.ReverseProxy{
			Rewrite:        up.rewrite,
			Transport:      rt,
			ModifyResponse: p.modifyResponse,
			ErrorHandler:   p.errorHandler,
			BufferPool:     bufferPool{},
			ErrorLog:       slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
		}
		p.repos[string(r.Format)+"/"+r.Name] = up
	}
	return p, nil
}

// parsePackagePath splits /FORMAT/REPO/FILE... from the escaped path. It
// refuses, rather than cleans, anything that could name another place:
// an invalid or encoded REPO, empty segments, "." and ".." (also
// percent-encoded), encoded '/' or '\', control characters and bad
// escapes. The segments come back unescaped and re-escaped, so that what
// is forwarded is exactly what was checked.
func parsePackagePath(escaped string) (format tollgate.PackageFormat, repo, path, rawPath string, ok bool) {
	switch {
	case strings.HasPrefix(escaped, "/apt/"):
		format = FormatApt
	case strings.HasPrefix(escaped, "/apk/"):
		format = FormatApk
	default:
		return "", "", "", "", false
	}
	segs := strings.Split(escaped[len("/apt/"):], "/")
	repo = segs[0]
	if !tollgate.ValidPackageRepoName(repo) || len(segs) < 2 {
		return "", "", "", "", false
	}
	var p, raw strings.Builder
	for _, s := range segs[1:] {
		dec, err := url.PathUnescape(s)
		if err != nil || dec == "" || dec == "." || dec == ".." || len(dec) > 255 ||
			strings.ContainsFunc(dec, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '/' || r == '\\' }) {
			return "", "", "", "", false
		}
		p.WriteString("/" + dec)
		raw.WriteString("/" + url.PathEscape(dec))
	}
	return format, repo, p.String(), raw.String(), true
}

// serve answers one package request.
func (p *Packages) serve(w http.ResponseWriter, r *http.Request) {
	t, err := p.authorize(r)
	if err != nil {
		p.f.fail(w, r, stylePlain, err)
		return
	}
	p.f.warn(w, t.caller)
	w, done := p.f.count(w, r, t.caller)
	defer done() // also when the stream is cut (http.ErrAbortHandler)
	w, tracked := p.f.track(w, r, t.caller.token, tollgate.PullEvent{Kind: tollgate.PullPackage, Repository: string(t.up.repo.Format) + "/" + t.up.repo.Name, Path: t.path})
	defer tracked()
	t.up.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pkgCtxKey{}, t)))
}

// authorize parses the path and decides the request. Refusals: 401 with
// the Basic challenge for missing or unusable credentials (apk sends
// HTTP_AUTH or netrc credentials only after one), 403 for a valid token
// that may not read the repository, 404 for a path that cannot be.
func (p *Packages) authorize(r *http.Request) (*pkgTarget, error) {
	format, name, path, rawPath, ok := parsePackagePath(r.URL.EscapedPath())
	if !ok {
		return nil, refuse(errcode.ErrorCodeNameInvalid, "", "not found: invalid path").withStatus(http.StatusNotFound)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil, &refusal{code: errcode.ErrorCodeUnsupported, message: "method not allowed: package repositories are read-only", allow: "GET, HEAD"}
	}
	var c caller
	var err error
	switch _, password, ok := authz.ParseBasic(r.Header.Get("Authorization")); {
	case r.Header.Get("Authorization") == "":
		err = refuse(errcode.ErrorCodeUnauthorized, "", "authentication required: use HTTP Basic with a registry token as the password")
	case !ok:
		err = p.f.guess(r, r.Header.Get("Authorization"), "invalid credentials")
	default:
		c, err = p.f.bySecret(r, password)
	}
	if err != nil {
		return nil, &authz.Basic{Realm: p.realm, Err: err}
	}
	p.f.metered(r, &c, r.Method == http.MethodGet)
	switch reason := authz.Decide(c.token, c.account, p.f.now(), c.resource(r, authz.Package, name)); reason {
	case authz.OK:
	case authz.CapReached:
		return nil, p.f.capRefusal(c)
	case authz.WrongScope, authz.NotEntitled, authz.Restricted, authz.AddressNotAllowed:
		return nil, refuse(errcode.ErrorCodeDenied, string(reason), packageDenyMessage(reason, c.account, name))
	default:
		return nil, &authz.Basic{Realm: p.realm, Err: refuse(errcode.ErrorCodeUnauthorized, string(reason), denyMessage(reason))}
	}
	up := p.repos[string(format)+"/"+name]
	if up == nil {
		// Only an entitled caller learns that a repository does not exist.
		return nil, refuse(errcode.ErrorCodeNameUnknown, "", "not found: no "+string(format)+" repository "+name)
	}
	p.f.allow(r, c.token)
	if r.Method == http.MethodGet {
		p.f.used(r, c)
	}
	return &pkgTarget{caller: c, up: up, path: path, rawPath: rawPath, logPath: obs.RedactPath(string(format) + "/" + name + path)}, nil
}

// packageDenyMessage says why a valid token may not read the repository.
func packageDenyMessage(reason authz.Reason, acct *tollgate.Account, repo string) string {
	switch {
	case reason == authz.WrongScope:
		return "forbidden: this token does not have the packages scope"
	case reason == authz.Restricted:
		return "forbidden: this token is restricted to other package repositories than " + repo
	case reason == authz.AddressNotAllowed:
		return "forbidden: this token may not be used from this address (its allowed-networks rule)"
	case acct.PackageAccess != tollgate.PackageAccessGranted:
		return "forbidden: package access has not been granted to this account"
	}
	return "forbidden: the subscription does not include package repository " + repo
}

func (u *pkgUpstream) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(pkgCtxKey{}).(*pkgTarget)
	out := pr.Out
	out.URL.Scheme = u.base.Scheme
	out.URL.Host = u.base.Host
	out.URL.Path = u.base.Path + t.path
	out.URL.RawPath = u.base.EscapedPath() + t.rawPath
	out.URL.RawQuery = ""
	out.URL.Fragment = ""
	out.Host = u.base.Host
	// The client's credentials never go upstream; originAuth adds ours.
	out.Header.Del("Authorization")
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Cookie")
	// Identity bytes only: the client gets the upstream's file as it is
	// (signatures cover the compressed bytes).
	out.Header.Del("Accept-Encoding")
	stripUpgrade(out.Header)
}

// Errors from modifyResponse, answered by errorHandler.
var (
	errPkgNotFound       = errors.New("not found upstream")
	errPkgUpstreamRefuse = errors.New("upstream refused tollgate's credentials")
)

// upstreamStatusError is an upstream 5xx.
type upstreamStatusError struct {
	status     int
	retryAfter string
}

func (e *upstreamStatusError) Error() string { return "upstream status " + strconv.Itoa(e.status) }

func (p *Packages) modifyResponse(resp *http.Response) error {
	t := resp.Request.Context().Value(pkgCtxKey{}).(*pkgTarget)
	h := resp.Header
	h.Del("Set-Cookie")
	h.Del("WWW-Authenticate")
	// Nothing may point the client at the upstream.
	h.Del("Location")
	h.Del("Content-Location")
	switch s := resp.StatusCode; {
	case s == http.StatusSwitchingProtocols:
		return errProtocolSwitch
	case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusProxyAuthRequired:
		p.f.log.Error("package upstream refused tollgate's credentials", "status", s, "repo", string(t.up.repo.Format)+"/"+t.up.repo.Name)
		return errPkgUpstreamRefuse
	case s == http.StatusNotFound || s == http.StatusGone:
		return errPkgNotFound
	case s >= 300 && s < 400 && s != http.StatusNotModified:
		return errBadRedirect // a redirect followRedirects could not use
	case s >= 500:
		return &upstreamStatusError{status: s, retryAfter: h.Get("Retry-After")}
	}
	return nil
}

func (p *Packages) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t := r.Context().Value(pkgCtxKey{}).(*pkgTarget)
	e := &refusal{code: errcode.ErrorCodeUnavailable, status: http.StatusBadGateway, message: "upstream repository unavailable", err: fmt.Errorf("%s: %w", t.logPath, err)}
	var se *upstreamStatusError
	switch {
	case errors.Is(err, errPkgNotFound):
		e = refuse(errcode.ErrorCodeNameUnknown, "", "not found")
	case errors.As(err, &se) && se.status == http.StatusServiceUnavailable:
		e.status, e.message = se.status, "upstream repository unavailable, retry later"
		if d, err := strconv.Atoi(se.retryAfter); err == nil && d > 0 && d < 24*3600 {
			e.retry = time.Duration(d) * time.Second
		}
	case errors.As(err, &se) && se.status == http.StatusGatewayTimeout:
		e.status, e.message = se.status, "upstream repository timed out"
	case errors.As(err, &se):
		e.message = "upstream repository failed"
	case errors.Is(err, errPkgUpstreamRefuse):
		e.message = "upstream repository refused the request"
	case errors.Is(err, errTooManyRedirects), errors.Is(err, errBadRedirect):
		e.message = "upstream repository redirected too often"
	case isTimeout(err):
		e.status, e.message = http.StatusGatewayTimeout, "upstream repository timed out"
	}
	p.f.fail(w, r, stylePlain, e)
}
