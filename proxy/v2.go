package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

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
	v2Router        = v2.Router()
	anchoredDigest  = regexp.MustCompile(`^` + reference.DigestRegexp.String() + `$`)
	referrersPathRe = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)
	errBadPath      = errors.New("invalid path")
)

// validRepoName: a repository name is path components only (no domain
// part, so no upper case and no ':'), as the OCI distribution spec
// defines it.
func validRepoName(name string) bool {
	return len(name) <= 255 && authz.ValidRepositoryPath(name)
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
	if rt, ok := fastRoute(p); ok {
		return rt, nil
	}
	return routeTable(p)
}

// routeTable is parseRoute's answer from distribution's own route table
// (and the referrers API, which it lacks), for a path already checked
// for encoding and dot segments.
func routeTable(p string) (route, error) {
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

// fastRoute recognizes the routes every pull takes (manifest, blob, tag
// list, referrers) without regular expressions; ok is false for anything
// else, which routeTable then decides. Where it answers, it answers as
// routeTable would (a fuzz test holds them together).
func fastRoute(p string) (rt route, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return route{}, false
	}
	head, last := rest[:i], rest[i+1:]
	j := strings.LastIndexByte(head, '/')
	if j < 0 {
		return route{}, false
	}
	name, kind := head[:j], head[j+1:]
	if !validRepoName(name) {
		return route{}, false
	}
	switch {
	case kind == "manifests" && (validTag(last) || validDigest(last)):
		return route{kind: routeManifest, name: name, ref: last}, true
	case kind == "blobs" && validDigest(last):
		return route{kind: routeBlob, name: name, ref: last}, true
	case kind == "tags" && last == "list":
		return route{kind: routeTags, name: name}, true
	case kind == "referrers" && validReferenceDigest(last):
		return route{kind: routeReferrers, name: name, ref: last}, true
	}
	return route{}, false
}

// validTag: [\w][\w.-]{0,127} (reference.TagRegexp).
func validTag(s string) bool {
	if s == "" || len(s) > 128 || !isWord(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isWord(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isWord(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// validDigest: [a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+
// (go-digest's DigestRegexp, which distribution's routes use).
func validDigest(s string) bool {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok || enc == "" {
		return false
	}
	run := 0
	for i := 0; i < len(alg); i++ {
		switch c := alg[i]; {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			run++
		case c == '.' || c == '+' || c == '_' || c == '-':
			if run == 0 {
				return false
			}
			run = 0
		default:
			return false
		}
	}
	if run == 0 {
		return false
	}
	for i := 0; i < len(enc); i++ {
		if c := enc[i]; !isWord(c) && c != '=' && c != '-' {
			return false
		}
	}
	return true
}

// validReferenceDigest:
// [A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}
// (reference.DigestRegexp, which the referrers route uses).
func validReferenceDigest(s string) bool {
	alg, hex, ok := strings.Cut(s, ":")
	if !ok || len(hex) < 32 {
		return false
	}
	start := true // the next character begins a component: a letter
	for i := 0; i < len(alg); i++ {
		c := alg[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case start && letter:
			start = false
		case !start && (letter || c >= '0' && c <= '9'):
		case !start && (c == '-' || c == '_' || c == '+' || c == '.'):
			start = true
		default:
			return false
		}
	}
	if start {
		return false // empty, or ends with a separator
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// serveV2 answers /v2/: the ping and the catalog itself, everything else
// by the upstream once authorized.
func (reg *Registry) serveV2(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, c, err := reg.authorizeV2(r)
	if err == nil {
		reg.f.warn(w, c)
	}
	if err == nil && rt.kind != routeBase && rt.kind != routeCatalog {
		reg.f.metrics.Authorized(time.Since(start).Seconds())
		w, done := reg.f.count(w, r, c)
		defer done() // also when the stream is cut (http.ErrAbortHandler)
		w, tracked := reg.f.track(w, r, c.token, imageEvent(rt))
		defer tracked()
		reg.upstream.forward(w, r, rt, func() error {
			return reg.challenge(rt, authz.ErrInsufficientScope, refuse(errcode.ErrorCodeUnauthorized, "", "authentication required"))
		})
		return
	}
	var body any = struct{}{}
	if err == nil && rt.kind == routeCatalog {
		body, err = reg.catalog(w, r, c)
	}
	if err != nil {
		reg.f.fail(w, r, styleOCI, err)
		return
	}
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	writeJSON(w, http.StatusOK, body)
}

// authorizeV2 parses the route and decides whether the caller may read
// it. A denied repository and a missing one are refused alike.
func (reg *Registry) authorizeV2(r *http.Request) (route, caller, error) {
	rt, err := parseRoute(r)
	if err != nil {
		return rt, caller{}, refuse(errcode.ErrorCodeNameInvalid, "", "invalid repository name or path")
	}
	obs.FromContext(r.Context()).Repo = rt.name
	c, err := reg.identify(r, rt)
	if err != nil {
		return rt, c, err
	}
	if read := r.Method == http.MethodGet || r.Method == http.MethodHead; !read || rt.write {
		if c.token == nil && c.claims == nil {
			return rt, c, reg.challenge(rt, "", refuse(errcode.ErrorCodeUnauthorized, "", "authentication required"))
		}
		return rt, c, refuse(errcode.ErrorCodeDenied, "", "this registry is read-only")
	}
	switch {
	case rt.kind == routeBase:
		return rt, c, nil
	case rt.kind == routeCatalog:
		if c.claims != nil && !c.claims.Allows("registry", "catalog", "*") {
			return rt, c, reg.challenge(rt, authz.ErrInsufficientScope, refuse(errcode.ErrorCodeUnauthorized, string(authz.NotEntitled), "catalog access not granted"))
		}
		return rt, c, nil
	case c.claims != nil && !c.claims.Allows("repository", rt.name, "pull"):
		if c.token != nil && reg.decideImage(r, c, rt.name) == authz.Restricted {
			return rt, c, denied(authz.Restricted) // entitled, but not with this token: say so
		}
		return rt, c, reg.notEntitled(rt)
	}
	if c.token != nil {
		reg.f.metered(r, &c, rt.kind == routeManifest && r.Method == http.MethodGet)
		switch reason := reg.decideImage(r, c, rt.name); reason {
		case authz.OK:
		case authz.CapReached:
			return rt, c, reg.f.capRefusal(c)
		case authz.WrongScope, authz.NotEntitled, authz.Restricted:
			switch {
			case reg.isAnonymous(rt.name):
			case reason == authz.Restricted:
				return rt, c, denied(reason)
			default:
				return rt, c, reg.challenge(rt, authz.ErrInsufficientScope, refuse(errcode.ErrorCodeUnauthorized, string(reason), "authentication required"))
			}
		case authz.AddressNotAllowed:
			return rt, c, denied(reason)
		default:
			return rt, c, reg.challenge(rt, authz.ErrInvalidToken, refuse(errcode.ErrorCodeUnauthorized, string(reason), denyMessage(reason)))
		}
	} else if !reg.isAnonymous(rt.name) {
		return rt, c, reg.notEntitled(rt)
	}
	if reg.upstream == nil {
		return rt, c, tollgate.Unavailable("upstream registry", errors.New("no upstream configured"))
	}
	if _, served := reg.upstream.ToUpstream(rt.name); !served {
		// Outside every mapping: no such repository, and it looks like
		// any other repository the caller may not pull.
		return rt, c, reg.notEntitled(rt)
	}
	reg.f.allow(r, c.token)
	if rt.kind == routeManifest && r.Method == http.MethodGet {
		reg.f.used(r, c)
	}
	return rt, c, nil
}

func (reg *Registry) notEntitled(rt route) error {
	return reg.challenge(rt, authz.ErrInsufficientScope, refuse(errcode.ErrorCodeUnauthorized, string(authz.NotEntitled), "authentication required"))
}

// challenge wraps why a /v2/ request was refused in the Bearer challenge
// for its route: the realm, the scope it needs, and what was wrong. When
// the answer is a 401 its envelope names the repository, as distribution's
// does.
func (reg *Registry) challenge(rt route, problem string, err error) error {
	c := &authz.Challenge{Realm: strings.TrimSuffix(reg.publicURL, "/") + "/token", Service: reg.service, Problem: problem, Err: err}
	switch {
	case rt.name != "":
		c.Scopes = []string{"repository:" + rt.name + ":pull"}
		if rf, ok := err.(*refusal); ok && rf.detail == nil {
			rf.detail = []map[string]string{{"Type": "repository", "Name": rt.name, "Action": "pull"}}
		}
	case rt.kind == routeCatalog:
		c.Scopes = []string{"registry:catalog:*"}
	}
	return c
}

// may reports whether caller c may pull repository name now.
func (reg *Registry) may(r *http.Request, c caller, name string) bool {
	if c.claims != nil && !c.claims.Allows("repository", name, "pull") && !c.claims.Allows("registry", "catalog", "*") {
		return false
	}
	if reg.isAnonymous(name) {
		return true
	}
	return c.token != nil && reg.decideImage(r, c, name).Allowed()
}

// decideImage judges c's token for image repository name, from r's
// client address.
func (reg *Registry) decideImage(r *http.Request, c caller, name string) authz.Reason {
	return authz.Decide(c.token, c.account, reg.f.now(), c.resource(r, authz.Image, name))
}

// identify authenticates the request: a bearer JWT from /token, or Basic
// with a registry token (curl -u), or nobody (anonymous pulls, when the
// repository allows them).
func (reg *Registry) identify(r *http.Request, rt route) (caller, error) {
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		if rt.name != "" && reg.isAnonymous(rt.name) {
			return caller{}, nil
		}
		return caller{}, reg.challenge(rt, "", refuse(errcode.ErrorCodeUnauthorized, "", "authentication required"))
	case strings.EqualFold(scheme, "Bearer"):
		c, err := reg.f.byJWT(r, reg.verifier, strings.TrimSpace(cred))
		if err != nil {
			return c, reg.challenge(rt, authz.ErrInvalidToken, err)
		}
		return c, nil
	case strings.EqualFold(scheme, "Basic"):
		var c caller
		var err error
		if _, password, ok := authz.ParseBasic(h); ok {
			c, err = reg.f.bySecret(r, password)
		} else {
			err = reg.f.guess(r, h, "invalid credentials")
		}
		if err == nil && !c.token.Scope.Has(tollgate.ScopeImages) {
			err = refuse(errcode.ErrorCodeUnauthorized, string(authz.WrongScope), denyMessage(authz.WrongScope))
		}
		if err != nil {
			return caller{}, reg.challenge(rt, authz.ErrInvalidToken, err)
		}
		return c, nil
	}
	return caller{}, reg.challenge(rt, authz.ErrInvalidToken, refuse(errcode.ErrorCodeUnauthorized, "", "unsupported authorization scheme"))
}
