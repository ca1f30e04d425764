package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
	serveInParallel(b, h, req)
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
	serveInParallel(b, h, req)
}

// BenchmarkManifestFromCache measures what kubelet's imagePullPolicy:
// Always costs per pod start once warm: HEAD manifest by tag, authorized
// and answered from the manifest cache, through the whole edge.
func BenchmarkManifestFromCache(b *testing.B) {
	e := newEnv(b, withManifestCache(64<<20, time.Minute))
	_, secret := e.token(tollgate.TokenCreate{})
	jwt := e.bearer(secret, "repository:demo/hello:pull")
	h := e.edge
	req := httptest.NewRequest("HEAD", "/v2/demo/hello/manifests/latest", nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req) // fills the cache
	if w.Code != http.StatusOK {
		b.Fatalf("status %d", w.Code)
	}
	e.up.ResetRequests()
	serveInParallel(b, h, req, "Docker-Content-Digest")
	if n := len(e.up.Requests()); n > 0 {
		b.Fatalf("%d requests reached the upstream: not answered from the cache", n)
	}
}

// serveInParallel sends req to h from every benchmark goroutine, b.N times
// in all, and fails on an answer other than 200 or one without the named
// headers.
func serveInParallel(b *testing.B, h http.Handler, req *http.Request, headers ...string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
			for _, k := range headers {
				if w.Header().Get(k) == "" {
					b.Fatalf("no %s", k)
				}
			}
		}
	})
	b.StopTimer()
}
