package authz

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tollgate/tollgate"
)

func FuzzParseScopes(f *testing.F) {
	for _, seed := range [][2]string{
		{"repository:samalba/my-app:pull,push", ""},
		{"repository:localhost:5000/foo/bar:pull", "registry:catalog:*"},
		{"repository(plugin):x:pull repository:x:push", "repository:x:pull"},
		{"  repository:a:pull   ", ""},
		{"repository:a", "repository::pull"},
		{"repository:a:pull,", "repository:a:"},
		{"a:b:c:d:e", ":::"},
		{"repository:a..b:pull", "repository:A:pull"},
		{strings.Repeat("repository:a:pull ", 70), ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		scopes, err := ParseResourceScopes([]string{a, b})
		if err != nil {
			var e *tollgate.Error
			if !errors.As(err, &e) || e.Code != tollgate.EINVALID || e.Field != "scope" {
				t.Fatalf("error %#v is not an EINVALID scope error", err)
			}
			if len(e.Message) > 300 {
				t.Fatalf("message of %d bytes", len(e.Message))
			}
			return
		}
		if len(scopes) > maxScopes {
			t.Fatalf("%d scopes", len(scopes))
		}
		for i, s := range scopes {
			if s.Name == "" || len(s.Name) > maxScopeNameLen || s.Actions == nil {
				t.Fatalf("bad scope %#v", s)
			}
			if indexScope(scopes[:i], s.Type, s.Name) >= 0 {
				t.Fatalf("duplicate scope %#v", s)
			}
			again, err := ParseResourceScope(s.String())
			if err != nil {
				t.Fatalf("%q does not parse again: %v", s.String(), err)
			}
			if again.String() != s.String() {
				t.Fatalf("round trip %q -> %q", s.String(), again.String())
			}
			for _, part := range []string{s.Type, s.Class, s.Name} {
				if strings.ContainsAny(part, " \t\r\n\"\\,") {
					t.Fatalf("scope %#v carries a separator", s)
				}
			}
		}
	})
}

func FuzzParseBasic(f *testing.F) {
	for _, seed := range []string{
		basic("tollgate:tg_abc"),
		"basic dTpw",
		"BASIC   dTpwYQ==  ",
		basic(":p"),
		basic("u:"),
		basic("u:p\n"),
		"Basic dTpw\nYQ==",
		"Basic dTpwYQ===",
		"Bearer abc",
		"Basic",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		user, pass, ok := ParseBasic(header)
		if !ok {
			if user != "" || pass != "" {
				t.Fatal("credentials returned with ok false")
			}
			return
		}
		if len(header) > maxBasicHeader {
			t.Fatal("accepted an oversized header")
		}
		if pass == "" || strings.Contains(user, ":") {
			t.Fatalf("user %q password %q", user, pass)
		}
		if hasControl(user+pass) || !utf8.ValidString(user) || !utf8.ValidString(pass) {
			t.Fatalf("control character or bad UTF-8 in %q %q", user, pass)
		}
		u2, p2, ok2 := ParseBasic(basic(user + ":" + pass))
		if !ok2 || u2 != user || p2 != pass {
			t.Fatalf("re-encoded %q:%q parses as %q %q %v", user, pass, u2, p2, ok2)
		}
	})
}

// fuzzKey is fixed so that every fuzz worker process agrees on which
// tokens are genuinely signed.
func fuzzKey(f *testing.F) *ecdsa.PrivateKey {
	seed := sha256.Sum256([]byte("tollgate authz fuzz key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:])
	if err != nil {
		f.Fatal(err)
	}
	return k
}

// FuzzVerify checks that Verify never panics, and accepts nothing but
// tokens whose header and payload the test itself signed.
func FuzzVerify(f *testing.F) {
	key := fuzzKey(f)
	kid, err := Thumbprint(&key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	clk := newClock()
	v := NewVerifier([]*ecdsa.PublicKey{&key.PublicKey}, testIssuer, testAudience, testLeeway, clk.Now)

	// The one payload that passes, signed; its header and payload encode
	// the same in every process, the signature does not.
	good := signWith(f, jwt.SigningMethodES256, key, kid, validPayload())
	signed := good[:strings.LastIndexByte(good, '.')+1]

	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	expired := validPayload()
	expired["exp"] = testStart.Add(-time.Hour).Unix()
	wrongAud := validPayload()
	wrongAud["aud"] = "other"

	for _, seed := range []string{
		good,
		signWith(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, validPayload()),
		signWith(f, jwt.SigningMethodHS256, pemKey, kid, validPayload()),
		signWith(f, jwt.SigningMethodES256, key, kid, expired),
		signWith(f, jwt.SigningMethodES256, key, kid, wrongAud),
		signWith(f, jwt.SigningMethodES256, key, "", validPayload()),
		signed,
		segment(f, map[string]any{"alg": "ES256", "kid": kid}) + "." + segment(f, validPayload()) + ".",
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"`+kid+`"}`)) + ".e30.AAAA",
		"a.b.c",
		"...",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(raw)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			if tollgate.ErrorCode(err) != tollgate.EUNAUTHORIZED || tollgate.ErrorMessage(err) != "invalid token" {
				t.Fatalf("error %#v", err)
			}
			return
		}
		if !strings.HasPrefix(raw, signed) {
			t.Fatalf("accepted a token the test did not sign: %q", raw)
		}
		if !c.Allows("repository", "team-a/app", "pull") || c.Allows("repository", "team-a/app", "push") {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}
