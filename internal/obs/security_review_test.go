package obs

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAccessLogCannotLeakASecretPastedIntoThePath: someone will paste a
// registry token, an account key or a console secret where an id or a
// name belongs. The management API redacts its own log line for that;
// the access log line of the same request held the path as it came.
func TestAccessLogCannotLeakASecretPastedIntoThePath(t *testing.T) {
	const (
		token   = "tg_2Lq0bXw9VfRkT4mZs7YcN1aJ8uEoHd3Gp6WiAB9xQ1"
		key     = "tgk_5nB8cXv2LmQ7rT1zK9wS4yF6hJ0dGa3PeUiVZ2kR7m"
		session = "tgs_9aZ3kQ7mW1xT5bN8vC2pL6rJ0yH4dF7gSeUoPI5tQ2"
	)
	var logs bytes.Buffer
	o := &Observer{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	h := o.Wrap(http.NotFoundHandler())
	for _, p := range []string{
		"/api/v1/tokens/" + token,
		"/api/v1/accounts/" + key + "/tokens",
		"/v2/" + token + "/manifests/latest",
		"/console/tokens/x" + session + "/edit",
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	out := logs.String()
	if strings.Count(out, `"msg":"request"`) != 4 {
		t.Fatalf("want 4 access lines:\n%s", out)
	}
	for _, s := range []string{token, key, session} {
		if strings.Contains(out, s[4:24]) {
			t.Errorf("secret %s... is in the access log:\n%s", s[:4], out)
		}
	}
	if !strings.Contains(out, `"path":"/api/v1/accounts/[REDACTED]/tokens"`) {
		t.Errorf("the rest of the path should stay readable:\n%s", out)
	}
}
