package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// hookReceiver is a webhook endpoint that checks each signature with the
// secret the CLI printed and counts the idempotency keys it was sent.
type hookReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	secret string
	keys   map[string]int
	types  []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	ts, v1, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("Tollgate-Signature"), "t="), ",v1=")
	m := hmac.New(sha256.New, []byte(h.secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	if !hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(v1)) {
		h.t.Errorf("signature does not verify with the printed secret")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p tollgate.Payload
	json.Unmarshal(body, &p)
	h.keys[r.Header.Get("Tollgate-Idempotency-Key")]++
	h.types = append(h.types, p.Type)
}

func devCLI(t *testing.T) (*cli, *devServer) {
	t.Helper()
	data := t.TempDir()
	d := startDev(t, data, &testenv.Buffer{})
	raw, err := os.ReadFile(filepath.Join(data, "dev.env"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return &cli{t: t, env: env}, d
}

func TestWebhookSetUpTestAndRedeliverThroughCLI(t *testing.T) {
	c, d := devCLI(t)
	h := &hookReceiver{t: t, keys: map[string]int{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// tollgate dev's deliverer sends to loopback receivers every 2 s.
	deliver := func() { t.Helper(); waitDelivered(t, d.Main.Service, "demo") }

	out := c.ok("webhook", "add", srv.URL+"/hook?token=chat-secret", "--account", "demo", "--events", "token.rotated,token.revoked")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	h.secret = lines[len(lines)-1]
	if !strings.HasPrefix(h.secret, tollgate.WebhookSecretPrefix) || !strings.Contains(out, "token.rotated,token.revoked") || strings.Contains(out, "chat-secret") {
		t.Fatalf("webhook add printed:\n%s", out)
	}
	id := strings.Fields(lines[1])[0]
	if list := c.ok("webhook", "list", "--account", "demo"); !strings.Contains(list, id) || !strings.Contains(list, "operator") {
		t.Fatalf("webhook list:\n%s", list)
	}

	// test: the printed follow-up command works as printed.
	out = c.ok("webhook", "test", id, "--account", "demo")
	out = strings.TrimSpace(out)
	follow := strings.TrimSpace(out[strings.LastIndex(out, "\n"):])
	if !strings.HasPrefix(follow, "tollgate webhook deliveries ") {
		t.Fatalf("webhook test printed:\n%s", out)
	}
	deliver()
	log := c.ok(strings.Fields(follow)[1:]...)
	if !strings.Contains(log, "webhook.test") || !strings.Contains(log, "delivered") || !strings.Contains(log, "200") {
		t.Fatalf("delivery log after the test:\n%s", log)
	}

	// A rotation is an event the webhook wants; redeliver sends it again
	// with the same idempotency key.
	var tok struct{ ID string }
	c.json(&tok, "token", "create", "--account", "demo", "--name", "ci")
	c.ok("token", "rotate", tok.ID, "--grace", "1h")
	if show := c.ok("token", "show", tok.ID); !strings.Contains(show, "Previous secret:") || !strings.Contains(show, "valid until ") {
		t.Fatalf("token show after a rotation:\n%s", show)
	}
	deliver()
	var dl struct {
		Deliveries []struct {
			ID             int64
			Event, Status  string
			IdempotencyKey string `json:"idempotency_key"`
			LastCode       int    `json:"last_code"`
		}
	}
	c.json(&dl, "webhook", "deliveries", "--account", "demo")
	if len(dl.Deliveries) != 2 || dl.Deliveries[0].Event != tollgate.EventTokenRotated || dl.Deliveries[0].Status != "delivered" || dl.Deliveries[0].LastCode != 200 {
		t.Fatalf("deliveries = %+v (token.created is not subscribed)", dl.Deliveries)
	}
	rotated := dl.Deliveries[0]
	c.ok("webhook", "redeliver", strconv.FormatInt(rotated.ID, 10), "--account", "demo")
	deliver()
	h.mu.Lock()
	if h.keys[rotated.IdempotencyKey] != 2 || strings.Join(h.types, " ") != "webhook.test token.rotated token.rotated" {
		t.Errorf("receiver got %v (%v), want the rotation twice under one key", h.types, h.keys)
	}
	h.mu.Unlock()

	// The account's own key sees the operator's webhook but cannot delete it.
	key := strings.TrimSpace(c.ok("account", "create-key", "demo"))
	customer := &cli{t: t, env: map[string]string{"TOLLGATE_URL": c.env["TOLLGATE_URL"], "TOLLGATE_API_KEY": key}}
	if errs := customer.fail("webhook", "delete", id, "--account", "demo"); !strings.Contains(errs, "managed by the registry's operator") {
		t.Fatalf("customer delete: %s", errs)
	}
	own := customer.ok("webhook", "add", "https://hooks.example.com/acme", "--account", "demo", "--format", "slack")
	ownID := strings.Fields(strings.Split(own, "\n")[1])[0]
	if !strings.Contains(own, "customer") {
		t.Fatalf("customer add:\n%s", own)
	}
	customer.ok("webhook", "delete", ownID, "--account", "demo")
	if errs := customer.fail("webhook", "list", "--account", "acme-other"); !strings.Contains(errs, "not found") {
		t.Fatalf("another account's webhooks: %s", errs)
	}
	c.ok("webhook", "delete", id, "--account", "demo")
	if errs := c.fail("webhook", "add", "ftp://x", "--account", "demo"); !strings.Contains(errs, "url: must be an absolute http or https URL") {
		t.Fatalf("bad URL: %s", errs)
	}
	var audit struct{ Events []struct{ Action string } }
	c.json(&audit, "audit", "list", "--account", "demo")
	seen := map[string]int{}
	for _, e := range audit.Events {
		seen[e.Action]++
	}
	for _, a := range []string{tollgate.ActionWebhookCreated, tollgate.ActionWebhookTested, tollgate.ActionRedelivered, tollgate.ActionWebhookDeleted} {
		if seen[a] == 0 {
			t.Errorf("audit lacks %s: %v", a, seen)
		}
	}
}

// waitDelivered waits until none of the account's deliveries is pending
// with an attempt due (the deliverer of a running server sends them).
func waitDelivered(t *testing.T, svc *tollgate.Service, account string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ds, err := svc.ListDeliveries(context.Background(), account, 200)
		if err != nil {
			t.Fatal(err)
		}
		due := 0
		for _, d := range ds {
			if d.Status == tollgate.DeliveryPending && !d.NextAttemptAt.After(time.Now()) {
				due++
			}
		}
		if due == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still due after 20 s", due)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
