package proxy

import (
	"net/http"
	"slices"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
)

// maxTokenBody caps the POST /token form.
const maxTokenBody = 64 << 10

// tokenResponse is the token endpoint's answer. No refresh_token: docker
// would store it and come back with grant_type=refresh_token.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// serveToken implements GET /token (Basic credentials, docker, podman,
// crane, oras) and POST /token (OAuth2 password grant, containerd).
func (g *Registry) serveToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { g.Metrics.TokenIssued(time.Since(start).Seconds()) }()
	if r.Header.Get("Authorization") != "" || r.Method == http.MethodPost {
		if g.blocked(w, r, func(w http.ResponseWriter, _ time.Duration) {
			writeOAuthError(w, http.StatusTooManyRequests, "slow_down", codeTooManyRequests, "too many failed authentication attempts, retry later")
		}) {
			return
		}
	}
	var password string
	var haveCreds bool
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		if h := r.Header.Get("Authorization"); h != "" {
			// Any non-empty user name (ParseBasic insists); the password
			// is the registry token.
			_, password, haveCreds = authz.ParseBasic(h)
			if !haveCreds {
				g.failed(r, "bad_credentials")
				g.tokenUnauthorized(w, "invalid credentials")
				return
			}
		}
		scopes = r.URL.Query()["scope"]
		if svc := r.URL.Query().Get("service"); svc != "" && svc != g.Service {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", codeUnsupported, "unknown service")
			return
		}
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
		if err := r.ParseForm(); err != nil {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", codeUnsupported, "malformed form body")
			return
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			// Only the password grant: tollgate never hands out refresh
			// tokens, so clients have none to present. containerd falls
			// back to GET on this 400.
			writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", codeUnsupported, "only grant_type=password is supported")
			return
		}
		password = r.PostForm.Get("password")
		haveCreds = true
		if r.PostForm.Get("username") == "" || password == "" {
			g.failed(r, "bad_credentials")
			g.tokenUnauthorized(w, "invalid credentials")
			return
		}
		scopes = r.PostForm["scope"]
		if svc := r.PostForm.Get("service"); svc != "" && svc != g.Service {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", codeUnsupported, "unknown service")
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", codeUnsupported, "method not allowed")
		return
	}

	requested, err := authz.ParseResourceScopes(scopes)
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", codeUnsupported, tollgate.ErrorMessage(err))
		return
	}
	now := g.now()

	if !haveCreds {
		if len(g.Anonymous) == 0 {
			g.denied(r, "bad_credentials")
			g.tokenUnauthorized(w, "authentication required")
			return
		}
		g.issue(w, "anonymous", g.grant(requested, func(name string) bool { return g.anonymous(name) }), nil, now)
		return
	}

	tok, acct, err := g.authenticate(r.Context(), password)
	if err != nil {
		switch tollgate.ErrorCode(err) {
		case tollgate.EUNAUTHORIZED:
			g.failed(r, "bad_credentials")
			g.tokenUnauthorized(w, "invalid credentials")
		case tollgate.EUNAVAILABLE:
			g.Logger.Warn("token endpoint: lookup unavailable", "err", err)
			w.Header().Set("Retry-After", "5")
			writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", codeUnavailable, "temporarily unavailable, retry later")
		default:
			g.Logger.Error("token endpoint: lookup failed", "err", err)
			writeOAuthError(w, http.StatusInternalServerError, "server_error", codeUnavailable, "internal error")
		}
		return
	}
	if reason := authz.Decide(tok, acct, now, authz.Resource{Kind: authz.Any}); !reason.Allowed() {
		g.failed(r, string(reason))
		g.tokenUnauthorized(w, denyMessage(reason))
		return
	}
	if !tok.Scope.Has(tollgate.ScopeImages) {
		g.failed(r, string(authz.WrongScope))
		g.tokenUnauthorized(w, denyMessage(authz.WrongScope))
		return
	}
	g.allowed(r, tok)
	access := g.grant(requested, func(name string) bool {
		return authz.Decide(tok, acct, now, authz.Resource{Kind: authz.Image, Name: name}).Allowed() || g.anonymous(name)
	})
	g.recordUse(r, tok.ID)
	g.issue(w, tok.ID, access, tok.ExpiresAt, now)
}

func (g *Registry) anonymous(name string) bool {
	for _, p := range g.Anonymous {
		if tollgate.MatchPattern(p, name) {
			return true
		}
	}
	return false
}

// grant intersects what was asked with what is allowed: pull on the
// repositories may(name) allows, the catalog (filtered when listed), and
// never anything else.
func (g *Registry) grant(requested []authz.ResourceScope, may func(name string) bool) []authz.Access {
	access := []authz.Access{}
	for _, s := range requested {
		switch {
		case s.Type == "repository":
			if !slices.Contains(s.Actions, "pull") && !slices.Contains(s.Actions, "*") {
				continue
			}
			if !validRepoName(s.Name) || !may(s.Name) {
				continue
			}
			access = append(access, authz.Access{Type: "repository", Name: s.Name, Actions: []string{"pull"}})
		case s.Type == "registry" && s.Name == "catalog" && slices.Contains(s.Actions, "*"):
			access = append(access, authz.Access{Type: "registry", Name: "catalog", Actions: []string{"*"}})
		}
	}
	return access
}

func (g *Registry) issue(w http.ResponseWriter, subject string, access []authz.Access, notAfter *time.Time, now time.Time) {
	raw, issuedAt, expiresIn, err := g.Signer.Issue(subject, g.Service, access, notAfter)
	if err != nil {
		// The registry token expires within a second: treat it as expired.
		g.tokenUnauthorized(w, denyMessage(authz.Expired))
		return
	}
	secs := int(expiresIn / time.Second)
	if secs < 1 {
		secs = 1
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		Token: raw, AccessToken: raw, ExpiresIn: secs, IssuedAt: issuedAt.UTC().Format(time.RFC3339),
	})
}

func (g *Registry) tokenUnauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", authz.BasicChallenge("tollgate"))
	writeOAuthError(w, http.StatusUnauthorized, "invalid_grant", codeUnauthorized, msg)
}

// denyMessage tells the token's owner why it does not work. Only the holder
// of a valid secret ever sees it.
func denyMessage(r authz.Reason) string {
	switch r {
	case authz.Revoked:
		return "registry token revoked"
	case authz.Expired:
		return "registry token expired"
	case authz.Suspended:
		return "account suspended"
	case authz.WrongScope:
		return "registry token lacks the images scope"
	}
	return "access denied"
}
