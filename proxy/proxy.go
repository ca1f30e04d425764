// Package proxy is tollgate's edge: the one front door for registry and
// package clients. It serves the Docker Registry v2 token endpoint
// (/token), the bearer-protected registry API (/v2/...) reverse-proxied to
// the upstream registry, the package repositories (/apt/REPO/...,
// /apk/REPO/...) reverse-proxied to their upstreams, and the JWT
// verification keys (/.well-known/jwks.json).
//
// Every route goes through one core (front): credentials → look up
// (Lookup: the token cache) → authz.Decide → record use → upstream, with
// the failed-auth limiter consulted only when an attempt fails. Handlers
// return errors; responder.fail classifies each once (distribution's
// errcode descriptors, tollgate.HTTPStatus) and writes it in the route's
// protocol: the OCI envelope, the OAuth error, or plain text for apt/apk.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
	"github.com/tollgate/tollgate/quota"
)

// Lookup finds registry tokens and their accounts. Both methods return
// EUNAUTHORIZED for an unknown token and EUNAVAILABLE when they cannot
// tell (store down, nothing cached).
type Lookup interface {
	// Token finds a token by the lookup hash of its secret.
	Token(ctx context.Context, hash []byte) (*tollgate.Token, *tollgate.Account, error)
	// TokenByID finds a token by its public id (a JWT's subject).
	TokenByID(ctx context.Context, id string) (*tollgate.Token, *tollgate.Account, error)
}

// UsageRecorder takes note that a token was used; it must not block.
type UsageRecorder interface {
	RecordUse(tokenID, ip, userAgent string, at time.Time)
}

// SecretUsageRecorder is a UsageRecorder that also keeps the uses of a
// rotated-out secret apart (tokencache does).
type SecretUsageRecorder interface {
	RecordSecretUse(tokenID string, previous bool, ip, userAgent string, at time.Time)
}

// Options configures the edge. The first group is shared by every route.
type Options struct {
	Lookup  Lookup
	Keys    *tollgate.Keys // hashes presented secrets for Lookup
	Usage   UsageRecorder  // optional
	Metrics *obs.Metrics   // optional
	Limiter *ratelimit.Limiter
	Logger  *slog.Logger
	Now     func() time.Time
	// WarnBefore: answers to a token that expires within it (or that used
	// a rotated-out secret) carry a Warning header; 0: no expiry warnings.
	WarnBefore time.Duration
	// Quota counts capped tokens' monthly pulls and bytes (nil: caps are
	// not enforced).
	Quota  *quota.Counter
	Events EventSink // optional: one event per manifest, blob, package GET (see track)
	// Exchanger accepts OIDC tokens (keyless pulls): as a password on
	// every route, and exchanged at POST /oauth2/token. nil: neither.
	Exchanger Exchanger
	// Refusals, if set, takes every refused attempt of a known token
	// (paused, outside its networks, over its cap, restricted, …).
	Refusals RefusalSink

	// The image routes (/token, /v2/); without a Signer they are not served.
	Signer   *authz.Signer
	Verifier *authz.Verifier
	JWKS     []byte // the public keys, served as is
	// PublicURL is the base URL clients use; the realm is PublicURL/token.
	PublicURL string
	// Service is the token service name (the JWT audience).
	Service string
	// Anonymous lists repository patterns anyone may pull without a token.
	Anonymous []string
	// Upstream is the registry behind /v2/ (nil: no repository is served).
	Upstream *Upstream

	// Packages configures /apt/ and /apk/ (no repositories: not served).
	Packages PackagesOptions
}

var discardLogger = slog.New(slog.DiscardHandler)

// Edge routes the public paths to the image and package front doors,
// which share one core.
type Edge struct {
	front    *front
	registry *Registry // nil: no image routes
	packages *Packages // nil: no package routes
	jwks     []byte
}

// New builds the edge. It starts nothing.
func New(o Options) (*Edge, error) {
	if o.Lookup == nil || o.Keys == nil {
		return nil, errors.New("proxy: Lookup and Keys are required")
	}
	f := newFront(o)
	e := &Edge{front: f, jwks: o.JWKS}
	if o.Signer != nil {
		if o.Verifier == nil {
			return nil, errors.New("proxy: a Signer needs a Verifier")
		}
		e.registry = &Registry{f: f, signer: o.Signer, verifier: o.Verifier, publicURL: o.PublicURL,
			service: o.Service, anonymous: o.Anonymous, upstream: o.Upstream}
	}
	if len(o.Packages.Repos) > 0 {
		p, err := newPackages(f, o.Packages, packageRealm(o.PublicURL))
		if err != nil {
			return nil, err
		}
		e.packages = p
	}
	return e, nil
}

// ServeHTTP routes by path. It does its own dispatch (not http.ServeMux)
// so that unclean paths are refused, never redirected.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case e.registry != nil && p == "/token":
		e.registry.serveToken(w, r)
	case e.front.exchanger != nil && p == "/oauth2/token":
		e.front.serveExchange(w, r)
	case e.registry != nil && (p == "/v2" || strings.HasPrefix(p, "/v2/")):
		e.registry.serveV2(w, r)
	case e.packages != nil && (strings.HasPrefix(p, "/apt/") || strings.HasPrefix(p, "/apk/")):
		e.packages.serve(w, r)
	case e.jwks != nil && p == "/.well-known/jwks.json" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(e.jwks)
	default:
		http.NotFound(w, r)
	}
}
