package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubeletconfig "k8s.io/kubelet/config/v1"
	credentialproviderapi "k8s.io/kubelet/pkg/apis/credentialprovider"
	"k8s.io/kubelet/pkg/apis/credentialprovider/install"
	"sigs.k8s.io/yaml"

	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
)

// binary is the provider built once for the tests: kubelet runs a
// process, so the tests do too.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "credprov")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if issuer != nil {
		issuer.Close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the provider.
type result struct {
	stdout, stderr string
	code           int
}

// runProvider runs the binary as kubelet does: args from the config, env
// added to the host's, the request on stdin.
func runProvider(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// saToken is the service-account token kubelet projects for a pod with
// the provider's audience, signed by a test issuer (the stand-in for
// tollgate does not verify it; the end-to-end test in cmd/tollgate does).
func saToken(t testing.TB, aud string) string {
	t.Helper()
	issuerOnce.Do(func() { issuer, issuerErr = oidcissuer.Start() })
	if issuerErr != nil {
		t.Fatal(issuerErr)
	}
	return issuer.Sign(oidcissuer.ServiceAccount("shop", "puller", aud, time.Now()))
}

var (
	issuerOnce sync.Once
	issuer     *oidcissuer.Issuer
	issuerErr  error
)

// kubeletRequest is the request kubelet writes on the plugin's stdin in
// service-account-token mode (KEP-4412): its codec puts kind before
// apiVersion and ends with a newline.
func kubeletRequest(image, token string) string {
	return `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",` +
		`"image":"` + image + `","serviceAccountToken":"` + token + `",` +
		`"serviceAccountAnnotations":{"tollgate.example/team":"shop"}}` + "\n"
}

// nodeRequest is what kubelet sends when the provider has no
// tokenAttributes: the image only.
func nodeRequest(image string) string {
	return `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"` + image + `"}` + "\n"
}

// kubeletDecode decodes the provider's answer as kubelet does
// (pkg/credentialprovider/plugin: the universal decoder into the internal
// type, then the kind and group checked).
func kubeletDecode(t *testing.T, out string) *credentialproviderapi.CredentialProviderResponse {
	t.Helper()
	scheme := runtime.NewScheme()
	install.Install(scheme)
	obj, gvk, err := serializer.NewCodecFactory(scheme).UniversalDecoder().Decode([]byte(out), nil, nil)
	if err != nil {
		t.Fatalf("kubelet would not decode the response: %v\n%s", err, out)
	}
	if gvk.Kind != "CredentialProviderResponse" || gvk.Group != credentialproviderapi.GroupName || gvk.Version != "v1" {
		t.Fatalf("response is %v, kubelet wants credentialprovider.kubelet.k8s.io/v1 CredentialProviderResponse", gvk)
	}
	resp, ok := obj.(*credentialproviderapi.CredentialProviderResponse)
	if !ok {
		t.Fatalf("decoded %T", obj)
	}
	return resp
}

// exchangeServer is tollgate's side of the contract (POST /oauth2/token,
// RFC 8693) standing in until a test uses the real server: it records
// what it was sent and answers as told.
type exchangeServer struct {
	*httptest.Server
	mu       sync.Mutex
	subjects []string
	answer   func(w http.ResponseWriter, subject string)
}

func newExchangeServer(t testing.TB, tlsServer bool, answer func(w http.ResponseWriter, subject string)) *exchangeServer {
	t.Helper()
	s := &exchangeServer{answer: answer}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/oauth2/token" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		r.ParseForm()
		if r.PostForm.Get("grant_type") != grantTokenExchange || r.PostForm.Get("subject_token_type") != tokenTypeJWT || len(r.URL.Query()) > 0 {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "not a token exchange")
			return
		}
		subject := r.PostForm.Get("subject_token")
		s.mu.Lock()
		s.subjects = append(s.subjects, subject)
		s.mu.Unlock()
		s.answer(w, subject)
	})
	if tlsServer {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *exchangeServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subjects...)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// grant answers with a credential living for lifetime.
func grant(secret string, lifetime time.Duration) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": secret, "issued_token_type": tokenTypeAccess,
			"token_type": "N_A", "expires_in": int(lifetime / time.Second),
		})
	}
}

const testCredential = "tge_0123456789abcdefghijABCDEFGHIJ"

func TestKubeletGetsTheExchangedCredentialForTheRegistry(t *testing.T) {
	srv := newExchangeServer(t, false, grant(testCredential, 15*time.Minute))
	host := strings.TrimPrefix(srv.URL, "http://")
	tok := saToken(t, "tollgate:acme")

	r := runProvider(t, kubeletRequest(host+"/acme/app:v1", tok), nil, "--url", srv.URL)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	resp := kubeletDecode(t, r.stdout)
	if got := srv.received(); len(got) != 1 || got[0] != tok {
		t.Fatalf("tollgate was sent %d subject tokens, want the pod's token once", len(got))
	}
	if resp.CacheKeyType != credentialproviderapi.RegistryPluginCacheKeyType {
		t.Errorf("cacheKeyType = %q, want Registry", resp.CacheKeyType)
	}
	// 15 minutes less a margin of 90 s: kubelet asks again before tollgate refuses.
	if resp.CacheDuration == nil || resp.CacheDuration.Duration != 810*time.Second {
		t.Errorf("cacheDuration = %v, want 13m30s", resp.CacheDuration)
	}
	if len(resp.Auth) != 1 || resp.Auth[host].Password != testCredential || resp.Auth[host].Username != username {
		t.Errorf("auth = %v, want {%s: tollgate/<credential>}", resp.Auth, host)
	}
	if r.stderr != "" {
		t.Errorf("stderr on success: %q", r.stderr)
	}
}

func TestFlagsChooseCacheKeyAndRegistries(t *testing.T) {
	srv := newExchangeServer(t, false, grant(testCredential, time.Hour))
	tok := saToken(t, "tollgate:acme")
	r := runProvider(t, kubeletRequest("registry.example.com/acme/app", tok),
		[]string{"TOLLGATE_PROVIDER_URL=" + srv.URL, "TOLLGATE_PROVIDER_CACHE_KEY_TYPE=Image"},
		"--registry", "registry.example.com, *.registry.example.com:8443/acme")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	resp := kubeletDecode(t, r.stdout)
	if resp.CacheKeyType != credentialproviderapi.ImagePluginCacheKeyType {
		t.Errorf("cacheKeyType = %q, want Image (from the environment)", resp.CacheKeyType)
	}
	for _, k := range []string{"registry.example.com", "*.registry.example.com:8443/acme"} {
		if resp.Auth[k].Password != testCredential {
			t.Errorf("auth[%s] missing: %v", k, resp.Auth)
		}
	}
	if resp.CacheDuration.Duration != 54*time.Minute {
		t.Errorf("cacheDuration = %v, want 54m (an hour less a tenth)", resp.CacheDuration.Duration)
	}
}

func TestNodeModeReadsTheTokenFileOnEveryRun(t *testing.T) {
	srv := newExchangeServer(t, false, grant(testCredential, 10*time.Minute))
	file := filepath.Join(t.TempDir(), "token")
	first, second := saToken(t, "tollgate:acme"), saToken(t, "tollgate:acme")
	for _, tok := range []string{first, second} {
		// A rotated file (with the newline tools leave) is picked up without a signal.
		if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runProvider(t, nodeRequest("127.0.0.1/acme/app"), nil, "--url", srv.URL, "--mode", "node", "--token-file", file, "--cache-key-type", "Global")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if resp := kubeletDecode(t, r.stdout); resp.CacheKeyType != credentialproviderapi.GlobalPluginCacheKeyType {
			t.Errorf("cacheKeyType = %q", resp.CacheKeyType)
		}
	}
	if got := srv.received(); len(got) != 2 || got[0] != first || got[1] != second {
		t.Fatal("node mode did not send the file's current token on each run")
	}
}

func TestCacheDurationEndsBeforeTheCredential(t *testing.T) {
	for _, c := range []struct{ lifetime, want time.Duration }{
		{0, 0},                             // lifetime unknown: kubelet must not cache
		{30 * time.Second, 0},              // shorter than the margin: never negative
		{time.Minute, 0},                   // the one-minute floor of the margin
		{5 * time.Minute, 4 * time.Minute}, // one minute beats a tenth
		{15 * time.Minute, 810 * time.Second},
		{12 * time.Hour, 648 * time.Minute}, // a tenth beats one minute
		{90*time.Second + 500*time.Millisecond, 30 * time.Second},
	} {
		if got := cacheDuration(c.lifetime); got != c.want {
			t.Errorf("cacheDuration(%v) = %v, want %v", c.lifetime, got, c.want)
		}
	}
}

// TestFailuresExitNonZeroWithOneClearLine covers what kubelet logs when
// the provider cannot help: a non-zero exit, nothing on stdout, one line
// on stderr saying why, and never the token.
func TestFailuresExitNonZeroWithOneClearLine(t *testing.T) {
	tok := saToken(t, "tollgate:acme")
	refused := newExchangeServer(t, false, func(w http.ResponseWriter, subject string) {
		// A careless server echoing the token must not get it into kubelet's log.
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "no trust policy of account acme matches the token\n"+subject)
	})
	limited := newExchangeServer(t, false, func(w http.ResponseWriter, _ string) {
		w.Header().Set("Retry-After", "7")
		writeOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many exchanges")
	})
	broken := newExchangeServer(t, false, func(w http.ResponseWriter, _ string) {
		http.Error(w, "oops", http.StatusBadGateway)
	})
	wrongType := newExchangeServer(t, false, func(w http.ResponseWriter, _ string) {
		json.NewEncoder(w).Encode(map[string]any{"access_token": "x y", "issued_token_type": tokenTypeAccess})
	})
	elsewhere := newExchangeServer(t, false, grant(testCredential, time.Hour))
	redirect := newExchangeServer(t, false, func(w http.ResponseWriter, _ string) {
		w.Header().Set("Location", elsewhere.URL+"/oauth2/token?x=1")
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	hang := make(chan struct{})
	slow := newExchangeServer(t, false, func(w http.ResponseWriter, _ string) { <-hang })
	t.Cleanup(func() { close(hang) })
	tlsSrv := newExchangeServer(t, true, grant(testCredential, time.Hour))
	notTollgate := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notTollgate.Close)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("not a jwt\n"), 0o600)

	req := kubeletRequest("registry.example.com/acme/app:v1", tok)
	for _, c := range []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"exchange refused", req, []string{"--url", refused.URL}, []string{"refused the token exchange (400 invalid_grant): no trust policy of account acme matches the token [token]"}},
		{"rate limited", req, []string{"--url", limited.URL}, []string{"(429 slow_down): too many exchanges; rate limited, retry after 7s"}},
		{"tollgate failing", req, []string{"--url", broken.URL}, []string{"answered 502 Bad Gateway; try again later"}},
		{"tollgate unreachable", req, []string{"--url", closed}, []string{"tollgate at " + closed + "/oauth2/token is unreachable", "connection refused"}},
		{"tollgate too slow", req, []string{"--url", slow.URL, "--timeout", "1s"}, []string{"did not answer within 1s (--timeout)"}},
		{"not tollgate", req, []string{"--url", notTollgate.URL}, []string{"answered 404 Not Found, not an OAuth token response: is --url tollgate's address?"}},
		{"unusable credential", req, []string{"--url", wrongType.URL}, []string{"without a usable access_token"}},
		{"redirect not followed", req, []string{"--url", redirect.URL}, []string{"answered 307 Temporary Redirect to " + elsewhere.URL + "/oauth2/token: set --url to tollgate's own address"}},
		{"unknown certificate authority", req, []string{"--url", tlsSrv.URL}, []string{"signed by an unknown authority (give the CA with --ca-file)"}},
		{"empty stdin", "", []string{"--url", refused.URL}, []string{"no request on standard input: kubelet sends a CredentialProviderRequest as JSON"}},
		{"stdin not JSON", "image=x", []string{"--url", refused.URL}, []string{"not a JSON CredentialProviderRequest"}},
		{"wrong field type", `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":["x"]}`, []string{"--url", refused.URL}, []string{"the request's image: want a string"}},
		{"older API version", strings.Replace(req, "/v1\"", "/v1beta1\"", 1), []string{"--url", refused.URL}, []string{`"credentialprovider.kubelet.k8s.io/v1beta1"`, "set apiVersion: credentialprovider.kubelet.k8s.io/v1 in kubelet's CredentialProviderConfig"}},
		{"no image", kubeletRequest("", tok), []string{"--url", refused.URL}, []string{"the request's image is empty"}},
		{"no service-account token", nodeRequest("registry.example.com/acme/app"), []string{"--url", refused.URL}, []string{"no serviceAccountToken: give the provider tokenAttributes"}},
		{"service-account token not a JWT", kubeletRequest("r/a", "abc def"), []string{"--url", refused.URL}, []string{"serviceAccountToken is not a JWT"}},
		{"token file not a JWT", nodeRequest("r/a"), []string{"--url", refused.URL, "--mode", "node", "--token-file", tokenFile}, []string{"--token-file " + tokenFile + " is not a JWT"}},
		{"token file missing", nodeRequest("r/a"), []string{"--url", refused.URL, "--mode", "node", "--token-file", tokenFile + ".gone"}, []string{"--token-file " + tokenFile + ".gone: no such file or directory"}},
		{"no url", req, nil, []string{"--url is required"}},
		{"plain http off loopback", req, []string{"--url", "http://registry.example.com"}, []string{"plain http would send identity tokens in the clear; use https"}},
		{"url with user", req, []string{"--url", "https://tollgate:hunter2@registry.example.com"}, []string{"--url: want https://HOST[:PORT] with no user or password in it"}},
		{"bad cache key type", req, []string{"--url", refused.URL, "--cache-key-type", "Pod"}, []string{`--cache-key-type "Pod": want Image, Registry or Global`}},
		{"node mode without file", req, []string{"--url", refused.URL, "--mode", "node"}, []string{"--mode node needs --token-file PATH"}},
		{"unknown mode", req, []string{"--url", refused.URL, "--mode", "pod"}, []string{`--mode "pod": want service-account-token or node`}},
		{"timeout too long", req, []string{"--url", refused.URL, "--timeout", "1h"}, []string{`--timeout "1h": want a duration above 0 and at most 2m0s`}},
		{"unknown flag", req, []string{"--url", refused.URL, "--audience", "x"}, []string{"arguments: flag provided but not defined: -audience"}},
		{"ca file missing", req, []string{"--url", tlsSrv.URL, "--ca-file", "/nonexistent/ca.pem"}, []string{"--ca-file /nonexistent/ca.pem: no such file or directory"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runProvider(t, c.stdin, nil, c.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, stdout %q", r.stdout)
			}
			if r.stdout != "" {
				t.Errorf("stdout on failure: %q", r.stdout)
			}
			line := strings.TrimSuffix(r.stderr, "\n")
			if !strings.HasPrefix(line, name+": ") || strings.Contains(line, "\n") {
				t.Errorf("stderr is not one line starting %q: %q", name+": ", r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q\nlacks %q", line, w)
				}
			}
			if strings.Contains(r.stderr, tok) || strings.Contains(r.stderr, testCredential) || strings.Contains(r.stderr, "hunter2") {
				t.Errorf("stderr leaks a token: %q", r.stderr)
			}
		})
	}
	if got := elsewhere.received(); len(got) != 0 {
		t.Error("a redirect carried the token to another address")
	}
}

func TestCAFileTrustsTollgatesCertificate(t *testing.T) {
	srv := newExchangeServer(t, true, grant(testCredential, time.Hour))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	r := runProvider(t, kubeletRequest("registry.example.com/acme/app", saToken(t, "tollgate:acme")), nil, "--url", srv.URL, "--ca-file", ca)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	u, _ := url.Parse(srv.URL)
	if kubeletDecode(t, r.stdout).Auth[u.Host].Password != testCredential {
		t.Fatal("no credential for tollgate's host")
	}
}

// TestShippedConfigRunsTheProvider holds deploy/kubernetes's
// CredentialProviderConfig to kubelet's schema (strictly) and runs the
// provider with the args and env it gives, as kubelet would, only
// pointing --url at the test's tollgate (a later flag wins).
func TestShippedConfigRunsTheProvider(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/credential-provider-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg kubeletconfig.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		t.Fatalf("not a kubelet CredentialProviderConfig: %v", err)
	}
	if cfg.APIVersion != "kubelet.config.k8s.io/v1" || cfg.Kind != "CredentialProviderConfig" || len(cfg.Providers) != 1 {
		t.Fatalf("want one provider in a kubelet.config.k8s.io/v1 CredentialProviderConfig, got %s %s with %d", cfg.APIVersion, cfg.Kind, len(cfg.Providers))
	}
	p := cfg.Providers[0]
	if p.Name != name || p.APIVersion != apiVersion || p.DefaultCacheDuration == nil || len(p.MatchImages) == 0 {
		t.Fatalf("provider %q: want name %s, apiVersion %s, defaultCacheDuration and matchImages", p.Name, name, apiVersion)
	}
	ta := p.TokenAttributes
	if ta == nil || !strings.HasPrefix(ta.ServiceAccountTokenAudience, "tollgate:") || ta.CacheType != kubeletconfig.TokenServiceAccountTokenCacheType || ta.RequireServiceAccount == nil || !*ta.RequireServiceAccount {
		t.Fatalf("tokenAttributes = %+v: want the tollgate:ACCOUNT audience, cacheType Token, requireServiceAccount true", ta)
	}
	var env []string
	for _, e := range p.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	srv := newExchangeServer(t, false, grant(testCredential, 15*time.Minute))
	image := strings.TrimPrefix(p.MatchImages[0], "*.") + "/acme/app:v1"
	r := runProvider(t, kubeletRequest(image, saToken(t, ta.ServiceAccountTokenAudience)), env, append(p.Args, "--url", srv.URL)...)
	if r.code != 0 {
		t.Fatalf("the shipped args and env: exit %d: %s", r.code, r.stderr)
	}
	resp := kubeletDecode(t, r.stdout)
	for _, m := range p.MatchImages {
		if resp.Auth[m].Password != testCredential {
			t.Errorf("no credential for matchImages entry %q: the provider's --registry must list them (got %v)", m, resp.Auth)
		}
	}
}

// BenchmarkProviderRun is what one kubelet invocation costs on the node:
// starting the process, reading the request, one exchange over loopback
// HTTP (tollgate's own verification is not in it) and writing the answer.
// kubelet runs it once per cacheDuration per cache key, not per pull.
func BenchmarkProviderRun(b *testing.B) {
	srv := newExchangeServer(b, false, grant(testCredential, 15*time.Minute))
	req := kubeletRequest("registry.example.com/acme/app", saToken(b, "tollgate:acme"))
	for b.Loop() {
		cmd := exec.Command(binary, "--url", srv.URL)
		cmd.Stdin = strings.NewReader(req)
		if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), testCredential) {
			b.Fatalf("run: %v", err)
		}
	}
}
