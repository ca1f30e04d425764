package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tollgate/tollgate"
)

// BenchmarkTokenIssue measures GET /token with Basic credentials and two
// scopes, in process (no network), with the lookup the env uses.
func BenchmarkTokenIssue(b *testing.B) {
	e := newEnv(b)
	_, secret := e.token(tollgate.TokenCreate{})
	h := e.edge
	req := httptest.NewRequest("GET", "/token?service="+e.host+"&scope=repository:demo/hello:pull&scope=repository:demo/other:pull", nil)
	req.SetBasicAuth("tollgate", secret)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkBearerAuthorization measures what every registry request pays
// before it is forwarded: JWT verification (cached after the first),
// the registry-token re-check and the decision, on GET /v2/.
func BenchmarkBearerAuthorization(b *testing.B) {
	e := newEnv(b)
	_, secret := e.token(tollgate.TokenCreate{})
	jwt := e.bearer(secret, "repository:demo/hello:pull")
	h := e.edge
	req := httptest.NewRequest("GET", "/v2/", nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}
