package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/dev/upstream"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/usage"
)

// TestPullInsightEndToEnd pulls an image with crane and downloads an apk
// index through `tollgate dev`, then reads the counts back through the
// CLI (table, json, csv) and the API.
func TestPullInsightEndToEnd(t *testing.T) {
	d := startDev(t, t.TempDir(), &testenv.Buffer{})
	env := d.Env
	tok := env["TOLLGATE_DEMO_TOKEN"]
	host := strings.TrimPrefix(env["TOLLGATE_URL"], "http://")
	opts := []crane.Option{crane.Insecure, crane.WithAuth(&authn.Basic{Username: "tollgate", Password: tok})}

	p, _ := v1.ParsePlatform("linux/amd64")
	img, err := crane.Pull(host+"/demo/hello:latest", append(opts, crane.WithPlatform(p))...)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	var blobBytes int64
	for _, l := range layers {
		rc, _ := l.Compressed()
		n, err := io.Copy(io.Discard, rc)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		blobBytes += n
	}
	cfg, _ := img.RawConfigFile()
	blobBytes += int64(len(cfg))

	req, _ := http.NewRequest("GET", env["TOLLGATE_APK_URL"]+"/"+env["TOLLGATE_APK_ARCH"]+"/APKINDEX.tar.gz", nil)
	req.SetBasicAuth("tollgate", tok)
	req.Header.Set("User-Agent", "apk-tools/2.14.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	apkIndex, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("APKINDEX: %d", resp.StatusCode)
	}
	if err := d.Main.usage.rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	c := &cli{t: t, env: map[string]string{"TOLLGATE_URL": env["TOLLGATE_URL"], "TOLLGATE_ADMIN_KEY": env["TOLLGATE_ADMIN_KEY"]}}
	var u api.Usage
	c.json(&u, "usage", "--account", "demo", "--since", "7d")
	repos := map[string]api.UsageRow{}
	for _, r := range u.Repositories {
		repos[r.Repository] = r
	}
	img0 := repos["demo/hello"]
	if img0.Kind != "image" || img0.Pulls != 1 || img0.Manifests != 2 || img0.Bytes < blobBytes {
		t.Errorf("demo/hello = %+v, want 1 pull, 2 manifest fetches (index, amd64), at least %d bytes", img0, blobBytes)
	}
	if pkg := repos["apk/os"]; pkg.Kind != "package" || pkg.Pulls != 1 || pkg.Bytes != int64(len(apkIndex)) {
		t.Errorf("apk/os = %+v, want 1 download of %d bytes", pkg, len(apkIndex))
	}
	if last := u.Days[len(u.Days)-1]; last.Pulls != 2 || last.Addresses != 2 { // one address per repository aggregate
		t.Errorf("today = %+v", last)
	}
	if len(u.Addresses) != 1 || u.Addresses[0].Address != "127.0.0.1" || u.Addresses[0].Pulls != 2 {
		t.Errorf("addresses = %+v", u.Addresses)
	}
	var agents []string
	for _, a := range u.Agents {
		agents = append(agents, a.UserAgent)
	}
	if !strings.Contains(strings.Join(agents, "|"), "apk-tools/2.14.4") || !strings.Contains(strings.Join(agents, "|"), "go-containerregistry") {
		t.Errorf("agents = %v", agents)
	}

	// CSV carries the same rows as JSON.
	got, err := usage.ReadCSV(strings.NewReader(c.ok("usage", "--account", "demo", "--since", "7d", "-o", "csv")))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := api.ToUsageDays(u.Rows)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("csv rows = %+v\nwant %+v", got, want)
	}
	table := c.ok("usage", "--account", "demo")
	for _, s := range []string{"demo/hello", "apk/os", "127.0.0.1", "apk-tools/2.14.4"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
	if strings.Contains(table+c.ok("usage", "--account", "demo", "-o", "json"), tok) {
		t.Fatal("the token's secret is in the usage output")
	}
	var ov api.UsageOverview
	c.json(&ov, "usage", "--overview")
	if len(ov.Top) != 1 || ov.Top[0].Account != "demo" || ov.Top[0].Pulls != 2 {
		t.Errorf("overview = %+v", ov)
	}
	if errs := c.fail("usage", "--account", "demo", "--since", "soon"); !strings.Contains(errs, "since") {
		t.Errorf("bad --since: %s", errs)
	}
}

// TestThreeReplicasShareOneAggregate: three replicas on one PostgreSQL
// each serve pulls of one token and write at the same moment; the store
// holds one aggregate with every pull, and the address counted once.
func TestThreeReplicasShareOneAggregate(t *testing.T) {
	ms := startReplicas(t, 3)
	ctx := context.Background()
	cl, tok := acmeToken(t, ms[0])
	const perReplica = 4
	for _, m := range ms {
		jwt := jwtFrom(t, m, tok.Secret, "repository:demo/hello:pull")
		for range perReplica {
			req, _ := http.NewRequest("GET", m.URL+"/v2/demo/hello/manifests/latest", nil)
			req.Header.Set("Authorization", "Bearer "+jwt)
			req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("manifest: %v %v", resp, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	// A replica hands an event over when its handler ends, which may be
	// after the client has read the whole answer: wait until each has
	// taken its events, or the flushes below may run before the last one
	// arrives (this test failed about once in twelve runs under load).
	for i, m := range ms {
		deadline := time.Now().Add(10 * time.Second)
		for m.usage.rec.Stats().Events < perReplica {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d took %d pull events in 10s, want %d", i, m.usage.rec.Stats().Events, perReplica)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ms))
	for _, m := range ms {
		wg.Go(func() { errs <- m.usage.rec.Flush(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	u, err := cl.Usage(ctx, "acme", tok.ID, "1d")
	if err != nil {
		t.Fatal(err)
	}
	// Within 30 s, a token's repeated manifest GETs from one address are
	// one pull per replica (each replica judges its own requests).
	if len(u.Rows) != 1 || u.Rows[0].Manifests != 3*perReplica || u.Rows[0].Pulls != 3 || u.Rows[0].Addresses != 1 {
		t.Errorf("rows = %+v, want one aggregate: %d manifest fetches, 3 pulls, 1 address", u.Rows, 3*perReplica)
	}

}

// TestRawStreamFromServe: with usage.stream set, every pull is one JSON
// line (format v1) in the file, without the token's secret.
func TestRawStreamFromServe(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := config.GenerateKeys(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	up, err := upstream.Start(ctx, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	if _, err := upstream.SeedDemo(ctx, up); err != nil {
		t.Fatal(err)
	}
	stream := filepath.Join(dir, "pulls.jsonl")
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.PublicURL = "https://registry.example.com"
	cfg.Store.SQLite.Path = filepath.Join(dir, "t.db")
	cfg.Keys.Dir = filepath.Join(dir, "keys")
	cfg.Upstream.URL = up.URL
	cfg.Usage.Stream = stream
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	_, tok := acmeToken(t, m)
	const pulls = 3
	jwt := jwtFrom(t, m, tok.Secret, "repository:demo/hello:pull")
	for range pulls {
		req, _ := http.NewRequest("GET", m.URL+"/v2/demo/hello/manifests/latest", nil)
		req.Header.Set("Authorization", "Bearer "+jwt)
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("manifest: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	m.stopUsage() // writes what is buffered and closes the file
	f, err := os.Open(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var l usage.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("stream line %q: %v", sc.Text(), err)
		}
		if l.V != 1 || l.Kind != string(tollgate.PullManifest) || l.Token != tok.ID || l.Account != "acme" || l.Digest == "" || l.Status != 200 || !l.Complete {
			t.Errorf("stream line = %+v", l)
		}
		if strings.Contains(sc.Text(), tok.Secret) {
			t.Fatal("the token's secret is in the raw stream")
		}
		n++
	}
	if n != pulls {
		t.Errorf("stream has %d lines, want %d", n, pulls)
	}
	if fi, _ := os.Stat(stream); fi.Mode().Perm() != 0o600 {
		t.Errorf("stream file mode %v, want 0600", fi.Mode().Perm())
	}
}

// acmeToken creates account acme, entitled to demo/**, and a token of it
// through m's API; it returns the operator's client and the token.
func acmeToken(t *testing.T, m *Main) (*api.Client, *api.Token) {
	t.Helper()
	ctx := context.Background()
	cl := &api.Client{BaseURL: m.URL, Key: m.AdminKey.Reveal()}
	if _, _, err := cl.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetSubscription(ctx, "acme", []string{"demo/**"}, nil); err != nil {
		t.Fatal(err)
	}
	tok, err := cl.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	return cl, tok
}
