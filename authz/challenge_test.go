package authz

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

func TestChallengeHeader(t *testing.T) {
	tests := []struct {
		name string
		c    Challenge
		want string
	}{
		{"ping", Challenge{Realm: "https://r.example/token", Service: "r.example"},
			`Bearer realm="https://r.example/token",service="r.example"`},
		{"invalid token", Challenge{Realm: "https://r.example/token", Service: "r.example", Scopes: []string{"repository:a/b:pull"}, Problem: ErrInvalidToken},
			`Bearer realm="https://r.example/token",service="r.example",scope="repository:a/b:pull",error="invalid_token"`},
		{"insufficient scope, two scopes", Challenge{Realm: "https://r.example/token", Service: "r.example", Scopes: []string{"repository:a:pull", "repository:b:pull"}, Problem: ErrInsufficientScope},
			`Bearer realm="https://r.example/token",service="r.example",scope="repository:a:pull repository:b:pull",error="insufficient_scope"`},
		{"no service", Challenge{Realm: "https://r.example/token"},
			`Bearer realm="https://r.example/token"`},
		{"empty scopes omitted", Challenge{Realm: "r", Service: "s", Scopes: []string{""}},
			`Bearer realm="r",service="s"`},
		{"escaped", Challenge{Realm: `a"b\c`, Service: `"`},
			`Bearer realm="a\"b\\c",service="\""`},
		{"header injection", Challenge{Realm: "r\r\nSet-Cookie: x=1", Service: "s\x00"},
			`Bearer realm="rSet-Cookie: x=1",service="s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Header(); got != tt.want {
				t.Fatalf("Header() = %s\nwant       %s", got, tt.want)
			}
		})
	}
}

func TestBasicChallenge(t *testing.T) {
	if got := BasicChallenge("tollgate"); got != `Basic realm="tollgate"` {
		t.Fatalf("got %s", got)
	}
	if got := BasicChallenge(`a"b`); got != `Basic realm="a\"b"` {
		t.Fatalf("got %s", got)
	}
}

func basic(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseBasic(t *testing.T) {
	unpadded := "Basic " + strings.TrimRight(base64.StdEncoding.EncodeToString([]byte("tollgate:tg_x")), "=")
	tests := []struct {
		name       string
		header     string
		user, pass string
		ok         bool
	}{
		{"docker", basic("tollgate:tg_abc"), "tollgate", "tg_abc", true},
		{"lower-case scheme", "basic " + base64.StdEncoding.EncodeToString([]byte("u:p")), "u", "p", true},
		{"upper-case scheme", "BASIC " + base64.StdEncoding.EncodeToString([]byte("u:p")), "u", "p", true},
		{"padding missing", unpadded, "tollgate", "tg_x", true},
		{"extra spaces", "Basic   " + base64.StdEncoding.EncodeToString([]byte("u:p")) + " ", "u", "p", true},
		{"colon in password", basic("u:a:b:c"), "u", "a:b:c", true},
		{"utf-8", basic("jürgen:pässwörd"), "jürgen", "pässwörd", true},
		{"invalid utf-8", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:\xfb\xff")), "", "", false},
		{"base64 alphabet +/", basic("u:>>>???"), "u", ">>>???", true},

		{"empty", "", "", "", false},
		{"scheme only", "Basic", "", "", false},
		{"scheme and space", "Basic ", "", "", false},
		{"bearer", "Bearer " + base64.StdEncoding.EncodeToString([]byte("u:p")), "", "", false},
		{"basicx", "Basicx " + base64.StdEncoding.EncodeToString([]byte("u:p")), "", "", false},
		{"tab separator", "Basic\t" + base64.StdEncoding.EncodeToString([]byte("u:p")), "", "", false},
		{"no colon", basic("tg_abc"), "", "", false},
		{"empty user (a Docker config auth of \":TOKEN\")", basic(":tg_abc"), "", "tg_abc", true},
		{"empty password", basic("tollgate:"), "", "", false},
		{"both empty", basic(":"), "", "", false},
		{"newline in password", basic("u:p\nX-Injected: 1"), "", "", false},
		{"NUL in user", basic("u\x00:p"), "", "", false},
		{"DEL in password", basic("u:p\x7f"), "", "", false},
		{"not base64", "Basic !!!!", "", "", false},
		{"url alphabet", "Basic " + base64.URLEncoding.EncodeToString([]byte("u:>>>???")), "", "", false},
		{"newline inside base64", "Basic dTpw\nYQ==", "", "", false},
		{"space inside base64", "Basic dTpw YQ==", "", "", false},
		{"too much padding", "Basic dTpwYQ===", "", "", false},
		{"padding in the middle", "Basic dT=wYQ==", "", "", false},
		{"wrong padding", "Basic dTpwYQ=", "", "", false},
		{"dangling character", "Basic dTpwY", "", "", false},
		{"too long", basic("u:" + strings.Repeat("p", 4096)), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, p, ok := ParseBasic(tt.header)
			if ok != tt.ok || u != tt.user || p != tt.pass {
				t.Fatalf("ParseBasic(%q) = %q, %q, %v; want %q, %q, %v", tt.header, u, p, ok, tt.user, tt.pass, tt.ok)
			}
		})
	}
}

// ParseBasic accepts what net/http's BasicAuth accepts, for every
// well-formed credential.
func TestParseBasicAgreesWithNetHTTP(t *testing.T) {
	for _, cred := range [][2]string{{"tollgate", "tg_abc"}, {"a", "b:c"}, {"user@example.com", "p@ss w0rd"}} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(cred[0], cred[1])
		u, p, ok := ParseBasic(r.Header.Get("Authorization"))
		su, sp, sok := r.BasicAuth()
		if !ok || !sok || u != su || p != sp {
			t.Fatalf("%q: ParseBasic %q %q %v, net/http %q %q %v", cred, u, p, ok, su, sp, sok)
		}
	}
}
