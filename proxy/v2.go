package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/gorilla/mux"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/obs"
)

// Route kinds the proxy serves.
const (
	routeBase      = v2.RouteNameBase
	routeManifest  = v2.RouteNameManifest
	routeBlob      = v2.RouteNameBlob
	routeTags      = v2.RouteNameTags
	routeCatalog   = v2.RouteNameCatalog
	routeReferrers = "referrers"
)

// route is a parsed, validated /v2/ path. The upstream path is rebuilt
// from these fields, never copied from the request: the path that is
// authorized is the path that is forwarded.
type route struct {
	kind string
	name string // repository, public form
	ref  string // tag or digest (manifest), digest (blob, referrers)
	// write is set for routes that only accept writes (uploads).
	write bool
}

var (
	v2Router = v2.Router()
	// A repository name is path components only (no domain part, so no
	// upper case and no ':'), as the OCI distribution spec defines it.
	anchoredName    = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	anchoredDigest  = regexp.MustCompile(`^` + reference.DigestRegexp.String() + `$`)
	referrersPathRe = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)
	errBadPath      = errors.New("invalid path")
)

func validRepoName(name string) bool {
	return len(name) <= 255 && anchoredName.MatchString(name)
}

// parseRoute validates the request path once: no percent-encoding at
// all (repository names, tags and digests never need it), no empty, "."
// or ".." segments, then distribution's own route table.
func parseRoute(r *http.Request) (route, error) {
	p := r.URL.Path
	if r.URL.RawPath != "" || strings.Contains(r.URL.EscapedPath(), "%") || strings.ContainsAny(p, "\\\x00") {
		return route{}, errBadPath
	}
	if p == "/v2" || p == "/v2/" {
		return route{kind: routeBase}, nil
	}
	segs := strings.Split(strings.TrimPrefix(p, "/v2/"), "/")
	for i, s := range segs {
		if s == "." || s == ".." || (s == "" && i != len(segs)-1) {
			return route{}, errBadPath
		}
	}
	if m := referrersPathRe.FindStringSubmatch(p); m != nil {
		if !validRepoName(m[1]) || !anchoredDigest.MatchString(m[2]) {
			return route{}, errBadPath
		}
		return route{kind: routeReferrers, name: m[1], ref: m[2]}, nil
	}
	var match mux.RouteMatch
	probe := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: p}}
	if !v2Router.Match(probe, &match) || match.Route == nil {
		return route{}, errBadPath
	}
	rt := route{kind: match.Route.GetName(), name: match.Vars["name"]}
	switch rt.kind {
	case routeManifest:
		rt.ref = match.Vars["reference"]
	case routeBlob:
		rt.ref = match.Vars["digest"]
	case routeTags, routeCatalog:
	case v2.RouteNameBlobUpload, v2.RouteNameBlobUploadChunk:
		rt.write = true
	default:
		return route{}, errBadPath
	}
	if rt.name != "" && !validRepoName(rt.name) {
		return route{}, errBadPath
	}
	return rt, nil
}

// caller is who is behind a /v2/ request.
type caller struct {
	token   *tollgate.Token // nil for anonymous
	account *tollgate.Account
	claims  *authz.Claims // nil when the request used Basic credentials
}

func (g *Registry) challenge(w http.ResponseWriter, scope, errCode string) {
	c := authz.Challenge{Realm: g.realm(), Service: g.Service, Error: errCode}
	if scope != "" {
		c.Scopes = []string{scope}
	}
	w.Header().Set("WWW-Authenticate", c.Header())
}

// unauthorized answers 401 with the full challenge and an UNAUTHORIZED
// envelope; a denied repository and a missing one look the same.
func (g *Registry) unauthorized(w http.ResponseWriter, rt route, errCode, msg string) {
	scope := ""
	if rt.name != "" {
		scope = "repository:" + rt.name + ":pull"
	} else if rt.kind == routeCatalog {
		scope = "registry:catalog:*"
	}
	g.challenge(w, scope, errCode)
	var detail any
	if rt.name != "" {
		detail = []map[string]string{{"Type": "repository", "Name": rt.name, "Action": "pull"}}
	}
	writeOCIError(w, http.StatusUnauthorized, codeUnauthorized, msg, detail)
}

func (g *Registry) serveV2(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, err := parseRoute(r)
	if err != nil {
		writeOCIError(w, http.StatusNotFound, codeNameInvalid, "invalid repository name or path", nil)
		return
	}
	obs.FromContext(r.Context()).Repo = rt.name
	c, ok := g.identify(w, r, rt)
	if !ok {
		return
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if !read || rt.write {
		if c.token == nil && c.claims == nil {
			g.unauthorized(w, rt, "", "authentication required")
			return
		}
		writeOCIError(w, http.StatusForbidden, codeDenied, "this registry is read-only", nil)
		return
	}
	now := g.now()
	switch rt.kind {
	case routeBase:
		w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
		writeJSON(w, http.StatusOK, struct{}{})
		return
	case routeCatalog:
		if c.claims != nil && !c.claims.Allows("registry", "catalog", "*") {
			g.denied(r, string(authz.NotEntitled))
			g.unauthorized(w, rt, authz.ErrInsufficientScope, "catalog access not granted")
			return
		}
		g.serveCatalog(w, r, func(name string) bool { return g.may(c, name) })
		return
	}
	if c.claims != nil && !c.claims.Allows("repository", rt.name, "pull") {
		g.denied(r, string(authz.NotEntitled))
		g.unauthorized(w, rt, authz.ErrInsufficientScope, "authentication required")
		return
	}
	if c.token != nil {
		switch reason := authz.Decide(c.token, c.account, now, authz.Resource{Kind: authz.Image, Name: rt.name}); reason {
		case authz.OK:
		case authz.WrongScope, authz.NotEntitled:
			if !g.anonymous(rt.name) {
				g.denied(r, string(reason))
				g.unauthorized(w, rt, authz.ErrInsufficientScope, "authentication required")
				return
			}
		default:
			g.denied(r, string(reason))
			g.unauthorized(w, rt, authz.ErrInvalidToken, denyMessage(reason))
			return
		}
		g.allowed(r, c.token)
		if rt.kind == routeManifest && r.Method == http.MethodGet {
			g.recordUse(r, c.token.ID)
		}
	} else if !g.anonymous(rt.name) {
		g.denied(r, string(authz.NotEntitled))
		g.unauthorized(w, rt, authz.ErrInsufficientScope, "authentication required")
		return
	}
	if _, served := g.Upstream.ToUpstream(rt.name); !served {
		// Outside every mapping: no such repository, and it looks like
		// any other repository the caller may not pull.
		g.denied(r, string(authz.NotEntitled))
		g.unauthorized(w, rt, authz.ErrInsufficientScope, "authentication required")
		return
	}
	g.Metrics.Authorized(time.Since(start).Seconds())
	g.Upstream.forward(w, r, rt, g)
}

// may reports whether caller c may pull repository name now.
func (g *Registry) may(c caller, name string) bool {
	if c.claims != nil && !c.claims.Allows("repository", name, "pull") && !c.claims.Allows("registry", "catalog", "*") {
		return false
	}
	if g.anonymous(name) {
		return true
	}
	return c.token != nil && authz.Decide(c.token, c.account, g.now(), authz.Resource{Kind: authz.Image, Name: name}).Allowed()
}

// identify authenticates the request: a bearer JWT from /token, or Basic
// with a registry token (curl -u). It answers the request itself and
// returns false when it cannot go on.
func (g *Registry) identify(w http.ResponseWriter, r *http.Request, rt route) (caller, bool) {
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		if rt.kind != routeBase && rt.name != "" && g.anonymous(rt.name) {
			return caller{}, true
		}
		g.unauthorized(w, rt, "", "authentication required")
		return caller{}, false
	case strings.EqualFold(scheme, "Bearer"):
		// A valid JWT is never rate limited: only failures count, so a
		// client behind the same address as an attacker keeps pulling.
		claims, err := g.Verifier.Verify(strings.TrimSpace(cred))
		if err != nil {
			g.Logger.Debug("bearer token refused", "err", err)
			g.failed(r, "bad_credentials")
			if g.blocked(w, r, g.tooMany) {
				return caller{}, false
			}
			g.unauthorized(w, rt, authz.ErrInvalidToken, "invalid token")
			return caller{}, false
		}
		if claims.Subject == "anonymous" {
			return caller{claims: claims}, true
		}
		tok, acct, err := g.Lookup.TokenByID(r.Context(), claims.Subject)
		if !g.lookupOK(w, rt, err) {
			return caller{}, false
		}
		// The registry token behind the JWT must still be usable now.
		if reason := authz.Decide(tok, acct, g.now(), authz.Resource{Kind: authz.Any}); !reason.Allowed() {
			g.denied(r, string(reason))
			g.unauthorized(w, rt, authz.ErrInvalidToken, denyMessage(reason))
			return caller{}, false
		}
		return caller{token: tok, account: acct, claims: claims}, true
	case strings.EqualFold(scheme, "Basic"):
		if g.blocked(w, r, g.tooMany) {
			return caller{}, false
		}
		_, password, ok := authz.ParseBasic(h)
		if !ok {
			g.failed(r, "bad_credentials")
			g.unauthorized(w, rt, authz.ErrInvalidToken, "invalid credentials")
			return caller{}, false
		}
		tok, acct, err := g.authenticate(r.Context(), password)
		if tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
			g.failed(r, "bad_credentials")
		}
		if !g.lookupOK(w, rt, err) {
			return caller{}, false
		}
		if reason := authz.Decide(tok, acct, g.now(), authz.Resource{Kind: authz.Any}); !reason.Allowed() {
			g.failed(r, string(reason))
			g.unauthorized(w, rt, authz.ErrInvalidToken, denyMessage(reason))
			return caller{}, false
		}
		if !tok.Scope.Has(tollgate.ScopeImages) {
			g.failed(r, string(authz.WrongScope))
			g.unauthorized(w, rt, authz.ErrInvalidToken, denyMessage(authz.WrongScope))
			return caller{}, false
		}
		return caller{token: tok, account: acct}, true
	}
	g.unauthorized(w, rt, authz.ErrInvalidToken, "unsupported authorization scheme")
	return caller{}, false
}

func (g *Registry) tooMany(w http.ResponseWriter, _ time.Duration) {
	writeOCIError(w, http.StatusTooManyRequests, codeTooManyRequests, "too many failed authentication attempts, retry later", nil)
}

func (g *Registry) lookupOK(w http.ResponseWriter, rt route, err error) bool {
	switch tollgate.ErrorCode(err) {
	case "":
		return true
	case tollgate.EUNAUTHORIZED:
		g.unauthorized(w, rt, authz.ErrInvalidToken, "invalid credentials")
	case tollgate.EUNAVAILABLE:
		g.Logger.Warn("token lookup unavailable", "err", err)
		w.Header().Set("Retry-After", "5")
		writeOCIError(w, http.StatusServiceUnavailable, codeUnavailable, "temporarily unavailable, retry later", nil)
	default:
		g.Logger.Error("token lookup failed", "err", err)
		writeOCIError(w, http.StatusInternalServerError, codeUnavailable, "internal error", nil)
	}
	return false
}
