package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/postgres"
)

// hangingReceiver holds its first request open until the sender goes
// away (never answering it), and accepts every other one, counting the
// idempotency keys it accepted.
type hangingReceiver struct {
	mu       sync.Mutex
	hung     chan struct{} // closed when the first request arrived
	hangOnce sync.Once
	requests int
	accepted map[string]int
}

func (h *hangingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests++
	first := h.requests == 1
	h.mu.Unlock()
	if first {
		// Read the body first: only then does the server notice the
		// connection closing (and cancel the request's context).
		io.Copy(io.Discard, r.Body)
		h.hangOnce.Do(func() { close(h.hung) })
		select {
		case <-r.Context().Done(): // the replica was killed mid-delivery
		case <-time.After(2 * time.Minute):
		}
		return
	}
	h.mu.Lock()
	h.accepted[r.Header.Get("Tollgate-Idempotency-Key")]++
	h.mu.Unlock()
}

// TestReplicaKilledMidDeliveryLosesNoEvent runs two real tollgate
// replicas on one PostgreSQL. The first claims the deliveries and is
// killed (SIGKILL) while its first webhook request is in flight; the
// second sends every event once its lease has run out, under the same
// idempotency keys: the receiver gets each event, and none twice.
func TestReplicaKilledMidDeliveryLosesNoEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dsn := testenv.PostgresDSN(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tollgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	keys := filepath.Join(dir, "keys")
	if err := config.GenerateKeys(keys); err != nil {
		t.Fatal(err)
	}
	recv := &hangingReceiver{hung: make(chan struct{}), accepted: map[string]int{}}
	hook := httptest.NewServer(recv)
	t.Cleanup(hook.Close)

	// The events, written before any replica runs: ten rotations.
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ck, err := config.LoadKeys(config.KeysConfig{Dir: keys})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := tollgate.NewKeys(ck.Lookup, ck.Seal)
	if err != nil {
		t.Fatal(err)
	}
	svc := tollgate.NewService(st, tk)
	ctx := context.Background()
	a, tok, _, err := svc.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: hook.URL + "/hook",
		Events: []string{tollgate.EventTokenRotated}}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, _, err := svc.RotateToken(ctx, "operator", tok.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	replica := func(name string) *exec.Cmd {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		cfg := filepath.Join(dir, name+".yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`
listen: %s
public_url: http://%s
store: {driver: postgres, postgres: {dsn_file: %s}}
keys: {dir: %s}
notify: {interval: 200ms, lease: 3s, allow_private_webhooks: true}
`, addr, addr, filepath.Join(dir, "dsn"), keys)), 0o600)
		cmd := exec.Command(bin, "serve", "--config", cfg)
		cmd.Stderr = &testenv.Buffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn), 0o600)

	first := replica("first")
	select {
	case <-recv.hung:
	case <-time.After(60 * time.Second):
		t.Fatalf("the first replica sent nothing: %s", first.Stderr)
	}
	killed := time.Now()
	if err := first.Process.Kill(); err != nil { // SIGKILL: no drain, no recording
		t.Fatal(err)
	}
	first.Wait()
	second := replica("second")

	deadline := time.Now().Add(60 * time.Second)
	for {
		ds, err := svc.ListDeliveries(ctx, a.Name, 100)
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, d := range ds {
			if d.Status == tollgate.DeliveryDelivered {
				done++
			}
		}
		if done == len(ds) && len(ds) == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deliveries delivered a minute after the kill; second replica: %s", done, len(ds), second.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("every delivery sent %.1fs after the first replica was killed (lease 3s)", time.Since(killed).Seconds())
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.accepted) != 10 {
		t.Fatalf("receiver accepted %d events, want 10", len(recv.accepted))
	}
	for key, n := range recv.accepted {
		if n != 1 {
			t.Errorf("event %s accepted %d times", key, n)
		}
	}
	if recv.requests != 11 {
		t.Errorf("receiver saw %d requests, want 11 (the one cut by the kill, sent again)", recv.requests)
	}
}
