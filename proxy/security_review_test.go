package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestUpstreamTokensCannotGrowWithoutBound: with a bearer upstream,
// tollgate's own upstream tokens are cached per repository path. Every
// repository name a caller makes up (anonymous pulls of public/**, or any
// entitled pattern) is another path, answered 401 by the upstream and
// then remembered for good: the cache grew with every name ever asked.
func TestUpstreamTokensCannotGrowWithoutBound(t *testing.T) {
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), Request: r}
		switch {
		case r.URL.Path == "/token":
			resp.Body = io.NopCloser(strings.NewReader(`{"token":"tok-` + r.URL.Query().Get("scope") + `","expires_in":300}`))
		case !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
			resp.StatusCode = http.StatusUnauthorized
			resp.Header.Set("WWW-Authenticate", `Bearer realm="https://upstream.internal/token",service="upstream",scope="repository:`+
				strings.TrimPrefix(upstreamScope(r.URL.Path), "/v2/")+`:pull"`)
		}
		return resp, nil
	})
	a := newUpstreamAuth(up, &url.URL{Scheme: "https", Host: "upstream.internal"}, "tollgate", "pw", nil, nil)
	for i := range 25_000 {
		req, _ := http.NewRequest("GET", "https://upstream.internal/v2/public/made-up-"+strconv.Itoa(i)+"/manifests/latest", nil)
		resp, err := a.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	a.mu.Lock()
	n, held := a.tokens.Len(), int(a.tokens.Bytes())
	a.mu.Unlock()
	if held > maxUpstreamTokenBytes || n == 0 {
		t.Fatalf("%d upstream tokens (%d bytes) cached after 25000 made-up repositories", n, held)
	}
}
