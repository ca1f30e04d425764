package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/dev/pkgrepo"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/sqlite"
	"github.com/tollgate/tollgate/store/storetest"
)

// pkgEnv is tollgate's package front door in front of real static file
// servers holding signed apt and apk repositories, with a real SQLite
// store.
type pkgEnv struct {
	t      testing.TB
	svc    *tollgate.Service
	clock  *testenv.Clock
	root   string // upstream files: apt/NAME/..., apk/NAME/...
	up     *httptest.Server
	cdn    *httptest.Server // another host the upstream redirects to
	srv    *httptest.Server // tollgate
	edge   *Edge
	logs   *testenv.Buffer
	usage  *usageLog
	aptKey string // keyring path
	apkKey *pkgrepo.ApkKey

	mu       sync.Mutex
	upSeen   []seenRequest // requests that reached the upstream
	cdnSeen  []seenRequest
	upCreds  [2]string
	upAccept [2]string // what the upstream accepts (tests change it)

	good, imagesOnly, noAccess, revoked, expired, suspended string // secrets
	goodID                                                  string
}

type seenRequest struct {
	Method, Path, Auth string
	Header             http.Header
}

type usageLog struct {
	mu   sync.Mutex
	uses []string // token ids
}

func (u *usageLog) RecordUse(tokenID, ip, ua string, at time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.uses = append(u.uses, tokenID)
}

func (u *usageLog) count(id string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, x := range u.uses {
		if x == id {
			n++
		}
	}
	return n
}

var testPkgs = []pkgrepo.Package{
	{Name: "hello", Version: "1.0.0", Description: "hello", ModTime: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), Files: map[string][]byte{"usr/share/hello/hello.txt": []byte("hello\n")}},
	{Name: "libbig", Version: "2.0", Description: "a larger package", ModTime: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), Files: map[string][]byte{"usr/lib/big.bin": randomBytes(300 << 10)}},
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

type pkgEnvOption func(*PackagesOptions)

func newPkgEnv(t testing.TB, opts ...pkgEnvOption) *pkgEnv {
	t.Helper()
	ctx := context.Background()
	e := &pkgEnv{t: t, clock: testenv.NewClock(time.Now().UTC().Truncate(time.Second)), root: t.TempDir(), logs: &testenv.Buffer{}, usage: &usageLog{}}
	e.upCreds = [2]string{"tollgate-upstream", "upstream-secret-pw"}
	e.upAccept = e.upCreds

	// Repositories: os (entitled), restricted (not), unsigned (no InRelease).
	aptKey, err := pkgrepo.NewAptKey("test archive")
	if err != nil {
		t.Fatal(err)
	}
	e.aptKey = filepath.Join(t.TempDir(), "keyring.gpg")
	if err := pkgrepo.WriteAptKeyring(e.aptKey, aptKey); err != nil {
		t.Fatal(err)
	}
	if e.apkKey, err = pkgrepo.NewApkKey("test-key"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"os", "restricted"} {
		pk := testPkgs
		if name == "restricted" {
			pk = []pkgrepo.Package{{Name: "secret", Version: "1.0", Files: map[string][]byte{"secret": []byte("s\n")}}}
		}
		if err := pkgrepo.WriteApt(filepath.Join(e.root, "apt", name), pk, pkgrepo.AptOptions{Signer: aptKey, ByHash: true, Date: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		var apks []pkgrepo.Package
		for _, p := range pk {
			p.Version += "-r0"
			apks = append(apks, p)
		}
		if err := pkgrepo.WriteApk(filepath.Join(e.root, "apk", name), apks, pkgrepo.ApkOptions{Key: e.apkKey, Archs: []string{"x86_64"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pkgrepo.WriteApt(filepath.Join(e.root, "apt", "unsigned"), testPkgs[:1], pkgrepo.AptOptions{Date: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}

	files := pkgrepo.FileServer(e.root)
	e.cdn = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.cdnSeen = append(e.cdnSeen, seenRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Clone()})
		e.mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(e.cdn.Close)
	e.up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.upSeen = append(e.upSeen, seenRequest{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Clone()})
		accept := e.upAccept
		e.mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != accept[0] || p != accept[1] {
			w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
			http.Error(w, "upstream wants credentials", http.StatusUnauthorized)
			return
		}
		// Test hooks, by the last path segments.
		p := r.URL.Path
		switch {
		case strings.HasSuffix(p, "/status-500"):
			http.Error(w, "internal detail /srv/secret/path", http.StatusInternalServerError)
		case strings.HasSuffix(p, "/status-503"):
			w.Header().Set("Retry-After", "17")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case strings.HasSuffix(p, "/status-504"):
			http.Error(w, "gateway timeout", http.StatusGatewayTimeout)
		case strings.HasSuffix(p, "/slow"):
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		case strings.HasSuffix(p, "/loop"):
			http.Redirect(w, r, p, http.StatusFound)
		case strings.Contains(p, "/redirect/"):
			// /apt/os/redirect/X -> /apt/os/X on the same host
			http.Redirect(w, r, strings.Replace(p, "/redirect/", "/", 1), http.StatusMovedPermanently)
		case strings.Contains(p, "/cdn/"):
			// /apt/os/cdn/X -> the cdn host's /apt/os/X
			http.Redirect(w, r, e.cdn.URL+strings.Replace(p, "/cdn/", "/", 1), http.StatusTemporaryRedirect)
		case strings.HasSuffix(p, "/set-cookie"):
			http.SetCookie(w, &http.Cookie{Name: "upstream", Value: "x"})
			w.Header().Set("Content-Location", e.cdn.URL+"/elsewhere")
			io.WriteString(w, "ok")
		default:
			files.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(e.up.Close)

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys := storetest.NewKeys(t)
	e.svc = tollgate.NewService(st, keys)
	e.svc.Now = e.clock.Now
	e.good, e.goodID = e.makeAccount("acme", true, tollgate.ScopeImages|tollgate.ScopePackages)
	e.imagesOnly = e.token("acme", tollgate.ScopeImages, tollgate.Expiry{})
	tok, revoked, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "revoked", Scope: tollgate.ScopePackages})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RevokeToken(ctx, "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	e.revoked = revoked.Reveal()
	e.expired = e.token("acme", tollgate.ScopePackages, tollgate.Expiry{At: e.clock.Now().Add(time.Hour)})
	// beta had package access, then it was withdrawn.
	e.noAccess, _ = e.makeAccount("beta", true, tollgate.ScopePackages)
	if _, err := e.svc.DenyPackages(ctx, "operator", "beta"); err != nil {
		t.Fatal(err)
	}
	e.suspended, _ = e.makeAccount("gamma", true, tollgate.ScopePackages)
	if _, err := e.svc.SuspendAccount(ctx, "operator", "gamma"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Hour) // the expiring token is now expired

	var repos []PackageUpstream
	for _, f := range []tollgate.PackageFormat{FormatApt, FormatApk} {
		for _, name := range []string{"os", "restricted", "unsigned", "missing"} {
			repos = append(repos, PackageUpstream{Format: f, Name: name, URL: e.up.URL + "/" + string(f) + "/" + name, Username: e.upCreds[0], Password: e.upCreds[1]})
		}
	}
	// An upstream that is not there.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	repos = append(repos, PackageUpstream{Format: FormatApt, Name: "dead", URL: deadURL})
	o := Options{
		Lookup: storeLookup{store: st},
		Keys:   keys,
		Usage:  e.usage,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    e.clock.Now,
		Packages: PackagesOptions{
			Repos:         repos,
			MaxRedirects:  3,
			HeaderTimeout: 300 * time.Millisecond,
		},
	}
	for _, opt := range opts {
		opt(&o.Packages)
	}
	if e.edge, err = New(o); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.edge)
	t.Cleanup(e.srv.Close)
	return e
}

// makeAccount creates an account entitled to "os" (and "dead",
// "unsigned", "missing"), optionally with package access, and returns a
// token of the given scope.
func (e *pkgEnv) makeAccount(name string, grant bool, scope tollgate.Scope) (string, string) {
	e.t.Helper()
	ctx := context.Background()
	if _, _, _, err := e.svc.CreateAccount(ctx, "operator", name); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.SetSubscription(ctx, "operator", name, tollgate.Subscription{Images: []string{"**"}, Packages: []string{"os", "dead", "unsigned", "missing"}}); err != nil {
		e.t.Fatal(err)
	}
	if grant {
		if _, err := e.svc.GrantPackages(ctx, "operator", name); err != nil {
			e.t.Fatal(err)
		}
	}
	tok, secret, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: name, Name: "t", Scope: scope})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret.Reveal(), tok.ID
}

func (e *pkgEnv) token(acct string, scope tollgate.Scope, exp tollgate.Expiry) string {
	e.t.Helper()
	_, secret, err := e.svc.CreateToken(context.Background(), "operator", tollgate.TokenCreate{Account: acct, Name: "t", Scope: scope, Expiry: exp})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret.Reveal()
}

// get sends method path to tollgate with Basic user:secret (none when
// secret is "") and extra headers; it returns the response and its body.
func (e *pkgEnv) get(method, path, secret string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if secret != "" {
		req.SetBasicAuth("tollgate", secret)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, body
}

// direct fetches a file from the upstream itself, with its credentials.
func (e *pkgEnv) direct(method, path string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.up.URL+path, nil)
	req.SetBasicAuth(e.upCreds[0], e.upCreds[1])
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func (e *pkgEnv) file(rel string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, filepath.FromSlash(rel)))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *pkgEnv) secrets() []string {
	return []string{e.good, e.imagesOnly, e.noAccess, e.revoked, e.expired, e.suspended, e.upCreds[1]}
}

const inRelease = "/apt/os/dists/stable/InRelease"

func TestPackagesAnswers(t *testing.T) {
	e := newPkgEnv(t)
	unknown := tollgate.NewSecret(tollgate.TokenPrefix).Reveal()
	tests := []struct {
		name      string
		method    string
		path      string
		secret    string
		want      int
		challenge bool
		body      string
	}{
		{"no credentials", "GET", inRelease, "", 401, true, "authentication required"},
		{"no credentials apk", "GET", "/apk/os/x86_64/APKINDEX.tar.gz", "", 401, true, "authentication required"},
		{"no credentials head", "HEAD", inRelease, "", 401, true, ""},
		{"unknown token", "GET", inRelease, unknown, 401, true, "invalid credentials"},
		{"malformed token", "GET", inRelease, "tg_notatoken", 401, true, "invalid credentials"},
		{"revoked token", "GET", inRelease, "revoked", 401, true, "registry token revoked"},
		{"expired token", "GET", inRelease, "expired", 401, true, "registry token expired"},
		{"suspended account", "GET", inRelease, "suspended", 401, true, "account suspended"},
		{"token without packages scope", "GET", inRelease, "imagesOnly", 403, false, "does not have the packages scope"},
		{"account without package access", "GET", inRelease, "noAccess", 403, false, "package access has not been granted"},
		{"repository not entitled", "GET", "/apt/restricted/dists/stable/InRelease", "good", 403, false, "does not include package repository restricted"},
		{"apk repository not entitled", "GET", "/apk/restricted/x86_64/APKINDEX.tar.gz", "good", 403, false, "restricted"},
		{"unknown repository not entitled", "GET", "/apt/nosuch/dists/stable/InRelease", "good", 403, false, "forbidden"},
		{"unknown repository without credentials", "GET", "/apt/nosuch/dists/stable/InRelease", "", 401, true, ""},
		{"entitled but not configured", "GET", "/apk/unsigned/x86_64/APKINDEX.tar.gz", "good", 404, false, "not found"},
		{"InRelease missing (apt falls back to Release)", "GET", "/apt/unsigned/dists/stable/InRelease", "good", 404, false, "not found"},
		{"missing file", "GET", "/apt/os/dists/stable/nope", "good", 404, false, "not found"},
		{"missing upstream repository", "GET", "/apt/missing/dists/stable/Release", "good", 404, false, "not found"},
		{"ok", "GET", inRelease, "good", 200, false, "-----BEGIN PGP SIGNED MESSAGE-----"},
		{"ok head", "HEAD", inRelease, "good", 200, false, ""},
		{"write method", "PUT", inRelease, "good", 405, false, "read-only"},
		{"delete without credentials", "DELETE", inRelease, "", 405, false, ""},
	}
	names := map[string]string{"good": e.good, "revoked": e.revoked, "expired": e.expired, "suspended": e.suspended, "imagesOnly": e.imagesOnly, "noAccess": e.noAccess}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := tt.secret
			if s, ok := names[secret]; ok {
				secret = s
			}
			resp, body := e.get(tt.method, tt.path, secret)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			if got := resp.Header.Get("WWW-Authenticate"); tt.challenge != (got != "") || (tt.challenge && got != `Basic realm="tollgate"`) {
				t.Fatalf("WWW-Authenticate = %q", got)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Fatalf("body %q lacks %q", body, tt.body)
			}
			if resp.StatusCode >= 400 {
				if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Fatalf("Content-Type = %q", ct)
				}
				if len(body) > 200 {
					t.Fatalf("error body is %d bytes", len(body))
				}
			}
			for _, s := range e.secrets() {
				if s != "" && strings.Contains(string(body), s) {
					t.Fatal("body carries a secret")
				}
			}
		})
	}
}

// TestPackagesPassThroughByteForByte fetches every kind of repository file
// through tollgate and directly, and compares bytes and headers.
func TestPackagesPassThroughByteForByte(t *testing.T) {
	e := newPkgEnv(t)
	deb := pkgrepo.PoolPath("main", testPkgs[1])
	paths := []string{
		"apt/os/dists/stable/InRelease", "apt/os/dists/stable/Release", "apt/os/dists/stable/Release.gpg",
		"apt/os/dists/stable/main/binary-amd64/Packages", "apt/os/dists/stable/main/binary-amd64/Packages.gz",
		"apt/os/" + deb, "apk/os/x86_64/APKINDEX.tar.gz", "apk/os/x86_64/libbig-2.0-r0.apk",
	}
	// The by-hash file Release names.
	for _, line := range strings.Split(string(e.file("apt/os/dists/stable/Release")), "\n") {
		if f := strings.Fields(line); len(f) == 3 && len(f[0]) == 64 && strings.HasSuffix(f[2], "binary-amd64/Packages.gz") {
			paths = append(paths, "apt/os/dists/stable/main/binary-amd64/by-hash/SHA256/"+f[0])
		}
	}
	if len(paths) != 9 {
		t.Fatalf("no by-hash path found")
	}
	for _, p := range paths {
		resp, body := e.get("GET", "/"+p, e.good)
		if resp.StatusCode != 200 || !bytes.Equal(body, e.file(p)) {
			t.Fatalf("%s: status %d, %d bytes, want the %d bytes on disk", p, resp.StatusCode, len(body), len(e.file(p)))
		}
		dresp, _ := e.direct("GET", "/"+p)
		for _, h := range []string{"Content-Length", "ETag", "Last-Modified", "Content-Type", "Accept-Ranges"} {
			if resp.Header.Get(h) != dresp.Header.Get(h) || resp.Header.Get(h) == "" {
				t.Fatalf("%s: %s = %q, upstream %q", p, h, resp.Header.Get(h), dresp.Header.Get(h))
			}
		}
		head, hb := e.get("HEAD", "/"+p, e.good)
		if head.StatusCode != 200 || len(hb) != 0 || head.Header.Get("Content-Length") != resp.Header.Get("Content-Length") || head.Header.Get("ETag") != resp.Header.Get("ETag") {
			t.Fatalf("%s: HEAD %d %v", p, head.StatusCode, head.Header)
		}
	}
	// Signatures still verify on what came through.
	idx, _ := e.get("GET", "/apk/os/x86_64/APKINDEX.tar.gz", e.good)
	_, idxBody := e.get("GET", "/apk/os/x86_64/APKINDEX.tar.gz", e.good)
	if idx.StatusCode != 200 || pkgrepo.VerifyApkSignature(idxBody, e.apkKey.PublicPEM()) != nil {
		t.Fatal("APKINDEX signature does not verify after tollgate")
	}
	// A client asking for gzip still gets the file's own bytes.
	resp, body := e.get("GET", "/apt/os/dists/stable/main/binary-amd64/Packages", e.good, "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, e.file("apt/os/dists/stable/main/binary-amd64/Packages")) {
		t.Fatal("Accept-Encoding changed the bytes")
	}
}

func TestPackagesConditionalAndRange(t *testing.T) {
	e := newPkgEnv(t)
	p := "/apt/os/" + pkgrepo.PoolPath("main", testPkgs[1])
	full := e.file(strings.TrimPrefix(p, "/"))
	resp, _ := e.get("GET", p, e.good)
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")

	t.Run("If-Modified-Since gives 304", func(t *testing.T) {
		r, body := e.get("GET", p, e.good, "If-Modified-Since", lm)
		if r.StatusCode != 304 || len(body) != 0 || r.Header.Get("ETag") != etag {
			t.Fatalf("status %d, %d bytes, ETag %q", r.StatusCode, len(body), r.Header.Get("ETag"))
		}
	})
	t.Run("If-None-Match gives 304", func(t *testing.T) {
		if r, _ := e.get("GET", p, e.good, "If-None-Match", etag); r.StatusCode != 304 {
			t.Fatalf("status %d", r.StatusCode)
		}
	})
	t.Run("Range resumes", func(t *testing.T) {
		r, body := e.get("GET", p, e.good, "Range", "bytes=1000-")
		if r.StatusCode != 206 || !bytes.Equal(body, full[1000:]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-%d/%d", len(full)-1, len(full)) {
			t.Fatalf("status %d, %d bytes, Content-Range %q", r.StatusCode, len(body), r.Header.Get("Content-Range"))
		}
	})
	t.Run("Range with a matching If-Range", func(t *testing.T) {
		r, body := e.get("GET", p, e.good, "Range", "bytes=10-19", "If-Range", etag)
		if r.StatusCode != 206 || !bytes.Equal(body, full[10:20]) {
			t.Fatalf("status %d, %d bytes", r.StatusCode, len(body))
		}
	})
	t.Run("Range with a stale If-Range gets the whole file", func(t *testing.T) {
		r, body := e.get("GET", p, e.good, "Range", "bytes=10-19", "If-Range", `"stale"`)
		if r.StatusCode != 200 || !bytes.Equal(body, full) {
			t.Fatalf("status %d, %d bytes", r.StatusCode, len(body))
		}
	})
	t.Run("unsatisfiable Range passes through", func(t *testing.T) {
		if r, _ := e.get("GET", p, e.good, "Range", fmt.Sprintf("bytes=%d-", len(full)+10)); r.StatusCode != 416 {
			t.Fatalf("status %d", r.StatusCode)
		}
	})
}

// TestPackagesClientCredentialNeverReachesUpstream: the upstream sees
// tollgate's own credentials, a host it redirects to sees none, and no
// request carries the client's token.
func TestPackagesClientCredentialNeverReachesUpstream(t *testing.T) {
	e := newPkgEnv(t)
	for _, p := range []string{inRelease, "/apt/os/redirect/dists/stable/Release", "/apt/os/cdn/dists/stable/Release"} {
		if resp, body := e.get("GET", p, e.good, "Cookie", "session=client", "Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("x:"+e.good))); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	wantUp := "Basic " + base64.StdEncoding.EncodeToString([]byte(e.upCreds[0]+":"+e.upCreds[1]))
	for _, s := range e.upSeen {
		if s.Auth != wantUp {
			t.Fatalf("upstream %s got Authorization %q", s.Path, s.Auth)
		}
		if s.Header.Get("Cookie") != "" || s.Header.Get("Proxy-Authorization") != "" {
			t.Fatalf("upstream %s got the client's Cookie or Proxy-Authorization", s.Path)
		}
	}
	if len(e.cdnSeen) != 1 {
		t.Fatalf("cdn saw %d requests", len(e.cdnSeen))
	}
	for _, s := range append(e.upSeen, e.cdnSeen...) {
		for k, vs := range s.Header {
			for _, v := range vs {
				if strings.Contains(v, e.good) {
					t.Fatalf("%s carried %s: %q", s.Path, k, v)
				}
			}
		}
	}
	if e.cdnSeen[0].Auth != "" {
		t.Fatal("tollgate's upstream credentials went to the host the upstream redirected to")
	}
}

func TestPackagesRedirectsFollowedUpstreamSide(t *testing.T) {
	e := newPkgEnv(t)
	want := e.file("apt/os/dists/stable/Release")
	for _, p := range []string{"/apt/os/redirect/dists/stable/Release", "/apt/os/redirect/redirect/dists/stable/Release", "/apt/os/cdn/dists/stable/Release", "/apt/os/redirect/cdn/dists/stable/Release"} {
		resp, body := e.get("GET", p, e.good)
		if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.Header.Get("Location") != "" {
			t.Fatalf("%s: %d, Location %q", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// Range and conditionals survive a redirect.
	resp, body := e.get("GET", "/apt/os/cdn/dists/stable/Release", e.good, "Range", "bytes=0-9")
	if resp.StatusCode != 206 || !bytes.Equal(body, want[:10]) {
		t.Fatalf("Range across a redirect: %d %q", resp.StatusCode, body)
	}
	for _, tt := range []struct{ path, why string }{
		{"/apt/os/dists/stable/loop", "a redirect loop"},
		{"/apt/os/redirect/redirect/redirect/redirect/dists/stable/Release", "more than max_redirects"},
	} {
		resp, body := e.get("GET", tt.path, e.good)
		if resp.StatusCode != 502 || resp.Header.Get("Location") != "" || strings.Contains(string(body), e.up.URL) {
			t.Fatalf("%s: %d %q", tt.why, resp.StatusCode, body)
		}
	}
	// With max_redirects 0 a redirect is a 502.
	e0 := newPkgEnv(t, func(o *PackagesOptions) { o.MaxRedirects = 0 })
	if resp, _ := e0.get("GET", "/apt/os/redirect/dists/stable/Release", e0.good); resp.StatusCode != 502 {
		t.Fatalf("max 0: %d", resp.StatusCode)
	}
}

func TestPackagesUpstreamFailures(t *testing.T) {
	e := newPkgEnv(t)
	tests := []struct {
		name, path string
		want       int
		hdr        string // a header that must be set
	}{
		{"upstream 500 is a 502", "/apt/os/status-500", 502, ""},
		{"upstream 503 stays 503 with Retry-After", "/apt/os/status-503", 503, "Retry-After"},
		{"upstream 504 stays 504", "/apt/os/status-504", 504, ""},
		{"slow upstream headers are a 504", "/apt/os/slow", 504, ""},
		{"unreachable upstream is a 502", "/apt/dead/dists/stable/InRelease", 502, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get("GET", tt.path, e.good)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			if tt.hdr != "" && resp.Header.Get(tt.hdr) == "" {
				t.Fatalf("no %s", tt.hdr)
			}
			if strings.Contains(string(body), "/srv/secret") || strings.Contains(string(body), "127.0.0.1") || len(body) > 100 {
				t.Fatalf("body leaks upstream detail: %q", body)
			}
		})
	}
	t.Run("upstream refusing tollgate's credentials is a 502, not a 401", func(t *testing.T) {
		e.mu.Lock()
		e.upAccept = [2]string{"someone", "else"}
		e.mu.Unlock()
		defer func() { e.mu.Lock(); e.upAccept = e.upCreds; e.mu.Unlock() }()
		resp, _ := e.get("GET", inRelease, e.good)
		if resp.StatusCode != 502 || resp.Header.Get("WWW-Authenticate") != "" {
			t.Fatalf("status %d, challenge %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("upstream cookies and locations are dropped", func(t *testing.T) {
		resp, _ := e.get("GET", "/apt/os/set-cookie", e.good)
		if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("Content-Location") != "" {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
	})
}

// rawPkgGet sends a request line as is (no client-side cleaning).
func rawPkgGet(t *testing.T, hostport, target, secret string) int {
	t.Helper()
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auth := base64.StdEncoding.EncodeToString([]byte("tollgate:" + secret))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n", target, hostport, auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPackagesPathTraversalCannotLeaveRepository: dot segments, encoded
// slashes and friends never reach another repository's upstream.
func TestPackagesPathTraversalCannotLeaveRepository(t *testing.T) {
	e := newPkgEnv(t)
	host := strings.TrimPrefix(e.srv.URL, "http://")
	target := "dists/stable/InRelease"
	for _, p := range []string{
		"/apt/os/../restricted/" + target,
		"/apt/os/%2e%2e/restricted/" + target,
		"/apt/os/%2E%2E/restricted/" + target,
		"/apt/os/.%2e/restricted/" + target,
		"/apt/os/..%2frestricted%2f" + target,
		"/apt/os/..%2Frestricted/" + target,
		"/apt/os%2f..%2frestricted/" + target,
		"/apt/os%2F..%2Frestricted/" + target,
		"/apt/os/..%5crestricted/" + target,
		"/apt/os/%2e%2e%5crestricted/" + target,
		"/apt/./restricted/" + target,
		"/apt/os/./../restricted/" + target,
		"/apt//restricted/" + target,
		"/apt/os//../restricted/" + target,
		"/apt/%72estricted/" + target,
		"/apt/os%00/../restricted/" + target,
		"/apt/os/%00/" + target,
		"/apt/os/%zz/" + target,
		"/apt/OS/" + target,
		"/apk/os/../../apt/restricted/" + target,
		"/apt/os",
		"/apt/os/",
	} {
		// (Go's server itself answers 400 to a bad escape.)
		if got := rawPkgGet(t, host, p, e.good); got != 404 && !(got == 400 && strings.Contains(p, "%zz")) {
			t.Errorf("%s: status %d, want 404", p, got)
		}
	}
	// The dot segments in an allowed repository are refused too, not
	// cleaned: what is checked is what is forwarded.
	if got := rawPkgGet(t, host, "/apt/os/dists/../dists/stable/InRelease", e.good); got != 404 {
		t.Errorf("dot segment inside the repository: %d", got)
	}
	e.mu.Lock()
	for _, s := range e.upSeen {
		if strings.Contains(s.Path, "restricted") || strings.Contains(s.Path, "..") {
			t.Errorf("upstream saw %s", s.Path)
		}
	}
	e.mu.Unlock()
	// An escaped character that is fine in a file name is forwarded
	// re-escaped, to the same repository.
	if got := rawPkgGet(t, host, "/apt/os/dists/stable/%49nRelease", e.good); got != 200 {
		t.Fatalf("escaped letter: %d", got)
	}
}

func FuzzParsePackagePath(f *testing.F) {
	for _, s := range []string{"/apt/os/dists/stable/InRelease", "/apk/os/x86_64/APKINDEX.tar.gz", "/apt/os/%2e%2e/x", "/apt/os/a%2fb", "/apt/a/b/../c", "/apk/x/y%20z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		format, repo, path, raw, ok := parsePackagePath(s)
		if !ok {
			return
		}
		if format != FormatApt && format != FormatApk || !tollgate.ValidPackageRepoName(repo) || !strings.HasPrefix(s, "/"+string(format)+"/"+repo+"/") {
			t.Fatalf("%q: format %q repo %q", s, format, repo)
		}
		segs := strings.Split(path, "/")[1:]
		if len(segs) == 0 {
			t.Fatalf("%q: empty path", s)
		}
		for _, seg := range segs {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
				t.Fatalf("%q: bad segment %q in %q", s, seg, path)
			}
		}
		if len(strings.Split(raw, "/")) != len(segs)+1 {
			t.Fatalf("%q: raw %q and path %q differ in segments", s, raw, path)
		}
	})
}

func TestPackagesUsageRecorded(t *testing.T) {
	e := newPkgEnv(t)
	e.get("GET", inRelease, e.good)
	e.get("GET", "/apk/os/x86_64/APKINDEX.tar.gz", e.good)
	e.get("HEAD", inRelease, e.good)
	e.get("GET", "/apt/restricted/dists/stable/InRelease", e.good)
	if n := e.usage.count(e.goodID); n != 2 {
		t.Fatalf("recorded %d uses, want 2 (GETs let through)", n)
	}
}

func TestPackagesSecretsNeverLogged(t *testing.T) {
	e := newPkgEnv(t)
	for _, s := range e.secrets()[:6] {
		for _, p := range []string{inRelease, "/apt/restricted/dists/stable/InRelease", "/apt/os/status-500", "/apt/os/slow", "/apt/dead/x", "/apt/os/dists/stable/loop", "/apt/os/cdn/dists/stable/Release", "/apt/os/../x"} {
			e.get("GET", p, s)
		}
	}
	e.mu.Lock()
	e.upAccept = [2]string{"a", "b"}
	e.mu.Unlock()
	e.get("GET", inRelease, e.good)
	logs := e.logs.String()
	if !strings.Contains(logs, "package upstream") {
		t.Fatalf("expected upstream failures in the log:\n%s", logs)
	}
	for _, s := range e.secrets() {
		if strings.Contains(logs, s) || strings.Contains(logs, base64.StdEncoding.EncodeToString([]byte("tollgate:"+s))) {
			t.Fatalf("a secret is in the logs:\n%s", logs)
		}
	}
}

func TestNewPackagesRefusesBadRepositories(t *testing.T) {
	keys := storetest.NewKeys(t)
	for _, r := range []PackageUpstream{
		{Format: "rpm", Name: "os", URL: "http://x"},
		{Format: FormatApt, Name: "../os", URL: "http://x"},
		{Format: FormatApt, Name: "os", URL: "ftp://x"},
		{Format: FormatApt, Name: "os", URL: "http://u:hunter2@x"},
	} {
		_, err := New(Options{Lookup: storeLookup{}, Keys: keys, Packages: PackagesOptions{Repos: []PackageUpstream{r}}})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%+v: err = %v", r, err)
		}
	}
	two := []PackageUpstream{{Format: FormatApt, Name: "os", URL: "http://x"}, {Format: FormatApt, Name: "os", URL: "http://y"}}
	if _, err := New(Options{Lookup: storeLookup{}, Keys: keys, Packages: PackagesOptions{Repos: two}}); err == nil {
		t.Error("a repository listed twice was accepted")
	}
}
