package authz

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

const (
	testIssuer   = "tollgate"
	testAudience = "registry.example.com"
	testLeeway   = 30 * time.Second
	testLifetime = 5 * time.Minute
)

var testStart = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// newClock returns an injected clock at testStart; tests move it instead
// of sleeping.
func newClock() *testenv.Clock { return testenv.NewClock(testStart) }

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSigner(t testing.TB, key *ecdsa.PrivateKey, clk *testenv.Clock) *Signer {
	t.Helper()
	s, err := NewSigner(key, testIssuer, testLifetime, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(clk *testenv.Clock, keys ...*ecdsa.PrivateKey) *Verifier {
	var pubs []*ecdsa.PublicKey
	for _, k := range keys {
		pubs = append(pubs, &k.PublicKey)
	}
	return NewVerifier(pubs, testIssuer, testAudience, testLeeway, clk.Now)
}

var pullA = []Access{{Type: "repository", Name: "team-a/app", Actions: []string{"pull"}}}

func issue(t testing.TB, s *Signer) string {
	t.Helper()
	tok, _, _, err := s.Issue("tok_1", testAudience, pullA, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// validPayload returns the claims of a token that would pass, at the
// test clock's start.
func validPayload() map[string]any {
	return map[string]any{
		"iss":    testIssuer,
		"sub":    "tok_1",
		"aud":    testAudience,
		"exp":    testStart.Add(time.Minute).Unix(),
		"nbf":    testStart.Unix(),
		"iat":    testStart.Unix(),
		"jti":    "j1",
		"access": pullA,
	}
}

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// signWith signs claims with any method and key, putting kid in the header.
func signWith(t testing.TB, method jwt.SigningMethod, key any, kid string, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mustRefuse checks that Verify refuses raw with a generic EUNAUTHORIZED
// error.
func mustRefuse(t *testing.T, v *Verifier, raw string) error {
	t.Helper()
	c, err := v.Verify(raw)
	if err == nil {
		t.Fatalf("Verify accepted the token: %+v", c)
	}
	if c != nil {
		t.Fatalf("Verify returned claims with an error")
	}
	var e *tollgate.Error
	if !errors.As(err, &e) || e.Code != tollgate.EUNAUTHORIZED || e.Message != "invalid token" || e.Err == nil {
		t.Fatalf("error = %#v, want EUNAUTHORIZED \"invalid token\" with a cause", err)
	}
	return e.Err
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	clk := newClock()
	clk.Set(testStart.Add(400 * time.Millisecond)) // iat is truncated to the second
	key := newKey(t)
	s := newSigner(t, key, clk)
	access := []Access{
		{Type: "repository", Name: "team-a/app", Actions: []string{"pull"}},
		{Type: "repository", Name: "localhost:5000/b", Actions: []string{"pull"}},
	}
	raw, iat, expiresIn, err := s.Issue("tok_1", testAudience, access, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !iat.Equal(testStart) || expiresIn != testLifetime {
		t.Fatalf("issuedAt %v expiresIn %v, want %v %v", iat, expiresIn, testStart, testLifetime)
	}
	c, err := newVerifier(clk, key).Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := &Claims{
		Subject: "tok_1", Audience: testAudience, ID: c.ID,
		IssuedAt: testStart, NotBefore: testStart, ExpiresAt: testStart.Add(testLifetime),
		Access: access,
	}
	if c.ID == "" || !reflect.DeepEqual(c, want) {
		t.Fatalf("claims = %+v\nwant %+v", c, want)
	}
	if !c.Allows("repository", "team-a/app", "pull") || !c.Allows("repository", "localhost:5000/b", "pull") {
		t.Fatal("Allows refuses a granted pull")
	}
	for _, q := range [][3]string{
		{"repository", "team-a/app", "push"},
		{"repository", "team-a/other", "pull"},
		{"registry", "team-a/app", "pull"},
		{"repository", "team-a/app", "*"},
	} {
		if c.Allows(q[0], q[1], q[2]) {
			t.Fatalf("Allows(%q) = true", q)
		}
	}
}

func decodeSegment(t *testing.T, seg string) map[string]json.RawMessage {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIssueWireFormat(t *testing.T) {
	clk := newClock()
	s := newSigner(t, newKey(t), clk)
	raw, _, _, err := s.Issue("tok_1", testAudience, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	hdr := decodeSegment(t, parts[0])
	for k, want := range map[string]string{"alg": `"ES256"`, "typ": `"JWT"`, "kid": `"` + s.Kid() + `"`} {
		if string(hdr[k]) != want {
			t.Errorf("header %s = %s, want %s", k, hdr[k], want)
		}
	}
	p := decodeSegment(t, parts[1])
	for k, want := range map[string]string{
		"iss":    `"tollgate"`,
		"sub":    `"tok_1"`,
		"aud":    `"registry.example.com"`, // a string, not an array
		"iat":    fmt.Sprint(testStart.Unix()),
		"nbf":    fmt.Sprint(testStart.Unix()),
		"exp":    fmt.Sprint(testStart.Add(testLifetime).Unix()),
		"access": `[]`, // never null
	} {
		if string(p[k]) != want {
			t.Errorf("claim %s = %s, want %s", k, p[k], want)
		}
	}
	var jti string
	if err := json.Unmarshal(p["jti"], &jti); err != nil || len(jti) != 32 {
		t.Errorf("jti = %s, want 128 bits in hex", p["jti"])
	}

	raw2, _, _, err := s.Issue("tok_1", testAudience, []Access{{Type: "repository", Name: "a"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2 := decodeSegment(t, strings.Split(raw2, ".")[1])
	if got := string(p2["access"]); got != `[{"type":"repository","name":"a","actions":[]}]` {
		t.Errorf("access = %s, want actions as []", got)
	}
	if string(p2["jti"]) == string(p["jti"]) {
		t.Error("two tokens share a jti")
	}
}

func TestIssueNotAfter(t *testing.T) {
	clk := newClock()
	s := newSigner(t, newKey(t), clk)
	at := func(d time.Duration) *time.Time { x := testStart.Add(d); return &x }
	tests := []struct {
		name     string
		notAfter *time.Time
		want     time.Duration // expiresIn; 0 means refused
	}{
		{"no expiry", nil, testLifetime},
		{"later than lifetime", at(time.Hour), testLifetime},
		{"exactly lifetime", at(testLifetime), testLifetime},
		{"sooner than lifetime", at(2 * time.Minute), 2 * time.Minute},
		{"fraction truncated", at(90*time.Second + 700*time.Millisecond), 90 * time.Second},
		{"exactly a minute (expires_in is never below 60)", at(time.Minute), time.Minute},
		{"under a minute", at(time.Minute - time.Millisecond), 0},
		{"one second", at(time.Second), 0},
		{"now", at(0), 0},
		{"past", at(-time.Hour), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, iat, expiresIn, err := s.Issue("tok_1", testAudience, pullA, tt.notAfter)
			if tt.want == 0 {
				if err == nil {
					t.Fatal("Issue accepted a registry token about to expire")
				}
				if tollgate.ErrorCode(err) != tollgate.EUNAUTHORIZED {
					t.Fatalf("code %q, want EUNAUTHORIZED", tollgate.ErrorCode(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if expiresIn != tt.want || !iat.Equal(testStart) {
				t.Fatalf("expiresIn %v iat %v, want %v %v", expiresIn, iat, tt.want, testStart)
			}
			c, err := NewVerifier([]*ecdsa.PublicKey{&s.key.PublicKey}, testIssuer, testAudience, 0, clk.Now).Verify(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !c.ExpiresAt.Equal(testStart.Add(tt.want)) {
				t.Fatalf("exp %v, want %v", c.ExpiresAt, testStart.Add(tt.want))
			}
		})
	}
}

func TestIssueRefusesMissingSubjectOrAudience(t *testing.T) {
	s := newSigner(t, newKey(t), newClock())
	for _, args := range [][2]string{{"", testAudience}, {"tok_1", ""}} {
		if _, _, _, err := s.Issue(args[0], args[1], nil, nil); tollgate.ErrorCode(err) != tollgate.EINVALID {
			t.Errorf("Issue(%q, %q) err = %v, want EINVALID", args[0], args[1], err)
		}
	}
}

func TestNewSignerRefusesBadInput(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	for name, f := range map[string]func() (*Signer, error){
		"nil key":        func() (*Signer, error) { return NewSigner(nil, testIssuer, time.Minute, nil) },
		"P-384 key":      func() (*Signer, error) { return NewSigner(p384, testIssuer, time.Minute, nil) },
		"empty issuer":   func() (*Signer, error) { return NewSigner(key, "", time.Minute, nil) },
		"zero lifetime":  func() (*Signer, error) { return NewSigner(key, testIssuer, 0, nil) },
		"short lifetime": func() (*Signer, error) { return NewSigner(key, testIssuer, time.Millisecond, nil) },
	} {
		if s, err := f(); err == nil {
			t.Errorf("%s: NewSigner = %v, want an error", name, s)
		}
	}
}

func TestVerifyRejectsAlgNone(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	kid, _ := Thumbprint(&key.PublicKey)
	for _, hdr := range []map[string]any{
		{"alg": "none", "typ": "JWT", "kid": kid},
		{"alg": "None", "typ": "JWT", "kid": kid},
		{"alg": "NONE", "kid": kid},
		{"kid": kid},
	} {
		unsigned := segment(t, hdr) + "." + segment(t, validPayload())
		mustRefuse(t, v, unsigned+".")
		mustRefuse(t, v, unsigned)
	}
	// And as the jwt library itself would write it.
	mustRefuse(t, v, signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, validPayload()))
}

func TestVerifyRejectsHS256SignedWithPublicKey(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	kid, _ := Thumbprint(&key.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := JWKS([]*ecdsa.PublicKey{&key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"PEM":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"DER":  der,
		"SEC1": point,
		"JWKS": jwks,
		"kid":  []byte(kid),
	}
	for name, secret := range secrets {
		for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
			t.Run(name+"/"+m.Alg(), func(t *testing.T) {
				mustRefuse(t, v, signWith(t, m, secret, kid, validPayload()))
			})
		}
	}
}

func TestVerifyRejectsOtherAlgorithms(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	kid, _ := Thumbprint(&key.PublicKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, v, signWith(t, jwt.SigningMethodRS256, rsaKey, kid, validPayload()))
	mustRefuse(t, v, signWith(t, jwt.SigningMethodPS256, rsaKey, kid, validPayload()))
	mustRefuse(t, v, signWith(t, jwt.SigningMethodES384, p384, kid, validPayload()))

	// A valid ES256 signature relabelled as ES384 or ES512.
	good := signWith(t, jwt.SigningMethodES256, key, kid, validPayload())
	parts := strings.Split(good, ".")
	for _, alg := range []string{"ES384", "ES512", "EdDSA", "es256"} {
		hdr := segment(t, map[string]any{"alg": alg, "typ": "JWT", "kid": kid})
		mustRefuse(t, v, hdr+"."+parts[1]+"."+parts[2])
	}
	// The genuine token passes, so the refusals above are about alg.
	if _, err := v.Verify(good); err != nil {
		t.Fatalf("control token refused: %v", err)
	}
}

func TestVerifyRejectsExpired(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	raw := issue(t, newSigner(t, key, clk))
	clk.Set(testStart.Add(testLifetime + testLeeway))
	if err := mustRefuse(t, newVerifier(clk, key), raw); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("cause %v, want ErrTokenExpired", err)
	}
	clk.Set(testStart.Add(24 * time.Hour))
	mustRefuse(t, newVerifier(clk, key), raw)
}

func TestVerifyRejectsNotYetValid(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	clk.Set(testStart.Add(time.Hour)) // issued by a signer whose clock runs ahead
	raw := issue(t, newSigner(t, key, clk))
	clk.Set(testStart)
	if err := mustRefuse(t, newVerifier(clk, key), raw); !errors.Is(err, jwt.ErrTokenNotValidYet) {
		t.Fatalf("cause %v, want ErrTokenNotValidYet", err)
	}
}

func TestVerifyLeewayEdges(t *testing.T) {
	key := newKey(t)
	clk := newClock()
	raw := issue(t, newSigner(t, key, clk)) // nbf = iat = start, exp = start+lifetime
	exp := testStart.Add(testLifetime)
	tests := []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"earliest within leeway", testStart.Add(-testLeeway), true},
		{"a second before leeway", testStart.Add(-testLeeway - time.Second), false},
		{"at nbf", testStart, true},
		{"at exp", exp, true},
		{"last second of leeway", exp.Add(testLeeway - time.Second), true},
		{"last nanosecond of leeway", exp.Add(testLeeway - time.Nanosecond), true},
		{"end of leeway", exp.Add(testLeeway), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			clk.Set(tt.at)
			v := newVerifier(clk, key) // fresh: nothing cached
			_, err := v.Verify(raw)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify at %v: err = %v, want ok=%v", tt.at, err, tt.ok)
			}
		})
	}
}

func TestVerifyRejectsWrongAudience(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	s := newSigner(t, key, clk)
	for _, aud := range []string{"other.example.com", "registry.example.com.evil", "Registry.example.com", "registry.example"} {
		raw, _, _, err := s.Issue("tok_1", aud, pullA, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := mustRefuse(t, v, raw); !errors.Is(err, jwt.ErrTokenInvalidAudience) {
			t.Fatalf("aud %q: cause %v", aud, err)
		}
	}
	kid := s.Kid()
	for name, aud := range map[string]any{
		"missing":        nil,
		"array with two": []string{testAudience, "other"},
		"empty array":    []string{},
		"number":         1,
	} {
		p := validPayload()
		if aud == nil {
			delete(p, "aud")
		} else {
			p["aud"] = aud
		}
		t.Run(name, func(t *testing.T) { mustRefuse(t, v, signWith(t, jwt.SigningMethodES256, key, kid, p)) })
	}
	// One audience in an array is the same audience.
	p := validPayload()
	p["aud"] = []string{testAudience}
	if _, err := v.Verify(signWith(t, jwt.SigningMethodES256, key, kid, p)); err != nil {
		t.Fatalf("aud as a one-element array refused: %v", err)
	}
}

func TestVerifyRejectsWrongIssuer(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	other, err := NewSigner(key, "not-tollgate", testLifetime, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(clk, key)
	if err := mustRefuse(t, v, issue(t, other)); !errors.Is(err, jwt.ErrTokenInvalidIssuer) {
		t.Fatalf("cause %v", err)
	}
	p := validPayload()
	delete(p, "iss")
	mustRefuse(t, v, signWith(t, jwt.SigningMethodES256, key, other.Kid(), p))
}

func TestVerifyRequiresSubjectAndExpiry(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	kid, _ := Thumbprint(&key.PublicKey)
	for _, claim := range []string{"sub", "exp"} {
		p := validPayload()
		delete(p, claim)
		t.Run("no "+claim, func(t *testing.T) { mustRefuse(t, v, signWith(t, jwt.SigningMethodES256, key, kid, p)) })
	}
	p := validPayload()
	p["sub"] = ""
	mustRefuse(t, v, signWith(t, jwt.SigningMethodES256, key, kid, p))
	p = validPayload()
	p["iat"] = testStart.Add(time.Hour).Unix() // issued in the future
	mustRefuse(t, v, signWith(t, jwt.SigningMethodES256, key, kid, p))
}

func TestVerifyRejectsUnknownKid(t *testing.T) {
	clk := newClock()
	key, stranger := newKey(t), newKey(t)
	v := newVerifier(clk, key)
	if err := mustRefuse(t, v, issue(t, newSigner(t, stranger, clk))); !errors.Is(err, errUnknownKid) {
		t.Fatalf("cause %v", err)
	}
	// Our key, but the header names no key or some other one.
	for _, kid := range []string{"", "0", "unknown", strings.Repeat("A", 43)} {
		mustRefuse(t, v, signWith(t, jwt.SigningMethodES256, key, kid, validPayload()))
	}
	p := segment(t, validPayload())
	good := signWith(t, jwt.SigningMethodES256, key, "", validPayload())
	for _, kid := range []any{123, true, []string{"x"}, nil} {
		hdr := segment(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": kid})
		mustRefuse(t, v, hdr+"."+p+"."+strings.Split(good, ".")[2])
	}
}

func TestVerifyRejectsTokenSignedByAnotherKey(t *testing.T) {
	clk := newClock()
	key, attacker := newKey(t), newKey(t)
	v := newVerifier(clk, key)
	kid, _ := Thumbprint(&key.PublicKey) // the attacker claims to be our key
	if err := mustRefuse(t, v, signWith(t, jwt.SigningMethodES256, attacker, kid, validPayload())); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("cause %v", err)
	}
}

func TestVerifyRejectsTamperedPayload(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	s := newSigner(t, key, clk)
	v := newVerifier(clk, key)
	raw := issue(t, s)
	parts := strings.Split(raw, ".")
	payload := decodeSegment(t, parts[1])

	tamper := func(k string, val any) string {
		m := map[string]any{}
		for k, v := range payload {
			m[k] = v
		}
		m[k] = val
		return parts[0] + "." + segment(t, m) + "." + parts[2]
	}
	for name, bad := range map[string]string{
		"push added":       tamper("access", []Access{{Type: "repository", Name: "team-a/app", Actions: []string{"pull", "push"}}}),
		"other repository": tamper("access", []Access{{Type: "repository", Name: "team-b/app", Actions: []string{"pull"}}}),
		"longer life":      tamper("exp", testStart.Add(365*24*time.Hour).Unix()),
		"other subject":    tamper("sub", "tok_2"),
		"header swapped":   segment(t, map[string]any{"alg": "ES256", "kid": s.Kid()}) + "." + parts[1] + "." + parts[2],
		"signature cut":    parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4],
		"signature gone":   parts[0] + "." + parts[1] + ".",
		"extra segment":    raw + "." + parts[2],
		"padded":           raw + "==",
		"bit flipped":      parts[0] + "." + parts[1] + "." + flipFirst(parts[2]),
	} {
		t.Run(name, func(t *testing.T) { mustRefuse(t, v, bad) })
	}
	if _, err := v.Verify(raw); err != nil {
		t.Fatalf("untampered token refused: %v", err)
	}
}

func flipFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

// A base64url segment of 64 bytes ends in a character with two unused bits.
// Without strict decoding, four spellings of one signature would verify,
// and each would be a distinct cache key.
func TestVerifyRejectsNonCanonicalSignatureEncoding(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	raw := issue(t, newSigner(t, key, clk))
	i := strings.LastIndexByte(raw, '.')
	sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, raw[len(raw)-1])
	for bits := 1; bits < 4; bits++ {
		alt := raw[:len(raw)-1] + string(alphabet[last|bits])
		if b, err := base64.RawURLEncoding.DecodeString(alt[i+1:]); err != nil || string(b) != string(sig) {
			t.Fatalf("test setup: %q does not decode to the same signature", alt[i+1:])
		}
		mustRefuse(t, v, alt)
	}
}

func TestVerifyRejectsCritHeader(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	kid, _ := Thumbprint(&key.PublicKey)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims(validPayload()))
	tok.Header["kid"] = kid
	tok.Header["crit"] = []string{"exp"}
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, newVerifier(clk, key), raw)
}

func TestVerifyRejectsHugeToken(t *testing.T) {
	v := newVerifier(newClock(), newKey(t))
	mustRefuse(t, v, "")
	mustRefuse(t, v, strings.Repeat("A", maxTokenLen+1))
}

func TestVerifyKeyRotation(t *testing.T) {
	clk := newClock()
	oldKey, newK := newKey(t), newKey(t)
	oldTok := issue(t, newSigner(t, oldKey, clk))
	newTok := issue(t, newSigner(t, newK, clk))

	both := newVerifier(clk, newK, oldKey)
	for name, raw := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := both.Verify(raw); err != nil {
			t.Fatalf("%s token refused while both keys are listed: %v", name, err)
		}
	}
	onlyNew := newVerifier(clk, newK)
	if _, err := onlyNew.Verify(newTok); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, onlyNew, oldTok)
}

func TestNewVerifierSkipsUnusableKeys(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier([]*ecdsa.PublicKey{nil, &p384.PublicKey, &key.PublicKey}, testIssuer, testAudience, testLeeway, clk.Now)
	if _, err := v.Verify(issue(t, newSigner(t, key, clk))); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCachedClaimsRejectedAfterExpiry(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	raw := issue(t, newSigner(t, key, clk))
	if _, err := v.Verify(raw); err != nil {
		t.Fatal(err)
	}
	if n := cacheLen(v); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	clk.Set(testStart.Add(testLifetime + testLeeway - time.Second))
	if _, err := v.Verify(raw); err != nil {
		t.Fatalf("cached token refused within leeway: %v", err)
	}
	clk.Set(testStart.Add(testLifetime + testLeeway))
	if err := mustRefuse(t, v, raw); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("cause %v, want ErrTokenExpired", err)
	}
	if n := cacheLen(v); n != 0 {
		t.Fatalf("expired entry still cached (%d entries)", n)
	}
}

func TestVerifyCacheServesAfterKeyCheck(t *testing.T) {
	// The cache is keyed by the whole token: a token differing only in its
	// signature is not served from the entry of the genuine one.
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	raw := issue(t, newSigner(t, key, clk))
	if _, err := v.Verify(raw); err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(raw, '.')
	mustRefuse(t, v, raw[:i+1]+flipFirst(raw[i+1:]))
}

func TestVerifyClaimsAreCopies(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	v := newVerifier(clk, key)
	raw := issue(t, newSigner(t, key, clk))
	c1, err := v.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	c1.Access[0].Actions[0] = "push"
	c1.Access = append(c1.Access, Access{Type: "repository", Name: "x", Actions: []string{"pull"}})
	c2, err := v.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c2.Access, pullA) {
		t.Fatalf("a caller's change reached the cache: %+v", c2.Access)
	}
}

func TestVerifyCacheIsBounded(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	s := newSigner(t, key, clk)
	v := newVerifier(clk, key)
	first, err := v.Verify(issue(t, s))
	if err != nil {
		t.Fatal(err)
	}
	v.setCacheBytes(16 * claimsCost(first)) // room for 16 entries of this shape

	// Short-lived tokens first: they are the ones evicted when it fills.
	short, err := NewSigner(key, testIssuer, MinLifetime, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := v.Verify(issue(t, short)); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(testStart.Add(MinLifetime + testLeeway)) // the short ones expire
	var live []string
	for range 6 {
		raw := issue(t, s)
		live = append(live, raw)
		if _, err := v.Verify(raw); err != nil {
			t.Fatal(err)
		}
	}
	if n := cacheLen(v); n != 16 {
		t.Fatalf("cache holds %d, want 16", n)
	}
	raw := issue(t, s)
	if _, err := v.Verify(raw); err != nil {
		t.Fatal(err)
	}
	if n := cacheLen(v); n != 7 {
		t.Fatalf("after evicting expired entries the cache holds %d, want 7", n)
	}
	for _, raw := range live {
		if !cached(v, raw) {
			t.Fatal("a live entry was evicted while expired ones were there")
		}
	}
	// Full of live entries: arbitrary ones go, the cache stays bounded.
	for range 100 {
		if _, err := v.Verify(issue(t, s)); err != nil {
			t.Fatal(err)
		}
		if n := cacheLen(v); n > 16 {
			t.Fatalf("cache grew to %d", n)
		}
	}
}

// TestVerifyCacheBoundedByBytesNotCount: tokens asking for many long
// scopes cost more than short ones; a flood of them must not hold more
// memory than the byte bound, and a JWT past maxCachedTokenLen is never
// remembered at all.
func TestVerifyCacheBoundedByBytesNotCount(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	s := newSigner(t, key, clk)
	v := newVerifier(clk, key)
	const bound = 64 << 10
	v.setCacheBytes(bound)
	wide := func(n int) []Access {
		var out []Access
		for i := range n {
			out = append(out, Access{Type: "repository", Name: fmt.Sprintf("%s/%03d", strings.Repeat("n", 200), i), Actions: []string{"pull"}})
		}
		return out
	}
	huge, _, _, err := s.Issue("tok_1", testAudience, wide(60), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(huge) <= maxCachedTokenLen {
		t.Fatalf("test token is only %d bytes", len(huge))
	}
	if _, err := v.Verify(huge); err != nil {
		t.Fatal(err)
	}
	if cached(v, huge) {
		t.Fatal("a JWT past the size limit was cached")
	}
	for i := range 200 {
		raw, _, _, err := s.Issue(fmt.Sprintf("tok_%d", i), testAudience, wide(20), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(raw); err != nil {
			t.Fatal(err)
		}
		v.mu.RLock()
		held := v.cache.Bytes()
		v.mu.RUnlock()
		if held > bound {
			t.Fatalf("cache holds %d bytes, bound is %d", held, bound)
		}
	}
	if n := cacheLen(v); n == 0 || n > 64 {
		t.Fatalf("cache holds %d wide entries", n)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	clk := newClock()
	key := newKey(t)
	s := newSigner(t, key, clk)
	v := newVerifier(clk, key)
	v.setCacheBytes(8 * claimsCost(&Claims{Subject: "tok_1", Access: pullA}))
	toks := make([]string, 20)
	for i := range toks {
		toks[i] = issue(t, s)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if _, err := v.Verify(toks[(g+i)%len(toks)]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func cacheLen(v *Verifier) int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.cache.Len()
}

func cached(v *Verifier, raw string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.cache.Get(sha256.Sum256([]byte(raw)))
	return ok
}

// The kid is the RFC 7638 thumbprint. RFC 7638's own example is an RSA
// key; this P-256 key and its thumbprint are the example of RFC 9449
// (DPoP), section 6.1.
func TestThumbprintRFC9449Example(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs")
	y, _ := base64.RawURLEncoding.DecodeString("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA")
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"; got != want {
		t.Fatalf("thumbprint %s, want %s", got, want)
	}
}

func TestJWKS(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	b, err := JWKS([]*ecdsa.PublicKey{&k1.PublicKey, &k2.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	for i, k := range []*ecdsa.PrivateKey{k1, k2} {
		got := set.Keys[i]
		point, _ := k.PublicKey.Bytes()
		want := map[string]string{
			"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
			"x": base64.RawURLEncoding.EncodeToString(point[1:33]),
			"y": base64.RawURLEncoding.EncodeToString(point[33:]),
		}
		// The kid, computed here independently of Thumbprint.
		canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, want["x"], want["y"])
		sum := sha256.Sum256([]byte(canon))
		want["kid"] = base64.RawURLEncoding.EncodeToString(sum[:])
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("key %d = %v\nwant %v", i, got, want)
		}
		if s := newSigner(t, k, newClock()); s.Kid() != want["kid"] {
			t.Fatalf("Signer.Kid %s, JWKS kid %s", s.Kid(), want["kid"])
		}
	}

	if b, err := JWKS(nil); err != nil || string(b) != `{"keys":[]}` {
		t.Fatalf("JWKS(nil) = %s, %v", b, err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := JWKS([]*ecdsa.PublicKey{&p384.PublicKey}); err == nil {
		t.Fatal("JWKS took a P-384 key")
	}
}

func BenchmarkIssue(b *testing.B) {
	s, err := NewSigner(newKey(b), testIssuer, testLifetime, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, _, err := s.Issue("tok_1", testAudience, pullA, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCold(b *testing.B) {
	key := newKey(b)
	s, err := NewSigner(key, testIssuer, testLifetime, nil)
	if err != nil {
		b.Fatal(err)
	}
	raw, _, _, err := s.Issue("tok_1", testAudience, pullA, nil)
	if err != nil {
		b.Fatal(err)
	}
	v := NewVerifier([]*ecdsa.PublicKey{&key.PublicKey}, testIssuer, testAudience, testLeeway, nil)
	v.setCacheBytes(0)
	for b.Loop() {
		if _, err := v.Verify(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	key := newKey(b)
	s, err := NewSigner(key, testIssuer, testLifetime, nil)
	if err != nil {
		b.Fatal(err)
	}
	raw, _, _, err := s.Issue("tok_1", testAudience, pullA, nil)
	if err != nil {
		b.Fatal(err)
	}
	v := NewVerifier([]*ecdsa.PublicKey{&key.PublicKey}, testIssuer, testAudience, testLeeway, nil)
	if _, err := v.Verify(raw); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(raw); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestIssueReusesWhileTwoThirdsRemain: signing is most of a token
// request's cost, so the same grant gets the same JWT back — but never one
// with less than two thirds of its lifetime left, never one for another
// subject, access list, audience or expiry cap.
func TestIssueReusesWhileTwoThirdsRemain(t *testing.T) {
	clk := newClock()
	s := newSigner(t, newKey(t), clk)
	s.EnableReuse(1 << 20)
	first, iat, exp, err := s.Issue("tok_1", testAudience, pullA, nil)
	if err != nil || exp != testLifetime {
		t.Fatal(err, exp)
	}
	clk.Set(testStart.Add(testLifetime / 3)) // exactly two thirds left
	again, iat2, exp2, err := s.Issue("tok_1", testAudience, pullA, nil)
	if err != nil || again != first || !iat2.Equal(iat) || exp2 != testLifetime-testLifetime/3 {
		t.Fatalf("same grant at a third of the lifetime: reused %v, iat %v→%v, expires_in %v", again == first, iat, iat2, exp2)
	}
	notAfter := testStart.Add(time.Hour)
	for name, issue := range map[string]func() (string, time.Time, time.Duration, error){
		"other subject":  func() (string, time.Time, time.Duration, error) { return s.Issue("tok_2", testAudience, pullA, nil) },
		"other audience": func() (string, time.Time, time.Duration, error) { return s.Issue("tok_1", "elsewhere", pullA, nil) },
		"other access": func() (string, time.Time, time.Duration, error) {
			return s.Issue("tok_1", testAudience, []Access{{Type: "repository", Name: "b", Actions: []string{"pull"}}}, nil)
		},
		"expiry cap": func() (string, time.Time, time.Duration, error) {
			return s.Issue("tok_1", testAudience, pullA, &notAfter)
		},
	} {
		if raw, _, _, err := issue(); err != nil || raw == first {
			t.Errorf("%s: got the reused token (%v)", name, err)
		}
	}
	clk.Set(testStart.Add(testLifetime/3 + time.Second)) // less than two thirds left
	if fresh, _, exp, err := s.Issue("tok_1", testAudience, pullA, nil); err != nil || fresh == first || exp != testLifetime {
		t.Fatalf("past a third of its lifetime the token was still handed out (%v, expires_in %v)", err, exp)
	}
}

// TestIssueReuseCacheIsBoundedInBytes: subjects and access lists come from
// requests; the reuse cache must not grow with them.
func TestIssueReuseCacheIsBoundedInBytes(t *testing.T) {
	clk := newClock()
	s := newSigner(t, newKey(t), clk)
	s.EnableReuse(64 << 10)
	for i := range 500 {
		if _, _, _, err := s.Issue(fmt.Sprintf("tok_%d", i), testAudience, pullA, nil); err != nil {
			t.Fatal(err)
		}
		s.reuse.mu.Lock()
		held := s.reuse.m.Bytes()
		s.reuse.mu.Unlock()
		if held > 64<<10 {
			t.Fatalf("reuse cache holds %d bytes", held)
		}
	}
}
