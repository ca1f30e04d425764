package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
)

// The only actions tollgate grants; shared, never modified (the signer
// copies what it encodes).
var (
	pullOnly   = []string{"pull"}
	allActions = []string{"*"}
)

// maxTokenBody caps the POST /token form.
const maxTokenBody = 64 << 10

// anonymousSubject is the JWT subject of tokens issued without credentials.
const anonymousSubject = "anonymous"

// tokenRealm is the realm of the Basic challenge on /token.
const tokenRealm = "tollgate"

// Registry serves /token and /v2/ through the shared front.
type Registry struct {
	f         *front
	signer    *authz.Signer
	verifier  *authz.Verifier
	publicURL string
	service   string
	anonymous []string
	upstream  *Upstream
}

// tokenResponse is the token endpoint's answer. No refresh_token: docker
// would store it and come back with grant_type=refresh_token.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// serveToken implements GET /token (Basic credentials: docker, podman,
// crane, oras) and POST /token (OAuth2 password grant: containerd).
func (reg *Registry) serveToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	resp, err := reg.token(w, r)
	reg.f.metrics.TokenIssued(time.Since(start).Seconds())
	if err != nil {
		reg.f.fail(w, r, styleOAuth, &authz.Basic{Realm: tokenRealm, Err: err})
		return
	}
	// The answer is a credential: no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	resp.write(w)
}

// tokenBodies holds the buffers token answers are built in.
var tokenBodies = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// write sends r as the JSON that json.Marshal would give, without
// reflection: this is the hottest answer tollgate gives. A JWT is
// base64url segments and dots and the time is RFC 3339, so nothing in it
// needs escaping; any other text goes through json.Marshal.
func (r *tokenResponse) write(w http.ResponseWriter) {
	if !jsonSafe(r.Token) || (r.AccessToken != r.Token && !jsonSafe(r.AccessToken)) || !jsonSafe(r.IssuedAt) {
		writeJSON(w, http.StatusOK, r)
		return
	}
	bp := tokenBodies.Get().(*[]byte)
	b := append((*bp)[:0], `{"token":"`...)
	b = append(b, r.Token...)
	b = append(b, `","access_token":"`...)
	b = append(b, r.AccessToken...)
	b = append(b, `","expires_in":`...)
	b = strconv.AppendInt(b, int64(r.ExpiresIn), 10)
	b = append(b, `,"issued_at":"`...)
	b = append(b, r.IssuedAt...)
	b = append(b, `"}`...)
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	*bp = b
	tokenBodies.Put(bp)
}

var contentTypeJSON = []string{"application/json"}

// jsonSafe reports whether s can stand in a JSON string as it is, and
// encoding/json would write it unchanged: printable ASCII other than '"',
// '\\' and the characters it escapes for HTML.
func jsonSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if !jsonSafeByte[s[i]] {
			return false
		}
	}
	return true
}

var jsonSafeByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\\<>&` {
		t[c] = false
	}
	return t
}()

// token decides a token request and signs the JWT it grants.
func (reg *Registry) token(w http.ResponseWriter, r *http.Request) (*tokenResponse, error) {
	password, form, err := reg.tokenCredentials(w, r)
	if err != nil {
		return nil, err
	}
	if svc := form.Get("service"); svc != "" && svc != reg.service {
		return nil, badTokenRequest("invalid_request", "unknown service")
	}
	requested, err := authz.ParseResourceScopes(form["scope"])
	if err != nil {
		return nil, badTokenRequest("invalid_scope", tollgate.ErrorMessage(err))
	}
	if password == "" {
		if len(reg.anonymous) == 0 {
			return nil, refuse(errcode.ErrorCodeUnauthorized, reasonBadCredentials, "authentication required")
		}
		return reg.issue(anonymousSubject, 0, reg.grant(requested, reg.isAnonymous), nil)
	}
	c, err := reg.f.bySecret(r, password)
	if err != nil {
		return nil, err
	}
	if !c.token.Scope.Has(tollgate.ScopeImages) {
		return nil, refuse(errcode.ErrorCodeUnauthorized, string(authz.WrongScope), denyMessage(authz.WrongScope))
	}
	reg.f.allow(r, c.token)
	access := reg.grant(requested, func(name string) bool {
		return reg.decideImage(r, c, name).Allowed() || reg.isAnonymous(name)
	})
	reg.f.used(r, c)
	reg.f.warn(w, c)
	return reg.issue(c.token.ID, c.version, access, c.token.ExpiresAt)
}

// tokenCredentials reads the password ("" when none was sent) and the
// request's parameters: the query of a GET with Basic credentials, the
// form of a POST with the password grant.
func (reg *Registry) tokenCredentials(w http.ResponseWriter, r *http.Request) (string, url.Values, error) {
	switch r.Method {
	case http.MethodGet:
		h := r.Header.Get("Authorization")
		if h == "" {
			return "", r.URL.Query(), nil
		}
		// Any user name, even an empty one; the password is the
		// registry token.
		_, password, ok := authz.ParseBasic(h)
		if !ok {
			return "", nil, reg.f.guess(r, h, "invalid credentials")
		}
		return password, r.URL.Query(), nil
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
		if err := r.ParseForm(); err != nil {
			return "", nil, badTokenRequest("invalid_request", "malformed form body")
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			// Only the password grant: tollgate never hands out refresh
			// tokens, so clients have none to present. containerd falls
			// back to GET on this 400.
			return "", nil, badTokenRequest("unsupported_grant_type", "only grant_type=password is supported")
		}
		password := r.PostForm.Get("password")
		if password == "" {
			return "", nil, reg.f.guess(r, password, "invalid credentials")
		}
		return password, r.PostForm, nil
	}
	return "", nil, &refusal{code: errcode.ErrorCodeUnsupported, oauth: "invalid_request", message: "method not allowed", allow: "GET, POST"}
}

func badTokenRequest(oauth, message string) *refusal {
	return &refusal{code: errcode.ErrorCodeUnsupported, status: http.StatusBadRequest, oauth: oauth, message: message}
}

func (reg *Registry) isAnonymous(name string) bool {
	for _, p := range reg.anonymous {
		if tollgate.MatchPattern(p, name) {
			return true
		}
	}
	return false
}

// grant intersects what was asked with what is allowed: pull on the
// repositories may(name) allows, the catalog (filtered when listed), and
// never anything else.
func (reg *Registry) grant(requested []authz.ResourceScope, may func(name string) bool) []authz.Access {
	access := make([]authz.Access, 0, len(requested))
	for _, s := range requested {
		switch {
		case s.Type == "repository":
			if !slices.Contains(s.Actions, "pull") && !slices.Contains(s.Actions, "*") {
				continue
			}
			if !validRepoName(s.Name) || !may(s.Name) {
				continue
			}
			access = append(access, authz.Access{Type: "repository", Name: s.Name, Actions: pullOnly})
		case s.Type == "registry" && s.Name == "catalog" && slices.Contains(s.Actions, "*"):
			access = append(access, authz.Access{Type: "registry", Name: "catalog", Actions: allActions})
		}
	}
	return access
}

func (reg *Registry) issue(subject string, version int, access []authz.Access, notAfter *time.Time) (*tokenResponse, error) {
	raw, issuedAt, expiresIn, err := reg.signer.IssueVersion(subject, version, reg.service, access, notAfter)
	if tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
		// The registry token expires within authz.MinLifetime: no JWT
		// may live that briefly, and the refusal says what to do.
		return nil, refuse(errcode.ErrorCodeUnauthorized, string(authz.Expired), tollgate.ErrorMessage(err))
	}
	if err != nil {
		return nil, err
	}
	return &tokenResponse{Token: raw, AccessToken: raw, ExpiresIn: int(expiresIn / time.Second),
		IssuedAt: issuedAt.UTC().Format(time.RFC3339)}, nil
}
