// Package oidc owns keyless pulls' verification and exchange: an OIDC
// token (a CI job's, a pod's service-account token) presented to the edge
// is verified against the trust policies of the account its audience
// names, and exchanged for an ephemeral credential (tollgate.TrustPolicy,
// Service.IssueEphemeral).
//
// Verification is github.com/coreos/go-oidc's: signature, issuer,
// audience, expiry and not-before (with leeway). Algorithms are limited
// to the asymmetric ones the issuer publishes in its discovery document
// (or the static key set's keys allow): "none" and HS* never parse.
// Keys come from the issuer's discovery document and JWKS, cached per
// issuer, fetched again on an unknown "kid" and before the first token
// once the set is older than Options.MinInterval (a key the issuer
// dropped stops verifying within that interval; while the issuer cannot
// be fetched the set last fetched serves for at most staleKeysFor), or
// from a policy's static JWKS.
//
// Every fetch is bounded: in time (Options.Timeout), in size
// (Options.MaxBody, the rest is refused, not truncated), in frequency (one
// fetch per URL per Options.MinInterval: a flood of tokens with made-up
// "kid"s costs the issuer nothing), and in destination (https only, never
// to a loopback, private or link-local address unless AllowLoopback, the
// switch for development and tests, which also admits http to loopback).
// The number of issuers cached is bounded too.
//
// A token whose issuer or audience has no policy, a bad signature, a
// claim that matches no rule: all are the same refusal as a wrong
// password (EUNAUTHORIZED "invalid credentials"); the reason goes to the
// log only.
package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bounded"
)

// asymmetric is every algorithm a token may be signed with, at most.
var asymmetric = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// MaxTokenSize bounds an OIDC token before it is parsed.
const MaxTokenSize = 16 << 10

// Options bound the verifier; the zero value is usable.
type Options struct {
	// AllowLoopback admits issuers on loopback addresses, over http too:
	// development and tests only (oidc.allow_loopback_issuers).
	AllowLoopback bool
	// Timeout bounds one fetch (discovery or JWKS); default 5 s.
	Timeout time.Duration
	// MaxBody bounds a fetched document; default 256 KiB.
	MaxBody int64
	// MinInterval is the least time between two fetches of one URL, and
	// how long a fetched key set is trusted before it is fetched again;
	// default 30 s.
	MinInterval time.Duration
	// Leeway is the clock skew allowed on exp and nbf; default 1 min.
	Leeway time.Duration
	// MaxIssuers bounds the issuers cached; default 1000.
	MaxIssuers int
	Now        func() time.Time
	// Transport is the HTTP transport under the bounds (tests); nil: a
	// new one whose dialer refuses what AllowLoopback does not admit.
	Transport http.RoundTripper
}

// Verifier verifies OIDC tokens against issuers' keys. Safe for
// concurrent use; the only goroutine it starts is one per JWKS fetch,
// bounded by the fetch timeout (the fetch is shared by the verifications
// that wait for it).
type Verifier struct {
	o      Options
	client *http.Client
	fetch  *fetchLimiter

	mu      sync.Mutex
	issuers *bounded.Map[string, *issuerKeys]
}

// issuerKeys is one issuer's discovered key set and algorithms.
type issuerKeys struct {
	keys *remoteKeys
	algs []string
	at   time.Time // when discovery answered
}

// rediscoverAfter is how long a discovery document is used before it is
// fetched again (a changed jwks_uri or algorithm list is picked up); a
// failed fetch keeps the one there is.
const rediscoverAfter = 24 * time.Hour

// New returns a Verifier.
func New(o Options) *Verifier {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 256 << 10
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 30 * time.Second
	}
	if o.Leeway <= 0 {
		o.Leeway = time.Minute
	}
	if o.MaxIssuers <= 0 {
		o.MaxIssuers = 1000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tr := o.Transport
	if tr == nil {
		tr = newTransport(o.AllowLoopback, o.Timeout)
	}
	fl := &fetchLimiter{now: o.Now, every: o.MinInterval, last: map[string]time.Time{}}
	v := &Verifier{o: o, fetch: fl}
	v.client = &http.Client{
		Timeout:   o.Timeout,
		Transport: &boundedTransport{next: tr, limit: fl, maxBody: o.MaxBody, allowLoopback: o.AllowLoopback},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("oidc: redirects are not followed")
		},
	}
	v.issuers = bounded.New(bounded.Options[string, *issuerKeys]{MaxEntries: o.MaxIssuers, Now: o.Now})
	return v
}

// Claims is a verified token.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	Expiry   time.Time
	All      map[string]any // every claim, for the policy's rules
}

// Unverified is what a token says before it is verified: enough to pick
// the policies to verify it against, nothing to trust.
type Unverified struct {
	Issuer   string
	Audience []string
}

// Peek parses raw as a compact JWS signed with an asymmetric algorithm
// and returns its issuer and audience, unverified.
func Peek(raw string) (Unverified, error) {
	if len(raw) > MaxTokenSize {
		return Unverified{}, errors.New("oidc: token too large")
	}
	tok, err := jwt.ParseSigned(raw, asymmetric)
	if err != nil {
		return Unverified{}, fmt.Errorf("oidc: %w", err)
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return Unverified{}, fmt.Errorf("oidc: %w", err)
	}
	if c.Issuer == "" || len(c.Audience) == 0 {
		return Unverified{}, errors.New("oidc: token without iss or aud")
	}
	return Unverified{Issuer: c.Issuer, Audience: c.Audience}, nil
}

// LooksLikeJWT reports whether a password is shaped like a compact JWS
// (three base64url parts, a JSON header): never a registry token.
func LooksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2 && len(s) <= MaxTokenSize
}

// Verify checks raw as a token of issuer for audience, with the issuer's
// published keys (jwks empty) or the static key set jwks.
func (v *Verifier) Verify(ctx context.Context, raw, issuer, jwks, audience string) (*Claims, error) {
	if len(raw) > MaxTokenSize {
		return nil, errors.New("oidc: token too large")
	}
	if err := v.checkIssuer(issuer); err != nil {
		return nil, err
	}
	cfg := &gooidc.Config{ClientID: audience, Now: func() time.Time { return v.o.Now().Add(-v.o.Leeway) }}
	var verifier *gooidc.IDTokenVerifier
	if jwks != "" {
		ks, algs, err := staticKeys(jwks)
		if err != nil {
			return nil, err
		}
		cfg.SupportedSigningAlgs = algs
		verifier = gooidc.NewVerifier(issuer, ks, cfg)
	} else {
		ik, err := v.issuer(ctx, issuer)
		if err != nil {
			return nil, err
		}
		cfg.SupportedSigningAlgs = ik.algs
		verifier = gooidc.NewVerifier(issuer, ik.keys, cfg)
	}
	tok, err := verifier.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	c := &Claims{Issuer: tok.Issuer, Subject: tok.Subject, Audience: tok.Audience, Expiry: tok.Expiry}
	if err := tok.Claims(&c.All); err != nil {
		return nil, err
	}
	if tok.Expiry.IsZero() {
		return nil, errors.New("oidc: token without exp")
	}
	return c, nil
}

func (v *Verifier) checkIssuer(issuer string) error {
	if err := tollgate.ValidateIssuer(issuer); err != nil {
		return err
	}
	u, _ := url.Parse(issuer)
	if !v.o.AllowLoopback && (u.Scheme != "https" || tollgate.IsLoopbackHost(u.Hostname())) {
		return fmt.Errorf("oidc: issuer %s is on a loopback host, which oidc.allow_loopback_issuers does not admit", issuer)
	}
	return nil
}

// issuer returns the issuer's discovered provider, discovered again
// after rediscoverAfter (and after a failure, no more often than the
// fetch limiter allows).
func (v *Verifier) issuer(ctx context.Context, issuer string) (*issuerKeys, error) {
	v.mu.Lock()
	old, ok := v.issuers.Get(issuer)
	v.mu.Unlock()
	if ok && v.o.Now().Sub(old.at) < rediscoverAfter {
		return old, nil
	}
	ik, err := v.discover(ctx, issuer)
	if err != nil {
		if ok {
			return old, nil
		}
		return nil, err
	}
	v.mu.Lock()
	v.issuers.Put(issuer, ik)
	v.mu.Unlock()
	return ik, nil
}

func (v *Verifier) discover(ctx context.Context, issuer string) (*issuerKeys, error) {
	// go-oidc fetches the document (with the bounded client) and checks
	// that it names the issuer it was fetched for.
	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, v.client), issuer)
	if err != nil {
		return nil, err
	}
	var disc struct {
		JWKS string   `json:"jwks_uri"`
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&disc); err != nil {
		return nil, err
	}
	if disc.JWKS == "" {
		return nil, fmt.Errorf("oidc: issuer %s publishes no jwks_uri", issuer)
	}
	keys := &remoteKeys{url: disc.JWKS, client: v.client, now: v.o.Now, maxAge: v.o.MinInterval}
	return &issuerKeys{keys: keys, algs: publishedAlgs(disc.Algs), at: v.o.Now()}, nil
}

// publishedAlgs keeps the asymmetric algorithms an issuer publishes; an
// issuer that publishes none gets RS256, the one OIDC requires.
func publishedAlgs(published []string) []string {
	var out []string
	for _, a := range published {
		if slices.Contains(asymmetric, jose.SignatureAlgorithm(a)) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{string(jose.RS256)}
	}
	return out
}

// staticKeys reads a static JWKS: its public keys and the algorithms they
// allow (a key's "alg", or what its type and curve imply).
func staticKeys(doc string) (*gooidc.StaticKeySet, []string, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(doc), &set); err != nil {
		return nil, nil, fmt.Errorf("oidc: static JWKS: %w", err)
	}
	ks := &gooidc.StaticKeySet{}
	var algs []string
	add := func(a ...jose.SignatureAlgorithm) {
		for _, x := range a {
			if !slices.Contains(algs, string(x)) {
				algs = append(algs, string(x))
			}
		}
	}
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		var pub crypto.PublicKey = k.Key
		var implied []jose.SignatureAlgorithm
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			implied = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}
		case *ecdsa.PublicKey:
			switch key.Curve {
			case elliptic.P256():
				implied = []jose.SignatureAlgorithm{jose.ES256}
			case elliptic.P384():
				implied = []jose.SignatureAlgorithm{jose.ES384}
			case elliptic.P521():
				implied = []jose.SignatureAlgorithm{jose.ES512}
			}
		case ed25519.PublicKey:
			implied = []jose.SignatureAlgorithm{jose.EdDSA}
		default:
			continue
		}
		if k.Algorithm != "" {
			if !slices.Contains(implied, jose.SignatureAlgorithm(k.Algorithm)) {
				continue
			}
			implied = []jose.SignatureAlgorithm{jose.SignatureAlgorithm(k.Algorithm)}
		}
		ks.PublicKeys = append(ks.PublicKeys, pub)
		add(implied...)
	}
	if len(ks.PublicKeys) == 0 {
		return nil, nil, errors.New("oidc: static JWKS has no usable public signing key")
	}
	return ks, algs, nil
}

// fetchLimiter lets one fetch of a URL through per interval.
type fetchLimiter struct {
	now   func() time.Time
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

var errTooSoon = errors.New("oidc: fetched too recently; try again shortly")

func (l *fetchLimiter) allow(u string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if at, ok := l.last[u]; ok && now.Sub(at) < l.every {
		return false
	}
	if len(l.last) >= 10_000 {
		for k, at := range l.last {
			if now.Sub(at) >= l.every {
				delete(l.last, k)
			}
		}
		if len(l.last) >= 10_000 {
			return false
		}
	}
	l.last[u] = now
	return true
}

// boundedTransport applies the destination, frequency and size bounds.
type boundedTransport struct {
	next          http.RoundTripper
	limit         *fetchLimiter
	maxBody       int64
	allowLoopback bool
}

func (t *boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" && !(t.allowLoopback && r.URL.Scheme == "http" && tollgate.IsLoopbackHost(r.URL.Hostname())) {
		return nil, fmt.Errorf("oidc: %s: only https URLs are fetched", r.URL.Redacted())
	}
	if !t.limit.allow(r.URL.String()) {
		return nil, errTooSoon
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.maxBody {
		resp.Body.Close()
		return nil, fmt.Errorf("oidc: %s: document larger than %d bytes", r.URL.Redacted(), t.maxBody)
	}
	resp.Body = &capped{r: resp.Body, left: t.maxBody}
	return resp, nil
}

// capped fails a body that goes past its limit (never truncates it: a
// truncated key set could still parse).
type capped struct {
	r    io.ReadCloser
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, errors.New("oidc: document too large")
	}
	return n, err
}

func (c *capped) Close() error { return c.r.Close() }

// newTransport dials only public addresses (loopback too when allowed).
func newTransport(allowLoopback bool, timeout time.Duration) http.RoundTripper {
	d := &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		a := ap.Addr().Unmap()
		if a.IsLoopback() && allowLoopback {
			return nil
		}
		if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("oidc: %s is not a public address", a)
		}
		return nil
	}}
	return &http.Transport{
		DialContext:         d.DialContext, // no proxy: the dialer must see the address it connects to
		TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout,
		MaxIdleConns: 10, IdleConnTimeout: time.Minute, ForceAttemptHTTP2: true,
	}
}
