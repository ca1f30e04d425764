package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		path string
		want route
		bad  bool
	}{
		{path: "/v2/", want: route{kind: routeBase}},
		{path: "/v2", want: route{kind: routeBase}},
		{path: "/v2/demo/hello/manifests/latest", want: route{kind: routeManifest, name: "demo/hello", ref: "latest"}},
		{path: "/v2/a/b/c/manifests/sha256:" + strings.Repeat("a", 64), want: route{kind: routeManifest, name: "a/b/c", ref: "sha256:" + strings.Repeat("a", 64)}},
		{path: "/v2/demo/hello/blobs/sha256:" + strings.Repeat("b", 64), want: route{kind: routeBlob, name: "demo/hello", ref: "sha256:" + strings.Repeat("b", 64)}},
		{path: "/v2/demo/hello/tags/list", want: route{kind: routeTags, name: "demo/hello"}},
		{path: "/v2/_catalog", want: route{kind: routeCatalog}},
		{path: "/v2/demo/hello/referrers/sha256:" + strings.Repeat("c", 64), want: route{kind: routeReferrers, name: "demo/hello", ref: "sha256:" + strings.Repeat("c", 64)}},
		{path: "/v2/demo/hello/blobs/uploads/", want: route{kind: "blob-upload", name: "demo/hello", write: true}},
		{path: "/v2/demo/../private/secret/manifests/latest", bad: true},
		{path: "/v2/demo/./hello/manifests/latest", bad: true},
		{path: "/v2/demo//hello/manifests/latest", bad: true},
		{path: "/v2/demo/hello/manifests/../../private/secret/manifests/latest", bad: true},
		{path: "/v2/Demo/hello/manifests/latest", bad: true},
		{path: "/v2/demo/hello/manifests/", bad: true},
		{path: "/v2/demo/hello/blobs/notadigest", bad: true},
		{path: "/v2/demo/hello/referrers/latest", bad: true},
		{path: "/v2/demo/hello/something", bad: true},
		{path: "/v2/demo/hello\\x/manifests/latest", bad: true},
	}
	for _, tt := range tests {
		r := &http.Request{URL: &url.URL{Path: tt.path}}
		got, err := parseRoute(r)
		if tt.bad {
			if err == nil {
				t.Errorf("parseRoute(%q) = %+v, want an error", tt.path, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v", tt.path, got, err, tt.want)
		}
	}
}

// TestPathTricksNeverReachAnotherRepository sends raw request lines (no
// client-side cleaning) with a JWT for demo/hello and checks that none of
// them reads private/secret: each is refused or stays inside demo/hello.
func TestPathTricksNeverReachAnotherRepository(t *testing.T) {
	e := newEnv(t)
	_, secret := e.token(tollgate.TokenCreate{})
	// Entitle everything so that only the JWT's scope stands between the
	// caller and private/secret.
	e.svc.SetSubscription(t.Context(), "operator", e.acctName, tollgate.Subscription{Images: []string{"**"}})
	jwt := e.bearer(secret, "repository:demo/hello:pull")
	tricks := []string{
		"/v2/demo/hello/../../private/secret/manifests/latest",
		"/v2/demo/hello/%2e%2e/%2e%2e/private/secret/manifests/latest",
		"/v2/demo/hello/%252e%252e/private/secret/manifests/latest",
		"/v2/demo%2fhello/../private/secret/manifests/latest",
		"/v2/private%2fsecret/manifests/latest",
		"/v2/demo/hello/manifests/latest/../../../private/secret/manifests/latest",
		"/v2/demo/hello/manifests/..%2f..%2f..%2fprivate%2fsecret%2fmanifests%2flatest",
		"/v2/./private/secret/manifests/latest",
		"/v2//private/secret/manifests/latest",
		"/v2/demo/hello/%00/../private/secret/manifests/latest",
		"/v2/demo/hello/manifests/latest?x=/../../private/secret",
		"/v2/%70rivate/secret/manifests/latest",
		"//v2/private/secret/manifests/latest",
		"/v2/demo/hello/manifests/latest#/../../private/secret",
	}
	e.up.ResetRequests()
	for _, p := range tricks {
		status := rawGet(t, e.host, p, jwt)
		if status == 200 {
			// Only a request that stayed in demo/hello may succeed.
			for _, r := range e.up.Requests() {
				if strings.Contains(r.Path, "private") {
					t.Fatalf("%s reached upstream %s", p, r.Path)
				}
			}
		}
	}
	for _, r := range e.up.Requests() {
		if strings.Contains(r.Path, "private") {
			t.Fatalf("a trick reached upstream path %s", r.Path)
		}
	}
}

func rawGet(t *testing.T, host, path, jwt string) int {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", path, host, jwt)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/demo/hello/manifests/latest", "/v2/a/blobs/uploads/tags/list", "/v2/a/b/manifests/A_b.c-9", "/v2/a/manifests/sha256+b64:abc=_-",
		"/v2/a/blobs/uploads/blobs/sha256:abc", "/v2/x/referrers/sha-256.v1:" + strings.Repeat("F", 32), "/v2/a/manifests/" + strings.Repeat("t", 129), "/v2/a/tags/list/", "/v2/a/../b/blobs/sha256:" + strings.Repeat("a", 64), "/v2/_catalog", "/v2/x/referrers/sha256:" + strings.Repeat("0", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return
		}
		rt, err := parseRoute(&http.Request{URL: u})
		if err != nil {
			return
		}
		// The hand-written fast path answers as the route table does.
		if fast, ok := fastRoute(u.Path); ok {
			if table, err := routeTable(u.Path); err != nil || table != fast {
				t.Fatalf("%q: fast path %+v, route table %+v, %v", u.Path, fast, table, err)
			}
		}
		// Whatever is accepted is clean: no dot segments, a valid name.
		for _, s := range strings.Split(u.Path, "/") {
			if s == "." || s == ".." {
				t.Fatalf("accepted dot segment in %q", raw)
			}
		}
		if rt.name != "" && !validRepoName(rt.name) {
			t.Fatalf("accepted bad name %q", rt.name)
		}
		if rt.kind != routeBase && rt.kind != routeCatalog && !strings.HasPrefix(u.Path, "/v2/"+rt.name+"/") {
			t.Fatalf("name %q is not what the path %q says", rt.name, u.Path)
		}
	})
}

func TestRewriteLocation(t *testing.T) {
	u, _ := NewUpstream(UpstreamOptions{URL: "https://upstream.internal:5000", Mappings: []Mapping{{Public: "", Upstream: "images/"}}, PublicURL: "https://registry.example.com"})
	tests := map[string]string{
		"https://upstream.internal:5000/v2/images/nginx/blobs/sha256:abc?x=1": "https://registry.example.com/v2/nginx/blobs/sha256:abc?x=1",
		"/v2/images/nginx/manifests/latest":                                   "https://registry.example.com/v2/nginx/manifests/latest",
		"https://s3.example.net/bucket/blob?X-Amz-Signature=abc":              "https://s3.example.net/bucket/blob?X-Amz-Signature=abc",
	}
	for in, want := range tests {
		if got := u.rewriteLocation(in); got != want {
			t.Errorf("rewriteLocation(%q) = %q, want %q", in, got, want)
		}
	}
	if got, ok := u.ToUpstream("nginx"); !ok || got != "images/nginx" {
		t.Errorf("ToUpstream = %q", got)
	}
	sub, _ := NewUpstream(UpstreamOptions{URL: "https://upstream.internal:5000", Mappings: []Mapping{{Public: "team-a/", Upstream: "vendor/team-a/"}}})
	if got, ok := sub.ToUpstream("team-a/app"); !ok || got != "vendor/team-a/app" {
		t.Errorf("subtree mapping = %q %v", got, ok)
	}
	if _, ok := sub.ToUpstream("vendor/other"); ok {
		t.Error("a name outside every mapping is served as is")
	}
	if got, ok := u.FromUpstream("images/nginx"); !ok || got != "nginx" {
		t.Errorf("FromUpstream = %q %v", got, ok)
	}
	if _, ok := u.FromUpstream("other/x"); ok {
		t.Error("an unmapped upstream name is served")
	}
}
