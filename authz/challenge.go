package authz

import (
	"encoding/base64"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Values of a Bearer challenge's error parameter (RFC 6750 section 3.1).
// containerd drops its cached token when a challenge carries one.
const (
	ErrInvalidToken      = "invalid_token"
	ErrInsufficientScope = "insufficient_scope"
)

// Challenge is a Bearer WWW-Authenticate challenge of the registry token
// protocol: where to get a token (Realm), for which service, for which
// scopes, and what was wrong with the token that was sent. It is an error
// that sets its own headers (as distribution's auth.Challenge): a handler
// returns it, wrapping why the request was refused, and the one place that
// writes errors sets the header when the answer is a 401.
type Challenge struct {
	Realm   string
	Service string
	Scopes  []string // resource scopes, joined with spaces
	Problem string   // the error parameter: ErrInvalidToken, ErrInsufficientScope or ""
	// Err is why: its message is what the client is told.
	Err error
}

func (c *Challenge) Error() string {
	if c.Err == nil {
		return "authentication required"
	}
	return c.Err.Error()
}

func (c *Challenge) Unwrap() error { return c.Err }

// SetHeaders sets the WWW-Authenticate header.
func (c *Challenge) SetHeaders(h http.Header) { h.Set("WWW-Authenticate", c.Header()) }

// Header returns the WWW-Authenticate value, e.g.
//
//	Bearer realm="https://r.example/token",service="r.example",scope="repository:a:pull",error="invalid_token"
//
// Empty service, scope and error parameters are left out.
func (c Challenge) Header() string {
	var b strings.Builder
	b.WriteString(`Bearer realm=`)
	writeQuoted(&b, c.Realm)
	if c.Service != "" {
		b.WriteString(`,service=`)
		writeQuoted(&b, c.Service)
	}
	if scope := strings.Join(c.Scopes, " "); strings.TrimSpace(scope) != "" {
		b.WriteString(`,scope=`)
		writeQuoted(&b, scope)
	}
	if c.Problem != "" {
		b.WriteString(`,error=`)
		writeQuoted(&b, c.Problem)
	}
	return b.String()
}

// Basic is a challenge for HTTP Basic credentials, as an error that sets
// its header (see Challenge). Err is why.
type Basic struct {
	Realm string
	Err   error
}

func (b *Basic) Error() string {
	if b.Err == nil {
		return "authentication required"
	}
	return b.Err.Error()
}

func (b *Basic) Unwrap() error { return b.Err }

// SetHeaders sets the WWW-Authenticate header.
func (b *Basic) SetHeaders(h http.Header) { h.Set("WWW-Authenticate", BasicChallenge(b.Realm)) }

// BasicChallenge returns the WWW-Authenticate value asking for HTTP Basic
// credentials. apk matches realm against HTTP_AUTH=basic:REALM:user:pass.
func BasicChallenge(realm string) string {
	var b strings.Builder
	b.WriteString(`Basic realm=`)
	writeQuoted(&b, realm)
	return b.String()
}

// writeQuoted writes s as an RFC 9110 quoted-string: '"' and '\' are
// escaped, control characters (which no header may carry) are dropped.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// maxBasicHeader bounds the Authorization header ParseBasic reads.
const maxBasicHeader = 4 << 10

// ParseBasic parses an HTTP Basic Authorization header value. The scheme
// is matched without regard to case; the credentials are standard base64,
// padded or not. The user ends at the first ':' and may be empty (a Docker
// config whose auth is ":TOKEN" works like any other). It fails (ok false)
// on an empty password, control characters, invalid UTF-8, characters
// outside the base64 alphabet (Go's decoder would skip newlines) and
// headers over 4 KiB.
func ParseBasic(header string) (user, password string, ok bool) {
	if len(header) > maxBasicHeader {
		return "", "", false
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	rest = strings.TrimRight(strings.TrimLeft(rest, " "), " \t")
	data := strings.TrimRight(rest, "=")
	pad := len(rest) - len(data)
	if data == "" || pad > 2 || (pad > 0 && len(rest)%4 != 0) {
		return "", "", false
	}
	for i := 0; i < len(data); i++ {
		if !isBase64Std(data[i]) {
			return "", "", false
		}
	}
	raw, err := base64.RawStdEncoding.DecodeString(data)
	if err != nil {
		return "", "", false
	}
	cred := string(raw)
	if !utf8.ValidString(cred) || hasControl(cred) {
		return "", "", false
	}
	user, password, found = strings.Cut(cred, ":")
	if !found || password == "" {
		return "", "", false
	}
	return user, password, true
}

func isBase64Std(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/'
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}
