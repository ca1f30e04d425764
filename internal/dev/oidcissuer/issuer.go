// Package oidcissuer is a dev and test fixture: a real OIDC issuer over
// HTTP (discovery document and JWKS) that signs tokens with rotating RSA
// keys, and forges the tokens an attacker would try (alg none, HS256, an
// unknown key). Tests, the credential provider's tests and the end-to-end
// script use it; nothing in production does.
package oidcissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer serves /.well-known/openid-configuration and /jwks.json.
type Issuer struct {
	URL string // the issuer ("iss"), http://127.0.0.1:PORT

	srv     *httptest.Server
	mu      sync.Mutex
	keys    []*rsa.PrivateKey // keys[len-1] signs; all are published
	kids    []string
	fetches atomic.Int64
	disc    atomic.Int64
	// JWKSHook, if set, answers JWKS requests instead (bounds tests).
	JWKSHook http.HandlerFunc
}

// Start starts an issuer on a loopback port with one key.
func Start() (*Issuer, error) { return start(false) }

// StartSigning is Start with GET /dev/sign?repository=OWNER/REPO&aud=AUD
// too, answering a GitHub Actions job's token (GitHubActions) as text:
// for scripts (the end-to-end script's keyless section) that cannot sign.
func StartSigning() (*Issuer, error) { return start(true) }

func start(signing bool) (*Issuer, error) {
	is := &Issuer{}
	if err := is.Rotate(false); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.disc.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.URL, "jwks_uri": is.URL + "/jwks.json",
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"id_token"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "repository", "ref"},
		})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		if is.JWKSHook != nil {
			is.JWKSHook(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(is.JWKS()))
	})
	if signing {
		mux.HandleFunc("GET /dev/sign", func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(is.Sign(GitHubActions(q.Get("repository"), q.Get("aud"), time.Now()))))
		})
	}
	is.srv = httptest.NewServer(mux)
	is.URL = is.srv.URL
	return is, nil
}

// Close stops the issuer.
func (is *Issuer) Close() { is.srv.Close() }

// DiscoveryFetches is how often the discovery document was fetched.
func (is *Issuer) DiscoveryFetches() int64 { return is.disc.Load() }

// JWKSFetches is how often the JWKS was fetched.
func (is *Issuer) JWKSFetches() int64 { return is.fetches.Load() }

// Rotate adds a new signing key; drop removes the older ones from the
// JWKS (a rotation completed).
func (is *Issuer) Rotate(drop bool) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	if drop {
		is.keys, is.kids = nil, nil
	}
	is.keys = append(is.keys, k)
	is.kids = append(is.kids, fmt.Sprintf("key-%d-%d", len(is.kids)+1, time.Now().UnixNano()))
	return nil
}

// JWKS is the published key set.
func (is *Issuer) JWKS() string {
	is.mu.Lock()
	defer is.mu.Unlock()
	var set jose.JSONWebKeySet
	for i, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: is.kids[i], Algorithm: "RS256", Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return string(b)
}

// Sign signs claims with the current key (RS256). Claims without "iss"
// get the issuer's URL.
func (is *Issuer) Sign(claims map[string]any) string { return is.SignWith(is.Current(), claims) }

// Key is one of the issuer's signing keys, kept by a test to sign with
// it after the issuer dropped it (as a leaked key would be used).
type Key struct {
	priv *rsa.PrivateKey
	kid  string
}

// ID is the key's "kid".
func (k Key) ID() string { return k.kid }

// Current is the key that signs now.
func (is *Issuer) Current() Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return Key{priv: is.keys[len(is.keys)-1], kid: is.kids[len(is.kids)-1]}
}

// SignWith signs claims with k (RS256, its "kid"), published or not.
func (is *Issuer) SignWith(k Key, claims map[string]any) string {
	return signRSA(k.priv, k.kid, is.withIssuer(claims))
}

// SignUnknownKey signs with a fresh key the issuer never published.
func (is *Issuer) SignUnknownKey(claims map[string]any) string {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	return signRSA(k, "never-published", is.withIssuer(claims))
}

// SignNone is the token with "alg":"none" and no signature.
func (is *Issuer) SignNone(claims map[string]any) string {
	return encodeSegment(map[string]any{"alg": "none", "typ": "JWT"}) + "." + encodeSegment(is.withIssuer(claims)) + "."
}

// SignHS256 signs with HMAC under key (an attacker would use the
// issuer's public key bytes).
func (is *Issuer) SignHS256(claims map[string]any, key []byte) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	return sign(s, is.withIssuer(claims))
}

func (is *Issuer) withIssuer(claims map[string]any) map[string]any {
	out := map[string]any{"iss": is.URL}
	for k, v := range claims {
		out[k] = v
	}
	return out
}

func signRSA(k *rsa.PrivateKey, kid string, claims map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		panic(err)
	}
	return sign(s, claims)
}

func sign(s jose.Signer, claims map[string]any) string {
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		panic(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return out
}

func encodeSegment(v any) string {
	b, _ := json.Marshal(v)
	return strings.TrimRight(base64.URLEncoding.EncodeToString(b), "=")
}

// GitHubActions is the claim set GitHub Actions puts in a job's OIDC
// token (docs.github.com, "About security hardening with OpenID
// Connect"), for repository (owner/name) on refs/heads/main, audience
// aud, valid from now for ten minutes.
func GitHubActions(repository, aud string, now time.Time) map[string]any {
	owner := strings.SplitN(repository, "/", 2)[0]
	return map[string]any{
		"jti": fmt.Sprintf("%x", now.UnixNano()), "sub": "repo:" + repository + ":ref:refs/heads/main",
		"aud": aud, "ref": "refs/heads/main", "sha": "d5b7b5c1b3b8b8f0a1c9e6f4e2d0c7a5b3a1f9e7",
		"repository": repository, "repository_owner": owner, "repository_owner_id": "1234567",
		"repository_id": "7654321", "repository_visibility": "private", "run_id": "6229474581",
		"run_number": "42", "run_attempt": "1", "runner_environment": "github-hosted",
		"actor": "octocat", "actor_id": "583231", "workflow": "release",
		"workflow_ref":     repository + "/.github/workflows/release.yml@refs/heads/main",
		"workflow_sha":     "d5b7b5c1b3b8b8f0a1c9e6f4e2d0c7a5b3a1f9e7",
		"job_workflow_ref": repository + "/.github/workflows/release.yml@refs/heads/main",
		"job_workflow_sha": "d5b7b5c1b3b8b8f0a1c9e6f4e2d0c7a5b3a1f9e7",
		"head_ref":         "", "base_ref": "", "event_name": "push", "ref_type": "branch", "ref_protected": "true",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

// ServiceAccount is the claim set of the token kubelet mints for a pod's
// service account and hands to an image credential provider (KEP-4412;
// a projected service-account token): subject
// system:serviceaccount:NAMESPACE:NAME, audience aud as a list, the pod,
// its node and the service account under "kubernetes.io", valid from now
// for ten minutes.
func ServiceAccount(namespace, name, aud string, now time.Time) map[string]any {
	return map[string]any{
		"aud": []string{aud}, "sub": "system:serviceaccount:" + namespace + ":" + name,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"jti": fmt.Sprintf("%x", now.UnixNano()),
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]string{"name": name, "uid": "0b7d5f9e-52a5-4c1d-9a3b-8f5c1e0d2a11"},
			"pod":            map[string]string{"name": "web-7d9f", "uid": "5a1c2e3f-6b7d-4e8f-9a0b-1c2d3e4f5a6b"},
			"node":           map[string]string{"name": "node-1", "uid": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"},
		},
	}
}
