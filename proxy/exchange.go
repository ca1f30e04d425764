package proxy

import (
	"context"
	"net/http"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/obs"
)

// Exchanger turns an OIDC token into an ephemeral credential (keyless
// pulls; package oidc implements it). Its errors: EUNAUTHORIZED for a
// token that does not qualify (the same refusal as a wrong password),
// EUNAVAILABLE or EINTERNAL otherwise.
type Exchanger interface {
	// IsOIDC reports whether a presented password is shaped like an OIDC
	// token (never a registry token).
	IsOIDC(password string) bool
	// Exchange issues a new credential for the token; client is the
	// caller's address, for the audit log.
	Exchange(ctx context.Context, raw, client string) (*tollgate.Token, tollgate.Secret, error)
	// Credential is Exchange for a token presented as a password again
	// and again: the credential issued for it is reused while it lives,
	// unless fresh (the last one was revoked).
	Credential(ctx context.Context, raw, client string, fresh bool) (tollgate.Secret, error)
}

// byOIDC authenticates an OIDC token presented as a password (docker
// login -u oidc --password "$ID_TOKEN", Basic on apt/apk): exchanged for
// its ephemeral credential, which is then judged like any token. As for
// secrets, only a failure is charged to the address: a valid OIDC token
// passes even from an address others have blocked.
func (f *front) byOIDC(r *http.Request, raw string) (caller, error) {
	c, err := f.byOIDCCredential(r, raw, false)
	var ref *refusal
	if asRefusal(err, &ref) && ref.reason == string(authz.Revoked) {
		// The credential issued for this token was revoked: its policy was
		// edited since. Exchange again, under the new rules.
		return f.byOIDCCredential(r, raw, true)
	}
	return c, err
}

// byOIDCCredential exchanges raw (or reuses its credential unless fresh)
// and authenticates the credential.
func (f *front) byOIDCCredential(r *http.Request, raw string, fresh bool) (caller, error) {
	secret, err := f.exchanger.Credential(r.Context(), raw, obs.ClientIP(r), fresh)
	switch tollgate.ErrorCode(err) {
	case "":
		return f.bySecret(r, secret.Reveal())
	case tollgate.EUNAUTHORIZED:
		return caller{}, f.guess(r, raw, "invalid credentials")
	}
	return caller{}, err
}

func asRefusal(err error, out **refusal) bool {
	r, ok := err.(*refusal)
	*out = r
	return ok
}

// Token exchange (RFC 8693) constants.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeIDToken   = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// exchangeResponse is RFC 8693 §2.2.1's answer: the ephemeral credential
// as an access token that is not an OAuth bearer token ("N_A"): clients
// present it as a password.
type exchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int    `json:"expires_in"`
}

// serveExchange implements POST /oauth2/token (the kubelet credential
// provider and CI jobs use it). Errors are RFC 6749 §5.2 JSON: 400
// invalid_request, unsupported_grant_type, invalid_grant (any token that
// does not qualify); 429 slow_down for a blocked address.
func (f *front) serveExchange(w http.ResponseWriter, r *http.Request) {
	resp, err := f.exchange(w, r)
	if err != nil {
		f.fail(w, r, styleOAuth, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

func (f *front) exchange(w http.ResponseWriter, r *http.Request) (*exchangeResponse, error) {
	if r.Method != http.MethodPost {
		return nil, &refusal{code: errcode.ErrorCodeUnsupported, oauth: "invalid_request", message: "method not allowed", allow: "POST"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	if err := r.ParseForm(); err != nil {
		return nil, badTokenRequest("invalid_request", "malformed form body")
	}
	form := r.PostForm
	if gt := form.Get("grant_type"); gt != grantTokenExchange {
		return nil, badTokenRequest("unsupported_grant_type", "only grant_type="+grantTokenExchange+" is supported")
	}
	raw := form.Get("subject_token")
	if raw == "" {
		return nil, badTokenRequest("invalid_request", "subject_token is required")
	}
	switch form.Get("subject_token_type") {
	case tokenTypeJWT, tokenTypeIDToken:
	default:
		return nil, badTokenRequest("invalid_request", "subject_token_type must be "+tokenTypeJWT+" or "+tokenTypeIDToken)
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != tokenTypeAccess {
		return nil, badTokenRequest("invalid_request", "requested_token_type must be "+tokenTypeAccess)
	}
	tok, secret, err := f.exchanger.Exchange(r.Context(), raw, obs.ClientIP(r))
	switch tollgate.ErrorCode(err) {
	case "":
	case tollgate.EUNAUTHORIZED:
		gerr := f.guess(r, raw, "invalid subject_token")
		var ref *refusal
		if asRefusal(gerr, &ref) && ref.reason == reasonBadCredentials {
			ref.status, ref.oauth = http.StatusBadRequest, "invalid_grant"
		}
		return nil, gerr
	default:
		return nil, err
	}
	f.allow(r, tok)
	return &exchangeResponse{AccessToken: secret.Reveal(), IssuedTokenType: tokenTypeAccess, TokenType: "N_A",
		ExpiresIn: int(tok.ExpiresAt.Sub(f.now()) / time.Second)}, nil
}
