package authz

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bounded"
)

// Bearer tokens are ES256 JWTs in the shape of the distribution token spec
// (https://distribution.github.io/distribution/spec/auth/jwt): iss, sub,
// aud (one string), exp, nbf, iat, jti and an access list. The header names
// the signing key by its RFC 7638 thumbprint, so keys can rotate: a
// Verifier lists the old and the new key until the old one's tokens expire.

const (
	// maxTokenLen bounds what Verify will look at. 64 scopes with the
	// longest names encode to about 30 KiB.
	maxTokenLen = 64 << 10
	// defaultVerifyCacheBytes bounds the verified-token cache by the bytes
	// its entries hold (claims plus key and bookkeeping).
	defaultVerifyCacheBytes = 16 << 20
	// maxCachedTokenLen: longer JWTs are verified on every request but
	// never remembered, so a few huge tokens cannot fill the cache.
	maxCachedTokenLen = 8 << 10
	// entryOverhead approximates a cache entry's fixed cost: map slot,
	// key, Claims struct and its times.
	entryOverhead = 256
	// MinLifetime is how long a JWT lives at least: the token spec asks
	// for expires_in of 60 s or more (containers/image clamps to it). A
	// registry token that expires sooner gets no JWT at all.
	MinLifetime = time.Minute
)

// Access is one entry of a token's access claim: actions granted on a
// named resource. Its JSON is that of distribution's
// registry/auth/token.ResourceActions without the deprecated class.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Claims are the verified claims of a bearer token.
type Claims struct {
	Subject   string
	Audience  string
	ID        string
	IssuedAt  time.Time // UTC; zero if the token has no iat
	NotBefore time.Time // zero if the token has no nbf
	ExpiresAt time.Time
	Access    []Access
	// SecretVersion is which of the registry token's secrets the JWT was
	// issued for (claim "sv"; 0 when absent): after a rotation, the edge
	// refuses JWTs of a secret whose grace has ended.
	SecretVersion int
}

// Allows reports whether c grants action on the resource typ/name. Matching
// is exact: tollgate never issues wildcard actions, so "*" in a token is
// not read as one.
func (c *Claims) Allows(typ, name, action string) bool {
	if c == nil {
		return false
	}
	for _, a := range c.Access {
		if a.Type == typ && a.Name == name && contains(a.Actions, action) {
			return true
		}
	}
	return false
}

func (c *Claims) clone() *Claims {
	out := *c
	out.Access = make([]Access, len(c.Access))
	for i, a := range c.Access {
		a.Actions = append([]string(nil), a.Actions...)
		out.Access[i] = a
	}
	return &out
}

// Signer issues bearer tokens with one ES256 key. It is safe for
// concurrent use.
type Signer struct {
	key      *ecdsa.PrivateKey
	kid      string
	issuer   string
	lifetime time.Duration
	now      func() time.Time
	reuse    *reuseCache // nil: every Issue signs
}

// NewSigner returns a Signer issuing tokens from issuer that live for
// lifetime (at least a second). key must be a P-256 key. now is the clock;
// nil means time.Now.
func NewSigner(key *ecdsa.PrivateKey, issuer string, lifetime time.Duration, now func() time.Time) (*Signer, error) {
	if key == nil {
		return nil, errors.New("authz: signer: no key")
	}
	kid, err := Thumbprint(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("authz: signer: %w", err)
	}
	if issuer == "" {
		return nil, errors.New("authz: signer: empty issuer")
	}
	if lifetime < MinLifetime {
		return nil, fmt.Errorf("authz: signer: lifetime %v is under %v", lifetime, MinLifetime)
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: key, kid: kid, issuer: issuer, lifetime: lifetime, now: now}, nil
}

// Kid returns the key id put in the header of every token: the RFC 7638
// JWK thumbprint of the public key.
func (s *Signer) Kid() string { return s.kid }

// issueClaims is the payload as written. jwt.RegisteredClaims would write
// aud as an array; the spec and older clients expect a single string.
type issueClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  string           `json:"aud"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
	Access    []Access         `json:"access"`
	Version   int              `json:"sv,omitempty"`
}

func (c *issueClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *issueClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *issueClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *issueClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *issueClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *issueClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// Issue signs a token for subject (the registry token's id) and audience
// (the service) granting access. The token lives for the signer's lifetime,
// cut short at notAfter when that is given (the registry token's expiry).
// Times are whole seconds; issuedAt and expiresIn are what the token says,
// for the token response's issued_at and expires_in.
//
// A notAfter within a second from now is refused with EUNAUTHORIZED: the
// registry token is as good as expired. An empty subject or audience is
// EINVALID.
func (s *Signer) Issue(subject, audience string, access []Access, notAfter *time.Time) (token string, issuedAt time.Time, expiresIn time.Duration, err error) {
	return s.IssueVersion(subject, 0, audience, access, notAfter)
}

// IssueVersion is Issue for the given secret version of the subject (0:
// not said), carried in the token's "sv" claim.
func (s *Signer) IssueVersion(subject string, version int, audience string, access []Access, notAfter *time.Time) (token string, issuedAt time.Time, expiresIn time.Duration, err error) {
	if subject == "" || audience == "" {
		return "", time.Time{}, 0, tollgate.Errorf(tollgate.EINVALID, "token needs a subject and an audience")
	}
	now := s.now()
	var key string
	if s.reuse != nil {
		key = reuseKey(subject+"\x00"+strconv.Itoa(version), audience, access, notAfter)
		if t, ok := s.reuse.get(key, now); ok {
			return t.raw, t.iat, t.exp.Sub(now).Truncate(time.Second), nil
		}
	}
	exp := now.Add(s.lifetime)
	if notAfter != nil {
		if notAfter.Before(now.Add(MinLifetime)) {
			return "", time.Time{}, 0, &tollgate.Error{Code: tollgate.EUNAUTHORIZED, Message: "registry token expires within a minute: extend it to keep pulling"}
		}
		if notAfter.Before(exp) {
			exp = *notAfter
		}
	}
	iat, expAt := jwt.NewNumericDate(now), jwt.NewNumericDate(exp)
	claims := &issueClaims{
		Issuer:    s.issuer,
		Subject:   subject,
		Audience:  audience,
		ExpiresAt: expAt,
		NotBefore: iat,
		IssuedAt:  iat,
		ID:        newJTI(),
		Access:    wireAccess(access),
		Version:   version,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = s.kid
	raw, err := t.SignedString(s.key)
	if err != nil {
		return "", time.Time{}, 0, tollgate.Internal(fmt.Errorf("sign token: %w", err))
	}
	if s.reuse != nil {
		s.reuse.put(key, issued{raw: raw, iat: iat.UTC(), exp: expAt.UTC()})
	}
	return raw, iat.UTC(), expAt.Sub(iat.Time), nil
}

// EnableReuse makes Issue hand out the token it signed earlier for the
// same subject, audience, access and notAfter while at least two thirds
// of that token's lifetime remain, instead of signing again (ES256
// signing is most of a token request's cost). The cache holds at most
// maxBytes of tokens and keys. Reuse changes nothing for revocation: every
// request with the token re-checks the registry token behind its subject.
// Call it before the Signer is shared.
func (s *Signer) EnableReuse(maxBytes int) {
	s.reuse = newReuseCache(maxBytes, s.now)
}

// issued is a token Issue signed.
type issued struct {
	raw      string
	iat, exp time.Time
}

// reuseCache holds signed tokens by what they grant, bounded in bytes.
type reuseCache struct {
	mu sync.Mutex
	m  *bounded.Map[string, issued]
}

func newReuseCache(maxBytes int, now func() time.Time) *reuseCache {
	return &reuseCache{m: bounded.New(bounded.Options[string, issued]{
		MaxBytes: int64(maxBytes),
		Cost:     func(k string, t issued) int64 { return int64(len(k) + len(t.raw) + entryOverhead) },
		Rank: func(now time.Time, _ string, t issued) bounded.Rank {
			if !t.fresh(now) {
				return bounded.Expired
			}
			return bounded.Keep
		},
		Now: now,
	})}
}

// reuseKey identifies what a token grants: subject, audience, the access
// list in order and the expiry cap.
func reuseKey(subject, audience string, access []Access, notAfter *time.Time) string {
	var b strings.Builder
	b.Grow(64 + 64*len(access))
	b.WriteString(subject)
	b.WriteByte(0)
	b.WriteString(audience)
	b.WriteByte(0)
	if notAfter != nil {
		b.WriteString(strconv.FormatInt(notAfter.Unix(), 10))
	}
	for _, a := range access {
		b.WriteByte(0)
		b.WriteString(a.Type)
		b.WriteByte(' ')
		b.WriteString(a.Name)
		for _, act := range a.Actions {
			b.WriteByte(' ')
			b.WriteString(act)
		}
	}
	return b.String()
}

// fresh reports whether t still has two thirds of its lifetime at now,
// and never less than MinLifetime.
func (t issued) fresh(now time.Time) bool {
	left := t.exp.Sub(now)
	return left >= 2*t.exp.Sub(t.iat)/3 && left >= MinLifetime
}

func (c *reuseCache) get(key string, now time.Time) (issued, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m.Get(key)
	if ok && !t.fresh(now) {
		c.m.Delete(key)
		return issued{}, false
	}
	return t, ok
}

func (c *reuseCache) put(key string, t issued) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.Put(key, t)
}

// wireAccess makes sure access and every actions list encode as arrays,
// never null.
func wireAccess(access []Access) []Access {
	out := make([]Access, len(access))
	for i, a := range access {
		if a.Actions == nil {
			a.Actions = []string{}
		}
		out[i] = a
	}
	return out
}

func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Verifier checks bearer tokens: ES256 only, signed by one of its keys
// (chosen by kid), from its issuer, for its audience, within exp/nbf/iat
// allowing leeway for clock skew. Verified tokens are remembered until they
// expire, so the many requests of one pull verify the signature once. It is
// safe for concurrent use.
type Verifier struct {
	keys     map[string]*ecdsa.PublicKey
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
	parser   *jwt.Parser

	mu    sync.RWMutex
	cache *bounded.Map[[sha256.Size]byte, *Claims] // nil: no cache
}

// NewVerifier returns a Verifier accepting tokens signed by any of keys.
// Keys that are nil or not P-256 are skipped: tokens they signed are
// refused. now is the clock; nil means time.Now.
func NewVerifier(keys []*ecdsa.PublicKey, issuer, audience string, leeway time.Duration, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	if leeway < 0 {
		leeway = 0
	}
	v := &Verifier{
		keys:     make(map[string]*ecdsa.PublicKey, len(keys)),
		issuer:   issuer,
		audience: audience,
		leeway:   leeway,
		now:      now,
	}
	v.setCacheBytes(defaultVerifyCacheBytes)
	for _, k := range keys {
		if kid, err := Thumbprint(k); err == nil {
			v.keys[kid] = k
		}
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(), // one encoding per token: no malleable trailing bits
	)
	return v
}

// verifyClaims is the payload as read; aud may be a string or an array.
type verifyClaims struct {
	jwt.RegisteredClaims
	Access  []Access `json:"access"`
	Version int      `json:"sv"`
}

var (
	errNoKid      = errors.New("token header has no kid")
	errUnknownKid = errors.New("token signed by an unknown key")
	errCrit       = errors.New("token header has crit")
	errEmpty      = errors.New("empty token")
	errTooLong    = errors.New("token too long")
	errNoSubject  = errors.New("token has no subject")
)

// Verify checks raw and returns its claims, which the caller may keep and
// modify. Every failure is an EUNAUTHORIZED *tollgate.Error whose message is
// "invalid token" and whose Err says why, for logs; an expired token's
// error matches jwt.ErrTokenExpired.
func (v *Verifier) Verify(raw string) (*Claims, error) {
	c, err := v.Check(raw)
	if err != nil {
		return nil, err
	}
	return c.clone(), nil
}

// Check is Verify without the copy, for the request path: the claims it
// returns are shared with the cache and must never be modified.
func (v *Verifier) Check(raw string) (*Claims, error) {
	if raw == "" {
		return nil, invalidToken(errEmpty)
	}
	if len(raw) > maxTokenLen {
		return nil, invalidToken(errTooLong)
	}
	key := sha256.Sum256([]byte(raw))
	now := v.now()
	if c, ok := v.cached(key); ok {
		if err := v.checkTimes(c, now); err != nil {
			v.forget(key)
			return nil, invalidToken(err)
		}
		return c, nil
	}

	var wc verifyClaims
	if _, err := v.parser.ParseWithClaims(raw, &wc, v.keyFor); err != nil {
		return nil, invalidToken(err)
	}
	if wc.Issuer != v.issuer {
		return nil, invalidToken(fmt.Errorf("%w: issuer %q", jwt.ErrTokenInvalidIssuer, clip(wc.Issuer, maxErrorEchoLen)))
	}
	if len(wc.Audience) != 1 || wc.Audience[0] != v.audience {
		return nil, invalidToken(jwt.ErrTokenInvalidAudience)
	}
	if wc.Subject == "" {
		return nil, invalidToken(errNoSubject)
	}
	c := &Claims{
		Subject:       wc.Subject,
		Audience:      wc.Audience[0],
		ID:            wc.ID,
		ExpiresAt:     wc.ExpiresAt.UTC(),
		Access:        wc.Access,
		SecretVersion: wc.Version,
	}
	if wc.IssuedAt != nil {
		c.IssuedAt = wc.IssuedAt.UTC()
	}
	if wc.NotBefore != nil {
		c.NotBefore = wc.NotBefore.UTC()
	}
	if len(raw) <= maxCachedTokenLen {
		v.remember(key, c)
	}
	return c, nil
}

// keyFor picks the verification key by kid. The parser has already refused
// every alg but ES256; checking again keeps this safe on its own.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	if t.Method == nil || t.Method.Alg() != jwt.SigningMethodES256.Alg() {
		return nil, jwt.ErrTokenSignatureInvalid
	}
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errNoKid
	}
	k, ok := v.keys[kid]
	if !ok {
		return nil, errUnknownKid
	}
	return k, nil
}

// checkTimes applies the parser's time rules to remembered claims.
func (v *Verifier) checkTimes(c *Claims, now time.Time) error {
	if !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return jwt.ErrTokenExpired
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return jwt.ErrTokenNotValidYet
	}
	return nil
}

// setCacheBytes gives the verified-token cache a new, empty byte bound
// (0: no cache).
func (v *Verifier) setCacheBytes(n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cache = nil
	if n > 0 {
		v.cache = bounded.New(bounded.Options[[sha256.Size]byte, *Claims]{
			MaxBytes: int64(n),
			Cost:     func(_ [sha256.Size]byte, c *Claims) int64 { return int64(claimsCost(c)) },
			Rank: func(now time.Time, _ [sha256.Size]byte, c *Claims) bounded.Rank {
				if v.checkTimes(c, now) != nil {
					return bounded.Expired
				}
				return bounded.Keep
			},
			Now: v.now,
		})
	}
}

func (v *Verifier) cached(key [sha256.Size]byte) (*Claims, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.cache == nil {
		return nil, false
	}
	return v.cache.Get(key)
}

// claimsCost is what remembering c costs in bytes, roughly.
func claimsCost(c *Claims) int {
	n := entryOverhead + len(c.Subject) + len(c.Audience) + len(c.ID)
	for _, a := range c.Access {
		n += 64 + len(a.Type) + len(a.Name)
		for _, act := range a.Actions {
			n += 16 + len(act)
		}
	}
	return n
}

// forget drops key's entry.
func (v *Verifier) forget(key [sha256.Size]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache != nil {
		v.cache.Delete(key)
	}
}

// remember caches c (internal/bounded: expired entries go first when the
// byte bound is reached).
func (v *Verifier) remember(key [sha256.Size]byte, c *Claims) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache != nil {
		v.cache.Put(key, c)
	}
}

func invalidToken(err error) *tollgate.Error {
	return &tollgate.Error{Code: tollgate.EUNAUTHORIZED, Message: "invalid token", Err: err}
}

// Thumbprint returns the RFC 7638 JWK SHA-256 thumbprint of a P-256 public
// key, base64url without padding: the kid of the key's tokens.
func Thumbprint(pub *ecdsa.PublicKey) (string, error) {
	x, y, err := coordinates(pub)
	if err != nil {
		return "", err
	}
	// Members in lexicographic order, no whitespace; base64url needs no
	// JSON escaping.
	canon := `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// coordinates returns the base64url x and y of a P-256 key, 32 bytes each.
func coordinates(pub *ecdsa.PublicKey) (x, y string, err error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return "", "", errors.New("not a P-256 public key")
	}
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return "", "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[1:33]), base64.RawURLEncoding.EncodeToString(b[33:65]), nil
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS returns the JSON Web Key Set of keys, for /.well-known/jwks.json.
// Every key must be P-256.
func JWKS(keys []*ecdsa.PublicKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for i, k := range keys {
		x, y, err := coordinates(k)
		if err != nil {
			return nil, fmt.Errorf("authz: jwks: key %d: %w", i, err)
		}
		kid, _ := Thumbprint(k)
		set.Keys = append(set.Keys, jwk{Kty: "EC", Crv: "P-256", X: x, Y: y, Kid: kid, Use: "sig", Alg: "ES256"})
	}
	return json.Marshal(set)
}
