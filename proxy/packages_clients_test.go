package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chainguard-dev/go-apk/pkg/apk"
	"github.com/chainguard-dev/go-apk/pkg/expandapk"
	apkfs "github.com/chainguard-dev/go-apk/pkg/fs"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/dev/pkgrepo"
	"github.com/tollgate/tollgate/internal/testenv"
)

// apkToolsAuth does with HTTP_AUTH what apk-tools does (libfetch,
// http.c: http_request and http_authorize): it sends no credentials until
// the server answers 401, then repeats the request once with them. The
// value is basic:REALM:USER:PASSWORD, where REALM is skipped up to the
// first colon and never compared, the user name runs to the next colon
// and the password is the rest.
type apkToolsAuth struct {
	httpAuth   string
	next       http.RoundTripper
	challenged int
}

func (a *apkToolsAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || req.Header.Get("Authorization") != "" {
		return resp, err
	}
	rest, ok := strings.CutPrefix(a.httpAuth, "basic:")
	if !ok {
		return resp, nil
	}
	_, rest, ok = strings.Cut(rest, ":") // the realm, skipped
	user, pass, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return resp, nil
	}
	a.challenged++
	resp.Body.Close()
	out := req.Clone(req.Context())
	out.SetBasicAuth(user, pass)
	return a.next.RoundTrip(out)
}

// apkoEnvAuth does with HTTP_AUTH what apko and melange do (apko's
// pkg/apk/auth EnvAuth, on every request that has no credentials yet; the
// module chainguard.dev/apko is not on the module proxy, so this is its
// logic, not its code):
// the value split on ":" must be exactly basic, HOST, USER, PASSWORD, and
// the credentials go only to a request whose URL host (host[:port])
// equals HOST.
type apkoEnvAuth struct {
	httpAuth string
	next     http.RoundTripper
}

func (a *apkoEnvAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, _, ok := req.BasicAuth(); !ok {
		if parts := strings.Split(a.httpAuth, ":"); len(parts) == 4 && parts[0] == "basic" && req.URL.Host == parts[1] {
			req = req.Clone(req.Context())
			req.SetBasicAuth(parts[2], parts[3])
		}
	}
	return a.next.RoundTrip(req)
}

// TestPackagesGoApk uses go-apk as the apk client: index (signature
// checked with the repository's key) and package, with the credentials
// in the repository URL and with credentials given only after a 401.
func TestPackagesGoApk(t *testing.T) {
	e := newPkgEnv(t)
	ctx := context.Background()
	keys := map[string][]byte{e.apkKey.Name: e.apkKey.PublicPEM()}
	hostport := strings.TrimPrefix(e.srv.URL, "http://")
	_, port, _ := strings.Cut(hostport, ":")
	plain := &http.Client{Timeout: 10 * time.Second}
	// go-apk caches indexes by URL for the life of the process: a second
	// listener gives a second URL without credentials.
	srv2 := httptest.NewServer(e.edge)
	defer srv2.Close()

	fetch := func(t *testing.T, repo string, client *http.Client, user, pass string) error {
		t.Helper()
		indexes, err := apk.GetRepositoryIndexes(ctx, []string{repo}, keys, "x86_64", apk.WithHTTPClient(client))
		if err != nil {
			return err
		}
		if len(indexes) != 1 || len(indexes[0].Packages()) != 2 {
			t.Fatalf("indexes: %d", len(indexes))
		}
		var big *apk.RepositoryPackage
		for _, p := range indexes[0].Packages() {
			if p.Name == "libbig" {
				big = p
			}
		}
		host := strings.Split(strings.TrimPrefix(repo, "http://"), "/")[0]
		if i := strings.LastIndex(host, "@"); i >= 0 {
			host = host[i+1:]
		}
		a, err := apk.New(apk.WithFS(apkfs.NewMemFS()), apk.WithArch("x86_64"), apk.WithAuth(host, user, pass))
		if err != nil {
			t.Fatal(err)
		}
		a.SetClient(client)
		rc, err := a.FetchPackage(ctx, big)
		if err != nil {
			return err
		}
		defer rc.Close()
		var got bytes.Buffer
		got.ReadFrom(rc)
		if !bytes.Equal(got.Bytes(), e.file("apk/os/x86_64/libbig-2.0-r0.apk")) {
			t.Fatal("the .apk changed on the way")
		}
		exp, err := expandapk.ExpandApk(ctx, bytes.NewReader(got.Bytes()), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer exp.Close()
		if !bytes.Equal(exp.ControlHash, big.Checksum) {
			t.Fatal("package control hash does not match the index")
		}
		return nil
	}

	t.Run("credentials in the repository URL", func(t *testing.T) {
		if err := fetch(t, "http://tollgate:"+e.good+"@"+hostport+"/apk/os", plain, "tollgate", e.good); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("credentials only after a 401", func(t *testing.T) {
		auth := &apkToolsAuth{httpAuth: "basic:" + PackageRealm + ":tollgate:" + e.good, next: http.DefaultTransport}
		client := &http.Client{Transport: auth, Timeout: 10 * time.Second}
		// go-apk's own per-host auth is left empty: only the 401 brings them.
		if err := fetch(t, "http://localhost:"+port+"/apk/os", client, "", ""); err != nil {
			t.Fatal(err)
		}
		if auth.challenged < 2 {
			t.Fatalf("challenged %d times, want one for the index and one for the package", auth.challenged)
		}
	})
	// The HTTP_AUTH and apko repository the set-up commands print, used
	// as apk-tools and apko use them. Hosts are names of this test: the
	// dialer sends every connection to tollgate, so a URL may have no port.
	toEdge := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, e.srv.Listener.Addr().String())
	}}
	defer toEdge.CloseIdleConnections()
	printed := func(t *testing.T, publicURL string) (httpAuth, apkoRepo string) {
		t.Helper()
		var text strings.Builder
		for _, c := range (tollgate.Setup{PublicURL: publicURL, Secret: e.good, Scope: tollgate.ScopePackages,
			Repos: []tollgate.PackageRepo{{Name: "os", Format: tollgate.PackageApk, KeyFile: e.apkKey.Name}}}).Commands() {
			text.WriteString(c.Text + "\n")
		}
		a := regexp.MustCompile(`(?m)^export HTTP_AUTH='([^']+)'$`).FindStringSubmatch(text.String())
		r := regexp.MustCompile(`(?m)^  repositories:\n    - (\S+)$`).FindStringSubmatch(text.String())
		if a == nil || r == nil {
			t.Fatalf("no HTTP_AUTH or apko repository in\n%s", text.String())
		}
		return a[1], r[1]
	}
	for _, port := range []string{"", ":8080"} {
		name := map[string]string{"": "public URL without a port", ":8080": "public URL with a port"}[port]
		t.Run("apk-tools with the printed HTTP_AUTH, "+name, func(t *testing.T) {
			base := "http://apk-tools.test" + port
			httpAuth, _ := printed(t, base)
			auth := &apkToolsAuth{httpAuth: httpAuth, next: toEdge}
			if err := fetch(t, base+"/apk/os", &http.Client{Transport: auth, Timeout: 10 * time.Second}, "", ""); err != nil {
				t.Fatalf("HTTP_AUTH=%s: %v", strings.ReplaceAll(httpAuth, e.good, "TOKEN"), err)
			}
			if auth.challenged < 2 {
				t.Fatalf("challenged %d times, want one for the index and one for the package", auth.challenged)
			}
		})
		t.Run("apko with the printed HTTP_AUTH and repository, "+name, func(t *testing.T) {
			base := "http://apko.test" + port
			httpAuth, repo := printed(t, base)
			if inURL := strings.Contains(repo, "@"); inURL != (port != "") {
				t.Fatalf("apko repository %q: the token belongs in the URL only behind a port", strings.ReplaceAll(repo, e.good, "TOKEN"))
			}
			client := &http.Client{Transport: &apkoEnvAuth{httpAuth: httpAuth, next: toEdge}, Timeout: 10 * time.Second}
			if err := fetch(t, repo, client, "", ""); err != nil {
				t.Fatalf("HTTP_AUTH=%s: %v", strings.ReplaceAll(httpAuth, e.good, "TOKEN"), err)
			}
		})
	}
	t.Run("HTTP_AUTH naming host:port works with neither apk-tools nor apko", func(t *testing.T) {
		for client, rt := range map[string]http.RoundTripper{
			"apk-tools": &apkToolsAuth{httpAuth: "basic:old-apk-tools.test:8080:tollgate:" + e.good, next: toEdge},
			"apko":      &apkoEnvAuth{httpAuth: "basic:old-apko.test:8080:tollgate:" + e.good, next: toEdge},
		} {
			repo := "http://old-" + client + ".test:8080/apk/os"
			_, err := apk.GetRepositoryIndexes(ctx, []string{repo}, keys, "x86_64", apk.WithHTTPClient(&http.Client{Transport: rt}))
			if err == nil || !strings.Contains(err.Error(), "unexpected status code: 401") {
				t.Errorf("%s: err = %v, want status 401", client, err)
			}
		}
	})

	denials := []struct {
		name, repo string
		client     *http.Client
		want       string
	}{
		{"wrong token in the URL", "http://tollgate:" + tokenLike(e) + "@" + hostport + "/apk/os", plain, "401"},
		{"revoked token in the URL", "http://tollgate:" + e.revoked + "@" + hostport + "/apk/os", plain, "401"},
		{"token without the packages scope", "http://tollgate:" + e.imagesOnly + "@" + hostport + "/apk/os", plain, "403"},
		{"account without package access", "http://tollgate:" + e.noAccess + "@" + hostport + "/apk/os", plain, "403"},
		{"repository not entitled", "http://tollgate:" + e.good + "@" + hostport + "/apk/restricted", plain, "403"},
		{"no credentials at all", "http://127.0.0.1:" + port + "/apk/os", plain, "401"},
		{"wrong token after a 401", srv2.URL + "/apk/os", &http.Client{Transport: &apkToolsAuth{httpAuth: "basic:" + PackageRealm + ":u:" + e.revoked, next: http.DefaultTransport}}, "401"},
	}
	for _, d := range denials {
		t.Run(d.name, func(t *testing.T) {
			_, err := apk.GetRepositoryIndexes(ctx, []string{d.repo}, keys, "x86_64", apk.WithHTTPClient(d.client))
			if err == nil || !strings.Contains(err.Error(), "unexpected status code: "+d.want) {
				t.Fatalf("err = %v, want status %s", err, d.want)
			}
		})
	}
}

// tokenLike is a well-formed registry token that is in no store.
func tokenLike(*pkgEnv) string { return tollgate.NewSecret(tollgate.TokenPrefix).Reveal() }

// aptRoot is a private apt configuration: its own state, cache, sources
// and auth.conf.d, and nothing of the system's apt is written.
type aptRoot struct {
	t    *testing.T
	dir  string
	conf string // the APT_CONFIG file
}

func newAptRoot(t *testing.T, sources, auth string) *aptRoot {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"etc/sources.list.d", "etc/auth.conf.d", "etc/preferences.d", "etc/trusted.gpg.d", "state/lists/partial", "cache/archives/partial", "log", "out"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "status"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "etc/sources.list"), []byte(sources), 0o600)
	os.WriteFile(filepath.Join(dir, "etc/auth.conf.d/tollgate.conf"), []byte(auth), 0o600)
	conf := fmt.Sprintf(`Dir::State "%[1]s/state/";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache/";
Dir::Etc "%[1]s/etc/";
Dir::Etc::sourcelist "sources.list";
Dir::Etc::sourceparts "sources.list.d";
Dir::Etc::netrc "auth.conf";
Dir::Etc::netrcparts "auth.conf.d";
Dir::Etc::trusted "trusted.gpg";
Dir::Etc::trustedparts "trusted.gpg.d";
Dir::Etc::preferences "preferences";
Dir::Etc::preferencesparts "preferences.d";
Dir::Log "%[1]s/log/";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
Acquire::Retries "0";
Acquire::http::Timeout "20";
APT::Sandbox::User "root";
Debug::NoLocking "true";
`, dir)
	r := &aptRoot{t: t, dir: dir, conf: filepath.Join(dir, "apt.conf")}
	os.WriteFile(r.conf, []byte(conf), 0o600)
	return r
}

// run runs apt-get with the private configuration in dir out/.
func (r *aptRoot) run(args ...string) (string, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Dir = filepath.Join(r.dir, "out")
	cmd.Env = append(os.Environ(), "APT_CONFIG="+r.conf, "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPackagesAptGet runs Debian's apt-get against tollgate: update
// (InRelease checked with the repository's key, by-hash index files),
// update again (conditional requests), download of a package, and the
// refusals.
func TestPackagesAptGet(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		if testenv.Required() {
			t.Fatal("apt-get is required (TOLLGATE_TEST_REQUIRE_SERVICES=1) but missing")
		}
		t.Skip("apt-get not installed")
	}
	if os.Geteuid() != 0 && !testenv.Required() {
		t.Skip("apt-get's download methods need root here")
	}
	e := newPkgEnv(t)
	base := e.srv.URL + "/apt"
	sources := func(repo string, opts string) string {
		return fmt.Sprintf("deb [%s] %s/%s stable main\n", opts, base, repo)
	}
	signed := "signed-by=" + e.aptKey
	auth := func(secret string) string {
		return fmt.Sprintf("machine %s login tollgate password %s\n", base, secret)
	}
	noSecret := func(t *testing.T, out string) {
		t.Helper()
		for _, s := range e.secrets() {
			if strings.Contains(out, s) {
				t.Fatal("apt's output shows a secret")
			}
		}
	}

	t.Run("update and download", func(t *testing.T) {
		r := newAptRoot(t, sources("os", signed), auth(e.good))
		out, err := r.run("update", "--error-on=any")
		if err != nil {
			t.Fatalf("apt-get update: %v\n%s", err, out)
		}
		noSecret(t, out)
		out, err = r.run("update", "--error-on=any")
		if err != nil || !strings.Contains(out, "Hit:") {
			t.Fatalf("second apt-get update: %v\n%s", err, out)
		}
		out, err = r.run("download", "hello", "libbig")
		if err != nil {
			t.Fatalf("apt-get download: %v\n%s", err, out)
		}
		for _, p := range testPkgs {
			got, err := os.ReadFile(filepath.Join(r.dir, "out", filepath.Base(pkgrepo.PoolPath("main", p))))
			if err != nil || !bytes.Equal(got, e.file("apt/os/"+pkgrepo.PoolPath("main", p))) {
				t.Fatalf("%s: downloaded file differs (%v)", p.Name, err)
			}
		}
		out, err = r.run("install", "--download-only", "-y", "hello")
		if err != nil {
			t.Fatalf("apt-get install --download-only: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(r.dir, "cache/archives/hello_1.0.0_all.deb")); err != nil {
			t.Fatalf("install --download-only left no .deb: %v\n%s", err, out)
		}
	})
	t.Run("InRelease 404 falls back to Release", func(t *testing.T) {
		r := newAptRoot(t, sources("unsigned", "trusted=yes"), auth(e.good))
		out, err := r.run("update", "--error-on=any")
		if err != nil {
			t.Fatalf("apt-get update: %v\n%s", err, out)
		}
		if out, err := r.run("download", "hello"); err != nil {
			t.Fatalf("apt-get download: %v\n%s", err, out)
		}
	})
	for _, d := range []struct {
		name, repo, secret, want string
	}{
		{"wrong token", "os", tokenLike(e), "401"},
		{"revoked token", "os", e.revoked, "401"},
		{"token without the packages scope", "os", e.imagesOnly, "403"},
		{"account without package access", "os", e.noAccess, "403"},
		{"repository not entitled", "restricted", e.good, "403"},
	} {
		t.Run(d.name+" fails", func(t *testing.T) {
			r := newAptRoot(t, sources(d.repo, signed), auth(d.secret))
			out, err := r.run("update", "--error-on=any")
			if err == nil || !strings.Contains(out, d.want) {
				t.Fatalf("apt-get update: err %v, want a failure with %s:\n%s", err, d.want, out)
			}
			noSecret(t, out)
			if out, err := r.run("download", "hello"); err == nil {
				t.Fatalf("apt-get download succeeded:\n%s", out)
			}
		})
	}
}
