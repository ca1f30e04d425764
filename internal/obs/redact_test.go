package obs

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
)

// secretPrefixes are every kind of secret tollgate hands out.
var secretPrefixes = []string{tollgate.TokenPrefix, tollgate.AccountKeyPrefix, tollgate.PasswordLinkPrefix, tollgate.SessionPrefix}

// pctEncode percent-encodes every byte of s.
func pctEncode(s string) string {
	var b strings.Builder
	for i := range len(s) {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// TestSecretsInPathsNeverReachTheLog: a secret pasted into a path, however
// it is wrapped, encoded or cut short, is not in the access log line; the
// rest of the path stays readable.
func TestSecretsInPathsNeverReachTheLog(t *testing.T) {
	for _, prefix := range secretPrefixes {
		s := tollgate.NewSecret(prefix).Reveal()
		for _, tc := range []struct{ name, path, want string }{
			{"whole segment", "/api/v1/tokens/" + s, "/api/v1/tokens/[REDACTED]"},
			{"middle of a path", "/v2/" + s + "/manifests/latest", "/v2/[REDACTED]/manifests/latest"},
			{"glued to an id", "/console/tokens/x" + s + "/edit", "/console/tokens/[REDACTED]/edit"},
			{"after a space", "/api/v1/tokens/Bearer " + s, "/api/v1/tokens/[REDACTED]"},
			{"quoted", `/api/v1/tokens/"` + s + `"`, "/api/v1/tokens/[REDACTED]"},
			{"after =", "/token/password=" + s + "&x=1", "/token/[REDACTED]"},
			{"after other punctuation", "/apk/os/:" + s + ";x86_64/APKINDEX.tar.gz", "/apk/os/[REDACTED]/APKINDEX.tar.gz"},
			{"last segment, trailing slash", "/api/v1/accounts/" + s + "/", "/api/v1/accounts/[REDACTED]/"},
			{"first segment", s + "/x", "[REDACTED]/x"},
			{"upper-case prefix", "/v2/" + strings.ToUpper(s[:3]) + s[3:] + "/tags/list", "/v2/[REDACTED]/tags/list"},
			{"cut short", "/api/v1/tokens/" + s[:len(prefix)+8], "/api/v1/tokens/[REDACTED]"},
			{"%20 before it (still encoded)", "/api/v1/tokens/%20" + s, "/api/v1/tokens/[REDACTED]"},
			{"percent-encoded", "/api/v1/tokens/" + pctEncode(s), "/api/v1/tokens/[REDACTED]"},
			{"prefix percent-encoded", "/api/v1/tokens/" + pctEncode(prefix) + s[len(prefix):], "/api/v1/tokens/[REDACTED]"},
			{"encoded three times", "/v2/" + url.PathEscape(url.PathEscape(pctEncode(s))) + "/x", "/v2/[REDACTED]/x"},
			{"encoded four times", "/v2/" + url.PathEscape(url.PathEscape(url.PathEscape(pctEncode(s)))) + "/x", "/v2/[REDACTED]/x"},
			{"two of them", "/a/" + s + "/b/" + s, "/a/[REDACTED]/b/[REDACTED]"},
		} {
			t.Run(prefix+tc.name, func(t *testing.T) {
				if got := RedactPath(tc.path); got != tc.want {
					t.Errorf("RedactPath(%q) = %q, want %q", tc.path, got, tc.want)
				}
			})
		}
	}
	t.Run("kept readable", func(t *testing.T) {
		for _, p := range []string{
			"/v2/acme/tools/postgres/blobs/sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			"/api/v1/accounts/acme/tokens/tok_8ZyWq1nB3cV5xL7k",
			"/console/users/usr_8ZyWq1nB3cV5xL7k",
			"/apt/debian/dists/stable/InRelease",
			"/v2/acme/tg_tool/manifests/v1", // 7 characters after the prefix: not a secret's shape
			"/v2/acme/stg-build_2024/manifests/v1",
			"/a%2Fb/100%25/%zz/%",
			"", "/", "//",
		} {
			if got := RedactPath(p); got != p {
				t.Errorf("RedactPath(%q) = %q, want it unchanged", p, got)
			}
		}
	})
	t.Run("access log", func(t *testing.T) {
		var logs bytes.Buffer
		o := &Observer{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
		h := o.Wrap(http.NotFoundHandler())
		var bodies []string
		for _, prefix := range secretPrefixes {
			s := tollgate.NewSecret(prefix).Reveal()
			bodies = append(bodies, s[len(prefix):])
			for _, p := range []string{"/token/" + url.PathEscape(`"`+s+`"`), "/v2/%2520" + s + "/blobs/x", "/api/v1/tokens/" + pctEncode(s)} {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
			}
		}
		// A lower-case fragment is a valid repository name: handlers
		// record it in Info.Repo.
		repo := "demo/" + strings.ToLower(tollgate.NewSecret(tollgate.TokenPrefix).Reveal()[:20])
		bodies = append(bodies, repo[8:])
		o.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			FromContext(r.Context()).Repo = repo
		})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v2/x/manifests/latest", nil))
		if !strings.Contains(logs.String(), `"repository":"demo/[REDACTED]"`) {
			t.Errorf("the repository is not in the access log, redacted:\n%s", logs.String())
		}
		for _, body := range bodies {
			if strings.Contains(logs.String(), body[:minSecretFragment]) {
				t.Errorf("a secret is in the access log:\n%s", logs.String())
			}
		}
	})
}

// FuzzRedactPath: whatever surrounds a secret and however much of it is
// percent-encoded, none of it survives; and nothing RedactPath returns
// holds a secret shape, however deeply decoded.
func FuzzRedactPath(f *testing.F) {
	f.Add(uint8(0), "/api/v1/tokens/", "", uint64(0), uint8(0))
	f.Add(uint8(1), "/v2/x", "/manifests/latest", uint64(1), uint8(1))
	f.Add(uint8(2), `/console/"`, `"/edit`, uint64(0xffff), uint8(2))
	f.Add(uint8(3), "/a%", "%2", uint64(1<<40), uint8(3))
	f.Add(uint8(0), "tg_", "tgk_0123456789", uint64(0), uint8(4))
	f.Fuzz(func(t *testing.T, kind uint8, before, after string, encode uint64, depth uint8) {
		prefix := secretPrefixes[int(kind)%len(secretPrefixes)]
		s := tollgate.NewSecret(prefix).Reveal()
		var emb strings.Builder
		for i := range len(s) {
			if encode&(1<<(i%64)) != 0 {
				emb.WriteString(pctEncode(s[i : i+1]))
			} else {
				emb.WriteByte(s[i])
			}
		}
		embedded := emb.String()
		for range depth % 5 {
			embedded = strings.ReplaceAll(embedded, "%", "%25")
		}
		got := RedactPath(before + embedded + after)
		for range 8 {
			got = unescape(got)
		}
		if strings.Contains(got, s[len(prefix):len(prefix)+minSecretFragment]) {
			t.Fatalf("secret survived: %q", got)
		}

		// Anything at all: what comes out holds no secret shape.
		out := RedactPath(before + after)
		for _, seg := range strings.Split(out, "/") {
			for range maxDecodes + 1 {
				if hasSecretShape(seg) {
					t.Fatalf("RedactPath(%q) = %q holds a secret shape", before+after, out)
				}
				seg = unescape(seg)
			}
		}
	})
}

func BenchmarkRedactPath(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"blob", "/v2/acme/tools/postgres/blobs/sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{"api", "/api/v1/accounts/acme/tokens/tok_8ZyWq1nB3cV5xL7k"},
		{"secret", "/api/v1/tokens/tg_2Lq0bXw9VfRkT4mZs7YcN1aJ8uEoHd3Gp6WiAB9xQ1/revoke"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				RedactPath(bc.path)
			}
		})
	}
}
