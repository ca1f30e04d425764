package notify_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/notify"
	"github.com/tollgate/tollgate/store/sqlite"
)

func newService(t *testing.T) (*tollgate.Service, *testenv.Clock) {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, b := make([]byte, tollgate.KeySize), make([]byte, tollgate.KeySize)
	rand.Read(a)
	rand.Read(b)
	keys, err := tollgate.NewKeys(a, b)
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.NewClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	s := tollgate.NewService(db, keys)
	s.Now = c.Now
	return s, c
}

// receiver is a webhook endpoint that checks every signature and counts
// each idempotency key it accepted.
type receiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	fail   int // answer 503 to this many requests first
	seen   map[string]int
	types  []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	sig := req.Header.Get("Tollgate-Signature")
	ts, v1, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",v1=")
	m := hmac.New(sha256.New, []byte(r.secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	if !hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(v1)) {
		r.t.Errorf("bad signature %q", sig)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p tollgate.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.Version != tollgate.PayloadVersion || p.ID != req.Header.Get("Tollgate-Idempotency-Key") {
		r.t.Errorf("payload %s (%v) does not match its idempotency key", body, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.seen[p.ID]++
	r.types = append(r.types, p.Type)
}

func setup(t *testing.T, fail int) (*tollgate.Service, *testenv.Clock, *receiver, *tollgate.Token) {
	t.Helper()
	s, c := newService(t)
	ctx := t.Context()
	a, tok, _, err := s.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, fail: fail, seen: map[string]int{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	_, secret, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: srv.URL + "/hook?token=chat-secret"})
	if err != nil {
		t.Fatal(err)
	}
	r.secret = secret.Reveal()
	return s, c, r, tok
}

func deliverer(t *testing.T, s *tollgate.Service, c *testenv.Clock, smtp *notify.SMTP) *notify.Deliverer {
	t.Helper()
	d, err := notify.New(notify.Options{Service: s, Now: c.Now, AllowPrivate: true, SMTP: smtp, ConsoleURL: "https://registry.example.com/console"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sweepExpiry writes the expiry events that are due, as the server's
// background job does on one replica (the deliverer sends them).
func sweepExpiry(t *testing.T, s *tollgate.Service) {
	t.Helper()
	if _, err := s.SweepExpiry(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookDeliveredOnceAcrossReplicas(t *testing.T) {
	s, c, r, tok := setup(t, 0)
	for range 10 {
		if _, _, err := s.RotateToken(t.Context(), "operator", tok.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 3 { // three replicas, each ticking twice
		d := deliverer(t, s, c, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 {
				if _, err := d.Tick(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if len(r.seen) != 10 {
		t.Fatalf("received %d events, want 10", len(r.seen))
	}
	for id, n := range r.seen {
		if n != 1 {
			t.Errorf("event %s received %d times", id, n)
		}
	}
}

func TestFailingReceiverGetsEveryEventOnceAfterRecovering(t *testing.T) {
	s, c, r, tok := setup(t, 4)
	for range 2 {
		if _, _, err := s.RotateToken(t.Context(), "operator", tok.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	d := deliverer(t, s, c, nil)
	for range 6 {
		if _, err := d.Tick(t.Context()); err != nil {
			t.Fatal(err)
		}
		c.Add(time.Hour) // past any back-off
	}
	// token.rotated and token.previous_secret_expired, twice.
	if len(r.seen) != 4 {
		t.Fatalf("received %v (%d events), want 4", r.types, len(r.seen))
	}
	for id, n := range r.seen {
		if n != 1 {
			t.Errorf("event %s accepted %d times", id, n)
		}
	}
	ds, err := s.ListDeliveries(t.Context(), "acme", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, del := range ds {
		if del.Status != tollgate.DeliveryDelivered || del.LastCode != 200 {
			t.Errorf("delivery %d: %s %d after %d attempts", del.ID, del.Status, del.LastCode, del.Attempts)
		}
		if strings.Contains(del.LastError, "chat-secret") {
			t.Errorf("delivery log shows the webhook URL's query: %q", del.LastError)
		}
	}
}

func TestReceiverDownForADayIsGivenUp(t *testing.T) {
	s, c, r, tok := setup(t, 1<<30)
	if _, _, err := s.RotateToken(t.Context(), "operator", tok.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	d := deliverer(t, s, c, nil)
	for range 40 {
		if _, err := d.Tick(t.Context()); err != nil {
			t.Fatal(err)
		}
		c.Add(time.Hour)
	}
	ds, _ := s.ListDeliveries(t.Context(), "acme", 10)
	for _, del := range ds {
		if del.Event.Type == tollgate.EventTokenRotated && (del.Status != tollgate.DeliveryFailed || del.Attempts > 30) {
			t.Fatalf("delivery after a day of failures: %s, %d attempts", del.Status, del.Attempts)
		}
	}
	_ = r
}

func TestWebhookToPrivateAddressRefusedByDefault(t *testing.T) {
	s, c, r, tok := setup(t, 0)
	if _, _, err := s.RotateToken(t.Context(), "operator", tok.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	d, err := notify.New(notify.Options{Service: s, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(r.seen) != 0 {
		t.Fatal("the deliverer reached a loopback webhook")
	}
	ds, _ := s.ListDeliveries(t.Context(), "acme", 10)
	if len(ds) == 0 || !strings.Contains(ds[0].LastError, "not public") {
		t.Fatalf("deliveries: %+v", ds)
	}
}

// smtpServer is a minimal SMTP server (no TLS) that records each message.
type smtpServer struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []smtpMsg
}

type smtpMsg struct {
	from string
	to   []string
	data string
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn)
		}
	}()
	return s
}

func (s *smtpServer) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	say := func(line string) { io.WriteString(conn, line+"\r\n") }
	say("220 test ESMTP")
	var m smtpMsg
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-test")
			say("250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			m = smtpMsg{from: strings.TrimSpace(line[10:])}
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.to = append(m.to, strings.Trim(strings.TrimSpace(line[8:]), "<>"))
			say("250 ok")
		case cmd == "DATA":
			say("354 go on")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			m.data = b.String()
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func TestExpiryEmailReachesAdminsWithLinkToTheCard(t *testing.T) {
	s, c := newService(t)
	ctx := t.Context()
	a, _, _, err := s.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ email, role string }{{"boss@acme.example", "admin"}, {"dev@acme.example", "viewer"}} {
		if err := s.Store.Update(ctx, func(tx tollgate.Tx) error {
			return tx.InsertUser(ctx, &tollgate.User{ID: tollgate.NewID("usr_"), AccountID: a.ID, Email: u.email, Role: tollgate.Role(u.role), CreatedAt: c.Now(), UpdatedAt: c.Now()})
		}); err != nil {
			t.Fatal(err)
		}
	}
	tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: a.Name, Name: "ci-pull", Expiry: tollgate.Expiry{At: c.Now().Add(3 * 24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startSMTP(t)
	d := deliverer(t, s, c, &notify.SMTP{Addr: srv.ln.Addr().String(), From: "tollgate@registry.example.com", Insecure: true})
	sweepExpiry(t, s)
	if _, err := d.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.msgs) != 1 {
		t.Fatalf("%d messages, want 1 (to the admin only)", len(srv.msgs))
	}
	m := srv.msgs[0]
	if len(m.to) != 1 || m.to[0] != "boss@acme.example" {
		t.Errorf("recipients %v", m.to)
	}
	for _, want := range []string{"Subject: Registry token ci-pull expires on ", "https://registry.example.com/console/tokens#" + tok.ID} {
		if !strings.Contains(m.data, want) {
			t.Errorf("message lacks %q:\n%s", want, m.data)
		}
	}
}

func TestSignatureVerifiesWithTheDocumentedRecipe(t *testing.T) {
	body := []byte(`{"version":1}`)
	got := notify.Sign("tgw_secret", 1767225600, body)
	m := hmac.New(sha256.New, []byte("tgw_secret"))
	m.Write([]byte("1767225600." + string(body)))
	if want := "t=1767225600,v1=" + hex.EncodeToString(m.Sum(nil)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

// TestRefusalFloodIsOneEventPerTokenAnHour: a token refused a thousand
// times in an hour (a CI job retrying a revoked secret) is one
// token.refused event, and the edge's calls never wait on the store.
func TestRefusalFloodIsOneEventPerTokenAnHour(t *testing.T) {
	s, c, r, tok := setup(t, 0)
	ref := notify.NewRefusals(s, nil, c.Now)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); ref.Run(ctx) }()
	x := tollgate.TokenRefusal{TokenID: tok.ID, Reason: "revoked", Address: "203.0.113.9", UserAgent: "docker/27"}
	for range 1000 {
		ref.Refused(x)
	}
	c.Add(time.Hour)
	ref.Refused(x)
	d := deliverer(t, s, c, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := d.Tick(t.Context()); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		n := len(r.seen)
		r.mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if len(r.types) != 2 || r.types[0] != tollgate.EventTokenRefused || r.types[1] != tollgate.EventTokenRefused {
		t.Fatalf("receiver got %v, want two token.refused (one per hour)", r.types)
	}
}

// TestSlackFormatIsAPlainTextFieldSignedLikeJSON: a webhook in the slack
// format gets {"text": ...} with the event's sentence and the card's
// link — what a chat channel's incoming webhook shows as is — still
// signed and carrying the idempotency key.
func TestSlackFormatIsAPlainTextFieldSignedLikeJSON(t *testing.T) {
	s, c := newService(t)
	ctx := t.Context()
	a, tok, _, err := s.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []map[string]any
	var secret string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, v1, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("Tollgate-Signature"), "t="), ",v1=")
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(ts + "."))
		m.Write(body)
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil || !hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(v1)) ||
			!strings.HasPrefix(r.Header.Get("Tollgate-Idempotency-Key"), "evt_") {
			t.Errorf("slack delivery %s: %v, signature %q", body, err, r.Header.Get("Tollgate-Signature"))
		}
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	_, sec, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: srv.URL, Format: tollgate.WebhookSlack})
	if err != nil {
		t.Fatal(err)
	}
	secret = sec.Reveal()
	if _, err := s.PauseToken(ctx, "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := deliverer(t, s, c, nil).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || len(got[0]) != 1 {
		t.Fatalf("slack bodies = %v, want one with a text field only", got)
	}
	text, _ := got[0]["text"].(string)
	if text != "Registry token default was paused\nhttps://registry.example.com/console/tokens#"+tok.ID {
		t.Fatalf("text = %q", text)
	}
}
