// Package proxy is tollgate's front door for registry clients: the
// Docker Registry v2 token endpoint (/token), the bearer-protected
// registry API (/v2/...) reverse-proxied to the upstream registry, and the
// JWT verification keys (/.well-known/jwks.json).
//
// Every request is decided by authz.Decide against the registry token
// behind it, looked up through Lookup (the token cache, or the store), at
// the moment of the request: a revoked token's JWTs stop working at once.
package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
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

// Registry serves /v2/, /token and /.well-known/jwks.json.
type Registry struct {
	Lookup   Lookup
	Keys     *tollgate.Keys // hashes presented secrets for Lookup
	Signer   *authz.Signer
	Verifier *authz.Verifier
	JWKS     []byte // the public keys, served as is

	// PublicURL is the base URL clients use; the realm is PublicURL/token.
	PublicURL string
	// Service is the token service name (the JWT audience).
	Service string
	// Anonymous lists repository patterns anyone may pull without a token.
	Anonymous []string

	Upstream *Upstream
	// Packages serves /apt/ and /apk/ (nil: those paths are not found).
	Packages http.Handler
	Usage    UsageRecorder // optional
	// Metrics and Limiter are optional (nil records and limits nothing).
	Metrics *obs.Metrics
	Limiter *ratelimit.Limiter
	Logger  *slog.Logger
	Now     func() time.Time
}

func (g *Registry) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Registry) realm() string { return strings.TrimSuffix(g.PublicURL, "/") + "/token" }

// Handler routes the registry paths. It does its own dispatch (not
// http.ServeMux) so that unclean paths are refused, never redirected.
func (g *Registry) Handler() http.Handler {
	if g.Logger == nil {
		g.Logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/token":
			g.serveToken(w, r)
		case p == "/v2" || strings.HasPrefix(p, "/v2/"):
			g.serveV2(w, r)
		case g.Packages != nil && (strings.HasPrefix(p, "/apt/") || strings.HasPrefix(p, "/apk/")):
			g.Packages.ServeHTTP(w, r)
		case p == "/.well-known/jwks.json" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			w.Write(g.JWKS)
		default:
			http.NotFound(w, r)
		}
	})
}

// authenticate resolves a presented secret to its token and account.
// Malformed secrets never reach Lookup.
func (g *Registry) authenticate(ctx context.Context, secret string) (*tollgate.Token, *tollgate.Account, error) {
	s, err := tollgate.ParseToken(secret)
	if err != nil {
		return nil, nil, err
	}
	return g.Lookup.Token(ctx, g.Keys.Hash(s))
}

// clientIP is the client's address, behind trusted proxies.
func clientIP(r *http.Request) string { return obs.ClientIP(r) }

// blocked reports whether the client has used up its failed
// authentications; if so it has answered 429 through tooMany.
func (g *Registry) blocked(w http.ResponseWriter, r *http.Request, tooMany func(w http.ResponseWriter, retry time.Duration)) bool {
	is, retry := g.Limiter.Blocked(r.Context(), clientIP(r))
	if !is {
		return false
	}
	info := obs.FromContext(r.Context())
	info.Reason = "rate_limited"
	g.Metrics.RateLimited(info.Route)
	g.Metrics.Decision("rate_limited")
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retry/time.Second))))
	tooMany(w, retry)
	return true
}

// failed records a failed authentication: it counts against the client's
// bucket and in the metrics.
func (g *Registry) failed(r *http.Request, reason string) {
	g.Limiter.Fail(r.Context(), clientIP(r))
	g.denied(r, reason)
}

// denied records a decision against the request without charging the
// client (a valid token asking for something it may not have).
func (g *Registry) denied(r *http.Request, reason string) {
	obs.FromContext(r.Context()).Reason = reason
	g.Metrics.Decision(reason)
}

// allowed records a positive decision and who made the request.
func (g *Registry) allowed(r *http.Request, tok *tollgate.Token) {
	g.Metrics.Decision("ok")
	if tok != nil {
		info := obs.FromContext(r.Context())
		info.TokenID, info.Account = tok.ID, tok.AccountName
	}
}

func (g *Registry) recordUse(r *http.Request, tokenID string) {
	if g.Usage != nil {
		g.Usage.RecordUse(tokenID, clientIP(r), r.UserAgent(), g.now())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// StoreLookup answers Lookup from the store directly, for when no cache
// sits in front of it.
type StoreLookup struct{ Store tollgate.Store }

func (l StoreLookup) Token(ctx context.Context, hash []byte) (*tollgate.Token, *tollgate.Account, error) {
	return l.find(ctx, func(tx tollgate.Tx) (*tollgate.Token, error) { return tx.TokenByHash(ctx, hash) })
}

func (l StoreLookup) TokenByID(ctx context.Context, id string) (*tollgate.Token, *tollgate.Account, error) {
	return l.find(ctx, func(tx tollgate.Tx) (*tollgate.Token, error) { return tx.TokenByID(ctx, id) })
}

func (l StoreLookup) find(ctx context.Context, get func(tollgate.Tx) (*tollgate.Token, error)) (*tollgate.Token, *tollgate.Account, error) {
	var t *tollgate.Token
	var a *tollgate.Account
	err := l.Store.View(ctx, func(tx tollgate.Tx) (err error) {
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
