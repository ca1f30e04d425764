package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/dev/upstream"
)

// eventLog is an EventSink that keeps every event.
type eventLog struct {
	mu  sync.Mutex
	evs []tollgate.PullEvent
}

func (l *eventLog) Pull(ev tollgate.PullEvent) { l.mu.Lock(); l.evs = append(l.evs, ev); l.mu.Unlock() }

func (l *eventLog) all() []tollgate.PullEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tollgate.PullEvent(nil), l.evs...)
}

// wait returns the events once there are at least n (the event of an
// answer is handed over after its last byte, so the client may be faster).
func (l *eventLog) wait(t *testing.T, n int) []tollgate.PullEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(l.all()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return l.all()
}

func withEvents(sink EventSink) envOption {
	return func(_ *env, o *Options) {
		if o != nil {
			o.Events = sink
		}
	}
}

func TestPullEventsFromCraneCarryDigestAndBytes(t *testing.T) {
	log := &eventLog{}
	e := newEnv(t, withEvents(log))
	tok, secret := e.token(tollgate.TokenCreate{})
	p, _ := v1.ParsePlatform("linux/arm64")
	img, err := crane.Pull(e.ref("demo/hello:latest"), append(craneOpts(secret), crane.WithPlatform(p), crane.WithUserAgent("insight-test"))...)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	var want int64
	for _, l := range layers {
		rc, _ := l.Compressed()
		n, err := io.Copy(io.Discard, rc)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		want += n
	}
	cfg, _ := img.RawConfigFile()
	want += int64(len(cfg))
	// HEAD and tag lists are not pulls.
	crane.Head(e.ref("demo/other:v1"), craneOpts(secret)...)
	crane.ListTags(e.ref("demo/hello"), craneOpts(secret)...)

	evs := log.wait(t, 2+len(layers)+1)
	var manifests []tollgate.PullEvent
	var blobBytes int64
	for _, ev := range evs {
		if ev.TokenID != tok.ID || ev.AccountID != tok.AccountID || ev.Account != "acme" || ev.Repository != "demo/hello" || ev.Status != 200 || !ev.Complete {
			t.Errorf("event = %+v", ev)
		}
		if !strings.Contains(ev.UserAgent, "insight-test") || ev.ClientIP != "127.0.0.1" {
			t.Errorf("client of event = %q %q", ev.UserAgent, ev.ClientIP)
		}
		switch ev.Kind {
		case tollgate.PullManifest:
			manifests = append(manifests, ev)
		case tollgate.PullBlob:
			blobBytes += ev.Bytes
		}
	}
	if len(manifests) != 2 || manifests[0].Reference != "latest" || manifests[0].Digest != e.hello.Digest ||
		manifests[1].Digest != e.hello.Manifests[1] || manifests[1].Reference != e.hello.Manifests[1] || manifests[0].Bytes == 0 {
		t.Errorf("manifest events = %+v\nwant the index by tag (%s), then the arm64 manifest (%s)", manifests, e.hello.Digest, e.hello.Manifests[1])
	}
	// The platform of the manifest fetched after the index: what the
	// index said of it.
	if len(manifests) == 2 && (manifests[1].Platform != "linux/arm64" || manifests[0].Platform != "") {
		t.Errorf("platforms = %q then %q, want \"\" (the index) then linux/arm64", manifests[0].Platform, manifests[1].Platform)
	}
	if blobBytes != want {
		t.Errorf("blob bytes in events = %d, want %d (layers and config as read)", blobBytes, want)
	}
}

// TestAbortedBlobCountsOnlyBytesSent: a client that hangs up mid-layer
// is charged with what was written, not with the layer's size.
func TestAbortedBlobCountsOnlyBytesSent(t *testing.T) {
	log := &eventLog{}
	e := newEnv(t, withEvents(log))
	big, err := upstream.Seed(context.Background(), e.up, "demo/big:latest", upstream.SeedOptions{Layers: 1, LayerSize: 12 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, secret := e.token(tollgate.TokenCreate{})
	jwt := e.bearer(secret, "repository:demo/big:pull")
	conn, err := net.Dial("tcp", e.host)
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetReadBuffer(64 << 10) // so the kernel cannot take the whole layer
	io.WriteString(conn, "GET /v2/demo/big/blobs/"+big.Layers[0]+" HTTP/1.1\r\nHost: "+e.host+"\r\nAuthorization: Bearer "+jwt+"\r\n\r\n")
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
	evs := log.wait(t, 1)
	if len(evs) != 1 {
		t.Fatalf("events = %+v", evs)
	}
	ev := evs[0]
	if ev.Kind != tollgate.PullBlob || ev.Complete || ev.Bytes >= 12<<20 || ev.Bytes < 64<<10-1024 {
		t.Errorf("aborted blob event: kind %s, complete %v, %d bytes; want incomplete, fewer than 12 MiB", ev.Kind, ev.Complete, ev.Bytes)
	}
}

func TestPackageEventsCountFilesAndBytes(t *testing.T) {
	log := &eventLog{}
	e := newPkgEnv(t)
	e.edge.packages.f.events = log
	_, body := e.get("GET", "/apk/os/x86_64/APKINDEX.tar.gz", e.good, "User-Agent", "apk-tools/2.14")
	e.get("HEAD", inRelease, e.good)
	e.get("GET", "/apt/restricted/dists/stable/InRelease", e.good)
	evs := log.wait(t, 1)
	time.Sleep(20 * time.Millisecond)
	evs = log.all()
	if len(evs) != 1 {
		t.Fatalf("events = %+v, want one (HEAD and refusals are not downloads)", evs)
	}
	ev := evs[0]
	if ev.Kind != tollgate.PullPackage || ev.Repository != "apk/os" || ev.Path != "/x86_64/APKINDEX.tar.gz" || ev.Bytes != int64(len(body)) ||
		!ev.Complete || ev.TokenID != e.goodID || ev.UserAgent != "apk-tools/2.14" {
		t.Errorf("event = %+v (body %d bytes)", ev, len(body))
	}
}

func TestEventsHoldNoSecret(t *testing.T) {
	log := &eventLog{}
	e := newEnv(t, withEvents(log))
	_, secret := e.token(tollgate.TokenCreate{})
	if _, err := crane.Pull(e.ref("demo/other:v1"), craneOpts(secret)...); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/v2/demo/other/manifests/v1", nil)
	req.SetBasicAuth("tollgate", secret) // Basic straight to /v2/
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ev := range log.wait(t, 2) {
		if s := strings.Join([]string{ev.TokenID, ev.Account, ev.Repository, ev.Reference, ev.Digest, ev.Path, ev.UserAgent, ev.ClientIP}, " "); strings.Contains(s, secret) || strings.Contains(s, secret[len(secret)-12:]) {
			t.Fatalf("event holds the secret: %+v", ev)
		}
	}
}

// An index pulled again is not read again while its platforms are fresh
// (kubelet pulls the same index on every pod start), and is read again
// after platformRelearn, which keeps its platforms from expiring while it
// is in use.
func TestPlatformsReadAnIndexOncePerRelearn(t *testing.T) {
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	p := newPlatforms(func() time.Time { return now })
	index := func(arch string) []byte {
		return []byte(`{"manifests":[{"digest":"sha256:aaaa","platform":{"os":"linux","architecture":"` + arch + `"}}]}`)
	}
	p.learn("demo/hello", "sha256:1111", index("amd64"))
	if got := p.get("demo/hello", "sha256:aaaa"); got != "linux/amd64" {
		t.Fatalf("platform %q after the first pull", got)
	}
	// The same digest names the same bytes; a different body here shows
	// whether it was read again.
	now = now.Add(platformRelearn / 2)
	p.learn("demo/hello", "sha256:1111", index("arm64"))
	if got := p.get("demo/hello", "sha256:aaaa"); got != "linux/amd64" {
		t.Fatalf("platform %q: the index was read again within platformRelearn", got)
	}
	if got := p.get("demo/hello", "sha256:1111"); got != "" {
		t.Fatalf("the index itself has platform %q", got)
	}
	now = now.Add(platformRelearn)
	p.learn("demo/hello", "sha256:1111", index("arm64"))
	if got := p.get("demo/hello", "sha256:aaaa"); got != "linux/arm64" {
		t.Fatalf("platform %q: the index was not read again after platformRelearn", got)
	}
	// Without a digest (an upstream that sends none) it is always read.
	p.learn("demo/other", "", index("s390x"))
	p.learn("demo/other", "", index("ppc64le"))
	if got := p.get("demo/other", "sha256:aaaa"); got != "linux/ppc64le" {
		t.Fatalf("platform %q for an index without digest", got)
	}
}
