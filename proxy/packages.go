package proxy

import (
	"context"
	"crypto/tls"
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
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
)

// Package repository formats: the first path segment, /apt/ or /apk/.
const (
	FormatApt = "apt"
	FormatApk = "apk"
)

// PackageRealm is the realm of the Basic challenge on /apt/ and /apk/
// (apk matches it against HTTP_AUTH=basic:REALM:user:pass).
const PackageRealm = "tollgate"

// PackageRepo is one apt or apk repository and its upstream.
type PackageRepo struct {
	Format string // FormatApt or FormatApk
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

// PackagesOptions configures NewPackages.
type PackagesOptions struct {
	Repos  []PackageRepo
	Lookup Lookup
	Keys   *tollgate.Keys // hashes presented secrets for Lookup
	Usage  UsageRecorder  // optional
	Logger *slog.Logger
	Now    func() time.Time
	// MaxRedirects bounds the upstream redirects followed for one request
	// (0: none; a redirect is then a 502). Clients never see redirects.
	MaxRedirects int
	// HeaderTimeout bounds the wait for the upstream's response headers
	// (0: 60 s). Bodies have no overall timeout: files can be large.
	HeaderTimeout time.Duration
	// Transport replaces the transport to the upstreams (tests).
	Transport http.RoundTripper

	// Optional hooks for metrics and failed-authentication limits.
	// Blocked is asked first; when it says so the request gets a 429
	// with Retry-After. Failed is told of every 401 with a presented
	// credential, Denied of every 403, Allowed of every request let
	// through. reason is an authz.Reason or "invalid_credentials".
	Blocked func(r *http.Request) (retryAfter time.Duration, blocked bool)
	Failed  func(r *http.Request, reason string)
	Denied  func(r *http.Request, reason string)
	Allowed func(r *http.Request, tok *tollgate.Token)
}

// Packages serves /apt/REPO/... and /apk/REPO/...: HTTP Basic with a
// registry token as the password, decided by authz.Decide for the
// package repository REPO, then the file streamed from REPO's upstream
// byte for byte.
type Packages struct {
	o      PackagesOptions
	repos  map[string]*pkgUpstream // by "format/name"
	logger *slog.Logger
}

type pkgUpstream struct {
	repo  PackageRepo
	base  *url.URL
	proxy *httputil.ReverseProxy
}

// pkgTarget carries the authorized upstream path from ServeHTTP to
// Rewrite.
type pkgTarget struct {
	up      *pkgUpstream
	path    string // unescaped, below the upstream base
	rawPath string // the same, escaped
	logPath string // what the client asked for, for logs
}

type pkgCtxKey struct{}

// NewPackages checks the repositories and builds their reverse proxies.
// It starts nothing.
func NewPackages(o PackagesOptions) (*Packages, error) {
	if o.Lookup == nil || o.Keys == nil {
		return nil, errors.New("packages: Lookup and Keys are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 60 * time.Second
	}
	p := &Packages{o: o, repos: map[string]*pkgUpstream{}, logger: o.Logger}
	for _, r := range o.Repos {
		field := "packages: " + r.Format + " repository " + strconv.Quote(r.Name)
		if r.Format != FormatApt && r.Format != FormatApk {
			return nil, fmt.Errorf("%s: format must be apt or apk", field)
		}
		if !tollgate.ValidPackageRepoName(r.Name) {
			return nil, fmt.Errorf("%s: invalid name", field)
		}
		if p.repos[r.Format+"/"+r.Name] != nil {
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
			rt = &http.Transport{
				Proxy:                 nil,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				TLSClientConfig:       r.TLS,
				TLSHandshakeTimeout:   10 * time.Second,
				ResponseHeaderTimeout: o.HeaderTimeout,
				ExpectContinueTimeout: time.Second,
				MaxIdleConns:          256,
				MaxIdleConnsPerHost:   64,
				IdleConnTimeout:       90 * time.Second,
				DisableCompression:    true,
				ForceAttemptHTTP2:     true,
				ReadBufferSize:        64 << 10,
				WriteBufferSize:       64 << 10,
			}
		}
		rt = &originAuth{next: rt, scheme: base.Scheme, host: base.Host, user: r.Username, pass: r.Password}
		rt = &followRedirects{next: rt, max: o.MaxRedirects}
		up.proxy = &httputil.ReverseProxy{
			Rewrite:        up.rewrite,
			Transport:      rt,
			ModifyResponse: p.modifyResponse,
			ErrorHandler:   p.errorHandler,
			BufferPool:     bufferPool{},
			ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		}
		p.repos[r.Format+"/"+r.Name] = up
	}
	return p, nil
}

// parsePackagePath splits /FORMAT/REPO/FILE... from the escaped path. It
// refuses, rather than cleans, anything that could name another place:
// an invalid or encoded REPO, empty segments, "." and ".." (also
// percent-encoded), encoded '/' or '\', control characters and bad
// escapes. The segments come back unescaped and re-escaped, so that what
// is forwarded is exactly what was checked.
func parsePackagePath(escaped string) (format, repo, path, rawPath string, ok bool) {
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

// ServeHTTP answers one package request.
func (p *Packages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format, name, path, rawPath, ok := parsePackagePath(r.URL.EscapedPath())
	if !ok {
		textError(w, http.StatusNotFound, "not found: invalid path")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		textError(w, http.StatusMethodNotAllowed, "method not allowed: package repositories are read-only")
		return
	}
	if p.o.Blocked != nil {
		if retry, blocked := p.o.Blocked(r); blocked {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retry/time.Second))))
			textError(w, http.StatusTooManyRequests, "too many failed authentications, retry later")
			return
		}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		p.challenge(w, "authentication required: use HTTP Basic with a registry token as the password")
		return
	}
	_, password, ok := authz.ParseBasic(h)
	if !ok {
		p.failed(r, "invalid_credentials")
		p.challenge(w, "invalid credentials")
		return
	}
	tok, acct, err := p.authenticate(r.Context(), password)
	switch tollgate.ErrorCode(err) {
	case "":
	case tollgate.EUNAUTHORIZED:
		p.failed(r, "invalid_credentials")
		p.challenge(w, "invalid credentials")
		return
	case tollgate.EUNAVAILABLE:
		p.logger.Warn("token lookup unavailable", "err", err)
		w.Header().Set("Retry-After", "5")
		textError(w, http.StatusServiceUnavailable, "temporarily unavailable, retry later")
		return
	default:
		p.logger.Error("token lookup failed", "err", err)
		textError(w, http.StatusServiceUnavailable, "temporarily unavailable, retry later")
		return
	}
	reason := authz.Decide(tok, acct, p.o.Now(), authz.Resource{Kind: authz.Package, Name: name})
	switch reason {
	case authz.OK:
	case authz.WrongScope, authz.NotEntitled:
		p.logger.Debug("package request denied", "token", tok.ID, "format", format, "repo", name, "reason", string(reason))
		if p.o.Denied != nil {
			p.o.Denied(r, string(reason))
		}
		textError(w, http.StatusForbidden, packageDenyMessage(reason, acct, name))
		return
	default:
		p.logger.Debug("package request refused", "token", tok.ID, "reason", string(reason))
		p.failed(r, string(reason))
		p.challenge(w, packageRefuseMessage(reason))
		return
	}
	up := p.repos[format+"/"+name]
	if up == nil {
		// Only an entitled caller learns that a repository does not exist.
		textError(w, http.StatusNotFound, "not found: no "+format+" repository "+name)
		return
	}
	if p.o.Allowed != nil {
		p.o.Allowed(r, tok)
	}
	if p.o.Usage != nil && r.Method == http.MethodGet {
		p.o.Usage.RecordUse(tok.ID, clientIP(r), r.UserAgent(), p.o.Now())
	}
	t := &pkgTarget{up: up, path: path, rawPath: rawPath, logPath: format + "/" + name + path}
	up.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pkgCtxKey{}, t)))
}

func (p *Packages) authenticate(ctx context.Context, secret string) (*tollgate.Token, *tollgate.Account, error) {
	s, err := tollgate.ParseToken(secret)
	if err != nil {
		return nil, nil, err
	}
	return p.o.Lookup.Token(ctx, p.o.Keys.Hash(s))
}

func (p *Packages) failed(r *http.Request, reason string) {
	if p.o.Failed != nil {
		p.o.Failed(r, reason)
	}
}

// challenge answers 401 with the Basic challenge: apk sends HTTP_AUTH or
// netrc credentials only after one.
func (p *Packages) challenge(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", authz.BasicChallenge(PackageRealm))
	textError(w, http.StatusUnauthorized, msg)
}

// packageRefuseMessage says why a token is not usable at all.
func packageRefuseMessage(reason authz.Reason) string {
	switch reason {
	case authz.Revoked, authz.Expired, authz.Suspended:
		return denyMessage(reason)
	}
	return "invalid credentials"
}

// packageDenyMessage says why a valid token may not read the repository.
func packageDenyMessage(reason authz.Reason, acct *tollgate.Account, repo string) string {
	switch {
	case reason == authz.WrongScope:
		return "forbidden: this token does not have the packages scope"
	case acct.PackageAccess != tollgate.PackageAccessGranted:
		return "forbidden: package access has not been granted to this account"
	}
	return "forbidden: the subscription does not include package repository " + repo
}

// textError writes a short plain-text answer. It never carries a secret.
func textError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(msg)+1))
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
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
}

// Errors from ModifyResponse and the transport, answered by errorHandler.
var (
	errPkgNotFound       = errors.New("not found upstream")
	errTooManyRedirects  = errors.New("too many upstream redirects")
	errBadRedirect       = errors.New("unusable upstream redirect")
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
	case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusProxyAuthRequired:
		p.logger.Error("package upstream refused tollgate's credentials", "status", s, "repo", t.up.repo.Format+"/"+t.up.repo.Name)
		return errPkgUpstreamRefuse
	case s == http.StatusNotFound || s == http.StatusGone:
		return errPkgNotFound
	case s >= 300 && s < 400 && s != http.StatusNotModified:
		return errBadRedirect // a redirect followRedirects could not use
	case s >= 500:
		p.logger.Warn("package upstream failed", "status", s, "path", t.logPath)
		return &upstreamStatusError{status: s, retryAfter: h.Get("Retry-After")}
	}
	return nil
}

func (p *Packages) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t := r.Context().Value(pkgCtxKey{}).(*pkgTarget)
	var se *upstreamStatusError
	switch {
	case errors.Is(err, errPkgNotFound):
		textError(w, http.StatusNotFound, "not found")
	case errors.As(err, &se):
		switch se.status {
		case http.StatusServiceUnavailable:
			if ra := se.retryAfter; ra != "" && len(ra) < 64 {
				w.Header().Set("Retry-After", ra)
			}
			textError(w, http.StatusServiceUnavailable, "upstream repository unavailable, retry later")
		case http.StatusGatewayTimeout:
			textError(w, http.StatusGatewayTimeout, "upstream repository timed out")
		default:
			textError(w, http.StatusBadGateway, "upstream repository failed")
		}
	case r.Context().Err() != nil:
		// The client went away; the upstream request is already cancelled.
	case errors.Is(err, errPkgUpstreamRefuse):
		textError(w, http.StatusBadGateway, "upstream repository refused the request")
	case errors.Is(err, errTooManyRedirects), errors.Is(err, errBadRedirect):
		p.logger.Warn("package upstream redirect not followed", "path", t.logPath, "err", err)
		textError(w, http.StatusBadGateway, "upstream repository redirected too often")
	case isTimeout(err):
		p.logger.Warn("package upstream timeout", "path", t.logPath, "err", err)
		textError(w, http.StatusGatewayTimeout, "upstream repository timed out")
	default:
		p.logger.Warn("package upstream unavailable", "path", t.logPath, "err", err)
		textError(w, http.StatusBadGateway, "upstream repository unavailable")
	}
}

// originAuth adds tollgate's Basic credentials to requests for the
// upstream's own origin, and to no other (a redirect to a CDN or object
// store gets none).
type originAuth struct {
	next         http.RoundTripper
	scheme, host string
	user, pass   string
}

func (a *originAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if a.user == "" || req.URL.Scheme != a.scheme || !strings.EqualFold(req.URL.Host, a.host) {
		return a.next.RoundTrip(req)
	}
	out := req.Clone(req.Context())
	out.SetBasicAuth(a.user, a.pass)
	return a.next.RoundTrip(out)
}

// followRedirects follows upstream redirects for GET and HEAD, at most max
// of them, so that the client only ever sees the final answer. Each hop
// keeps the request's conditional and Range headers.
type followRedirects struct {
	next http.RoundTripper
	max  int
}

func (f *followRedirects) RoundTrip(req *http.Request) (*http.Response, error) {
	for hops := 0; ; hops++ {
		resp, err := f.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if hops >= f.max {
			return nil, errTooManyRedirects
		}
		next, err := req.URL.Parse(loc)
		if loc == "" || err != nil || (next.Scheme != "http" && next.Scheme != "https") || next.Host == "" {
			return nil, errBadRedirect
		}
		next.User = nil
		next.Fragment = ""
		out := req.Clone(req.Context())
		out.URL = next
		out.Host = next.Host
		out.Header.Del("Authorization") // originAuth decides per hop
		req = out
	}
}
