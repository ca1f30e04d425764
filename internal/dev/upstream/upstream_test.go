package upstream_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/tollgate/tollgate/internal/dev/upstream"
)

func start(t *testing.T, opts upstream.Options) *upstream.Registry {
	t.Helper()
	reg, err := upstream.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := reg.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return reg
}

func craneOpts(ctx context.Context, reg *upstream.Registry, extra ...crane.Option) []crane.Option {
	return append([]crane.Option{crane.WithContext(ctx), crane.WithTransport(reg.Transport())}, extra...)
}

func TestSeedAndPullFromFilesystem(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	reg := start(t, upstream.Options{Dir: dir})
	if !strings.HasPrefix(reg.URL, "http://127.0.0.1:") || reg.URL != "http://"+reg.Host {
		t.Fatalf("URL %q, Host %q", reg.URL, reg.Host)
	}

	img, err := upstream.Seed(ctx, reg, "test/app:v1", upstream.SeedOptions{})
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if img.Ref != reg.Host+"/test/app:v1" || img.Repo != "test/app" || img.Tag != "v1" {
		t.Errorf("image names: %+v", img)
	}
	if len(img.Layers) != 2 || len(img.Manifests) != 0 {
		t.Errorf("layers %v, manifests %v; want 2 layers, no manifests", img.Layers, img.Manifests)
	}

	for _, ref := range []string{img.Ref, reg.Host + "/test/app@" + img.Digest} {
		pulled, err := crane.Pull(ref, craneOpts(ctx, reg)...)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		d, err := pulled.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if d.String() != img.Digest {
			t.Errorf("pull %s: digest %s, want %s", ref, d, img.Digest)
		}
		ls, err := pulled.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range ls {
			ld, _ := l.Digest()
			if ld.String() != img.Layers[i] {
				t.Errorf("layer %d: %s, want %s", i, ld, img.Layers[i])
			}
			rc, err := l.Compressed() // fetches and verifies the blob
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			rc.Close()
		}
	}

	// The bytes are on disk under Dir, not in memory.
	blob := filepath.Join(dir, "docker/registry/v2/blobs/sha256", img.Layers[0][7:9], img.Layers[0][7:], "data")
	if _, err := os.Stat(blob); err != nil {
		t.Errorf("layer not in filesystem storage: %v", err)
	}
}

func TestSeedInMemoryIsDeterministic(t *testing.T) {
	ctx := t.Context()
	a := start(t, upstream.Options{})
	b := start(t, upstream.Options{})
	opts := upstream.SeedOptions{Layers: 3, LayerSize: 4096, Seed: 42}
	ia, err := upstream.Seed(ctx, a, "x/y:1", opts)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := upstream.Seed(ctx, b, "x/y:1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if ia.Digest != ib.Digest || len(ia.Layers) != 3 {
		t.Errorf("same seed, different images: %+v vs %+v", ia, ib)
	}
	ic, err := upstream.Seed(ctx, a, "x/y:2", upstream.SeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ic.Digest == ia.Digest {
		t.Errorf("random seed repeated a digest")
	}
}

func TestSeedIndexHasTwoPlatforms(t *testing.T) {
	ctx := t.Context()
	reg := start(t, upstream.Options{Dir: t.TempDir()})
	img, err := upstream.Seed(ctx, reg, "multi/arch:latest", upstream.SeedOptions{
		Platforms: []string{"linux/amd64", "linux/arm64"},
	})
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if len(img.Manifests) != 2 {
		t.Fatalf("manifests %v, want 2", img.Manifests)
	}

	raw, err := crane.Manifest(img.Ref, craneOpts(ctx, reg)...)
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("media type %q", idx.MediaType)
	}
	var plats []string
	for _, m := range idx.Manifests {
		plats = append(plats, m.Platform.String())
	}
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v", plats)
	}
	if d, _ := crane.Digest(img.Ref, craneOpts(ctx, reg)...); d != img.Digest {
		t.Errorf("index digest %s, want %s", d, img.Digest)
	}

	for i, arch := range []string{"amd64", "arm64"} {
		p := &v1.Platform{OS: "linux", Architecture: arch}
		pulled, err := crane.Pull(img.Ref, craneOpts(ctx, reg, crane.WithPlatform(p))...)
		if err != nil {
			t.Fatalf("pull %s: %v", arch, err)
		}
		cf, err := pulled.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := pulled.Digest()
		if cf.Architecture != arch || d.String() != img.Manifests[i] {
			t.Errorf("%s: got architecture %s digest %s, want %s", arch, cf.Architecture, d, img.Manifests[i])
		}
	}
}

func TestBasicAuthRequired(t *testing.T) {
	ctx := t.Context()
	reg := start(t, upstream.Options{BasicAuth: &upstream.BasicAuth{User: "up", Password: "s3cret"}})

	resp, err := http.Get(reg.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="upstream"` {
		t.Fatalf("anonymous: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	// Seed authenticates with the registry's own credentials.
	img, err := upstream.Seed(ctx, reg, "auth/img:latest", upstream.SeedOptions{})
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}

	_, err = crane.Digest(img.Ref, craneOpts(ctx, reg)...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous crane: %v, want 401", err)
	}
	wrong := crane.WithAuth(&authn.Basic{Username: "up", Password: "nope"})
	if _, err := crane.Digest(img.Ref, craneOpts(ctx, reg, wrong)...); err == nil {
		t.Errorf("wrong password accepted")
	}

	reg.ResetRequests()
	right := crane.WithAuth(&authn.Basic{Username: "up", Password: "s3cret"})
	d, err := crane.Digest(img.Ref, craneOpts(ctx, reg, right)...)
	if err != nil || d != img.Digest {
		t.Fatalf("with credentials: %s, %v", d, err)
	}

	// The recorder sees the request headers as they arrived.
	var sawManifest bool
	for _, r := range reg.Requests() {
		if strings.Contains(r.Path, "/manifests/") {
			sawManifest = true
			if u, p, ok := (&http.Request{Header: r.Header}).BasicAuth(); !ok || u != "up" || p != "s3cret" {
				t.Errorf("recorded %s %s without the credentials", r.Method, r.Path)
			}
		}
	}
	if !sawManifest {
		t.Errorf("no manifest request recorded: %+v", reg.Requests())
	}
}

func TestRequestsRingKeepsTheLast1000(t *testing.T) {
	reg := start(t, upstream.Options{})
	for i := range 1005 {
		req, _ := http.NewRequest(http.MethodGet, reg.URL+"/v2/?n="+string(rune('a'+i%26)), nil)
		req.Header.Set("X-N", string(rune('0'+i%10)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := reg.Requests()
	if len(got) != 1000 {
		t.Fatalf("%d recorded, want 1000", len(got))
	}
	// Request 5 is the oldest kept, request 1004 the newest.
	if got[0].RawQuery != "n="+string(rune('a'+5%26)) || got[999].Header.Get("X-N") != string(rune('0'+1004%10)) {
		t.Errorf("ring order: first %+v, last %+v", got[0], got[999])
	}
	if got[0].Method != http.MethodGet || got[0].Path != "/v2/" {
		t.Errorf("recorded %+v", got[0])
	}
}

func TestTLSWithTestCA(t *testing.T) {
	ctx := t.Context()
	ca, err := upstream.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, certPEM, keyPEM, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("PEM pair: %v", err)
	}
	reg := start(t, upstream.Options{
		Dir: t.TempDir(),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	})
	if reg.URL != "https://"+reg.Host {
		t.Fatalf("URL %q", reg.URL)
	}

	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	resp, err := trusting.Get(reg.URL + "/v2/")
	if err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}

	if _, err := http.Get(reg.URL + "/v2/"); err == nil {
		t.Errorf("client not trusting the CA connected")
	}

	img, err := upstream.Seed(ctx, reg, "tls/img:latest", upstream.SeedOptions{})
	if err != nil {
		t.Fatalf("Seed over TLS: %v", err)
	}
	pulled, err := crane.Pull(img.Ref, crane.WithContext(ctx), crane.WithTransport(trusting.Transport))
	if err != nil {
		t.Fatalf("crane over TLS: %v", err)
	}
	if d, _ := pulled.Digest(); d.String() != img.Digest {
		t.Errorf("digest %s, want %s", d, img.Digest)
	}
	for _, r := range reg.Requests() {
		if r.Header.Get("X-Forwarded-Proto") != "" {
			t.Errorf("unexpected header on %s", r.Path)
		}
	}

	caFile, certFile, keyFile, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("written pair: %v", err)
	}
	if b, err := os.ReadFile(caFile); err != nil || string(b) != string(ca.CertPEM) {
		t.Errorf("ca file: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
}

func TestSeedDemoIsIdempotent(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	reg := start(t, upstream.Options{Dir: dir})
	first, err := upstream.SeedDemo(ctx, reg)
	if err != nil {
		t.Fatalf("SeedDemo: %v", err)
	}
	if len(first.Hello.Manifests) != 2 || len(first.Hello.Layers) != 3 { // two random layers and /hello
		t.Errorf("hello: %+v", first.Hello)
	}
	if len(first.Secret.Manifests) != 0 || len(first.Secret.Layers) != 2 {
		t.Errorf("secret: %+v", first.Secret)
	}
	if first.Hello.Repo != "demo/hello" || first.Secret.Repo != "private/secret" {
		t.Errorf("repos %q %q", first.Hello.Repo, first.Secret.Repo)
	}

	reg.ResetRequests()
	second, err := upstream.SeedDemo(ctx, reg)
	if err != nil {
		t.Fatalf("SeedDemo again: %v", err)
	}
	if !equalImages(first.Hello, second.Hello) || !equalImages(first.Secret, second.Secret) {
		t.Errorf("second SeedDemo differs:\n%+v\n%+v", first, second)
	}
	for _, r := range reg.Requests() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			t.Errorf("second SeedDemo pushed: %s %s", r.Method, r.Path)
		}
	}

	// A fresh registry gets the same demo digests.
	other := start(t, upstream.Options{})
	third, err := upstream.SeedDemo(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if third.Hello.Digest != first.Hello.Digest || third.Secret.Digest != first.Secret.Digest {
		t.Errorf("demo content is not deterministic")
	}
}

func equalImages(a, b upstream.Image) bool {
	return a.Ref == b.Ref && a.Digest == b.Digest &&
		strings.Join(a.Layers, ",") == strings.Join(b.Layers, ",") &&
		strings.Join(a.Manifests, ",") == strings.Join(b.Manifests, ",")
}

func TestPushBlob64MiB(t *testing.T) {
	ctx := t.Context()
	reg := start(t, upstream.Options{Dir: t.TempDir(), BasicAuth: &upstream.BasicAuth{User: "u", Password: "p"}})
	const size = 64 << 20
	dgst, err := upstream.PushBlob(ctx, reg, "bench/blob", size)
	if err != nil {
		t.Fatalf("PushBlob: %v", err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, reg.URL+"/v2/bench/blob/blobs/"+dgst, nil)
	req.SetBasicAuth("u", "p")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
		t.Fatalf("HEAD: %s, length %d", resp.Status, resp.ContentLength)
	}

	auth := crane.WithAuth(&authn.Basic{Username: "u", Password: "p"})
	l, err := crane.PullLayer(reg.Host+"/bench/blob@"+dgst, craneOpts(ctx, reg, auth)...)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != dgst {
		t.Errorf("read %d bytes, digest mismatch or wrong size", n)
	}

	again, err := upstream.PushBlob(ctx, reg, "bench/blob", size)
	if err != nil {
		t.Fatal(err)
	}
	if again == dgst {
		t.Errorf("two pushes gave the same blob")
	}
}

// captureHandler keeps every record it is given.
type captureHandler struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r)
	return nil
}
func (h captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captureHandler) WithGroup(string) slog.Handler      { return h }

func TestDistributionLogsGoToTheLoggerAtDebug(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	var recs []slog.Record
	reg := start(t, upstream.Options{Logger: slog.New(captureHandler{&mu, &recs})})
	quiet := start(t, upstream.Options{}) // no Logger: its logs are dropped

	// A manifest that does not exist makes distribution log an error.
	for _, r := range []*upstream.Registry{reg, quiet} {
		repo := "mine/missing"
		if r == quiet {
			repo = "theirs/missing"
		}
		resp, err := http.Get(r.URL + "/v2/" + repo + "/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %s", repo, resp.Status)
		}
	}
	if _, err := upstream.Seed(ctx, quiet, "theirs/img:latest", upstream.SeedOptions{}); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	var mine bool
	for _, r := range recs {
		if r.Level != slog.LevelDebug {
			t.Errorf("record at %s: %s", r.Level, r.Message)
		}
		r.Attrs(func(a slog.Attr) bool {
			v := a.Value.String()
			if strings.Contains(v, "theirs/") {
				t.Errorf("got the other registry's log: %s %s=%s", r.Message, a.Key, v)
			}
			if strings.Contains(v, "mine/missing") {
				mine = true
			}
			return true
		})
	}
	if !mine {
		t.Errorf("no log for the failed request among %d records", len(recs))
	}
}
