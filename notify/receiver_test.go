package notify_test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/notify"
)

// docSnippet returns the first code block of docs/webhooks.md in lang.
func docSnippet(t *testing.T, lang string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "webhooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/webhooks.md has no %s block", lang)
	}
	return string(m[1])
}

func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testenv.Required() {
			t.Fatalf("%s is required (TOLLGATE_TEST_REQUIRE_SERVICES=1) but not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDocumentedReceiverVerifiesSignaturesAndHandlesEachEventOnce runs
// the Python receiver of docs/webhooks.md, as printed there, against real
// deliveries: every signature verifies, a forged one is refused, and an
// event delivered twice (redeliver) is handled once.
func TestDocumentedReceiverVerifiesSignaturesAndHandlesEachEventOnce(t *testing.T) {
	python := needProgram(t, "python3")
	s, c := newService(t)
	ctx := t.Context()
	a, _, _, err := s.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	_, secret, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "http://" + addr + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "receiver.py")
	if err := os.WriteFile(script, []byte(docSnippet(t, "python")), 0o755); err != nil {
		t.Fatal(err)
	}
	out := &testenv.Buffer{}
	cmd := exec.Command(python, script, strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "TOLLGATE_WEBHOOK_SECRET="+secret.Reveal())
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(t, addr)

	tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: a.Name, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RotateToken(ctx, "operator", tok.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeToken(ctx, "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	// The deliverer signs with the real clock: the receiver refuses a
	// timestamp five minutes off.
	d, err := notify.New(notify.Options{Service: s, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	ds, err := s.ListDeliveries(ctx, a.Name, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want 3", len(ds))
	}
	for _, del := range ds {
		if del.Status != tollgate.DeliveryDelivered || del.LastCode != http.StatusNoContent {
			t.Fatalf("delivery %d (%s): %s %d %s; receiver said %q", del.ID, del.Event.Type, del.Status, del.LastCode, del.LastError, out.Lines())
		}
	}
	if err := s.Redeliver(ctx, "operator", a.Name, ds[0].ID); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Second)
	if _, err := d.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// A forged request: right shape, wrong key.
	body := []byte(`{"version":1,"id":"evt_forged","type":"token.revoked"}`)
	req, _ := http.NewRequest("POST", "http://"+addr+"/hook", bytes.NewReader(body))
	req.Header.Set("Tollgate-Idempotency-Key", "evt_forged")
	req.Header.Set("Tollgate-Signature", notify.Sign("tgw_not_the_secret", time.Now().Unix(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged request: %d, want 401", resp.StatusCode)
	}
	got := out.Lines()
	want := []string{tollgate.EventTokenCreated, tollgate.EventTokenRotated, tollgate.EventTokenRevoked}
	if len(got) != len(want) {
		t.Fatalf("receiver handled %q, want %v once each", got, want)
	}
	for i, line := range got {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "event" || f[2] != want[i] || f[3] != "ci" {
			t.Errorf("receiver line %q, want event KEY %s ci", line, want[i])
		}
	}
}
