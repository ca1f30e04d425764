package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// signInDemo sets the demo admin's password through the link `tollgate
// dev` printed and signs in: the tokens page is open.
func signInDemo(p *page, d *devServer) {
	p.t.Helper()
	const pw = "a long demo passphrase"
	p.do("set the password", chromedp.Navigate(d.Env["TOLLGATE_CONSOLE_SET_PASSWORD_URL"]),
		chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), pw),
		chromedp.SendKeys(chromedp.CSS(`input[name=confirm]`), pw),
		chromedp.Click(chromedp.ID("set-password")),
		chromedp.WaitVisible(chromedp.ID("sign-in")))
	p.do("sign in",
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), demoConsoleEmail),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), pw),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("token-count")))
}

// flakyReceiver answers 503 to the first request of each event type in
// fail, 200 otherwise, and counts the idempotency keys it accepted.
type flakyReceiver struct {
	mu     sync.Mutex
	fail   map[string]bool
	failed map[string]bool
	got    map[string]int
}

func (f *flakyReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	typ := r.Header.Get("Tollgate-Event")
	if f.fail[typ] && !f.failed[typ] {
		f.failed[typ] = true
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	f.got[r.Header.Get("Tollgate-Idempotency-Key")]++
}

// TestBrowserRotationAndWebhooks: in Chromium against `tollgate dev`, an
// admin sees the banner of a token expiring soon, rotates it with a
// custom grace (the new secret shown once), and the card then tells the
// two secrets' last uses apart while both pull; then sets up a webhook
// (secret once), tests it, watches a failed delivery in the log and
// redelivers it. With TOLLGATE_SCREENSHOTS=DIR: rotate.png, rotated.png,
// rotation-card.png, webhooks.png, webhooks-phone.png.
func TestBrowserRotationAndWebhooks(t *testing.T) {
	p := newPage(t)
	d := startDev(t, t.TempDir(), &testenv.Buffer{})
	svc := d.Main.Service
	ctx := context.Background()
	host := strings.TrimPrefix(d.Env["TOLLGATE_URL"], "http://")
	tok, old, err := svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "demo", Name: "ci",
		Description: "nightly builds", Expiry: tollgate.Expiry{At: time.Now().Add(5*24*time.Hour + time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	signInDemo(p, d)

	// The banner names the token expiring soon and leads to its card.
	if b := p.text("#expiry-banner"); !strings.Contains(b, "1 token expires soon") || !strings.Contains(b, "ci (in 5 days)") {
		t.Fatalf("banner = %q", b)
	}
	card := `details[data-name="ci"]`
	p.do("open the card from the banner", chromedp.Click(chromedp.CSS(`#expiry-banner a`)),
		chromedp.WaitVisible(chromedp.CSS(card+" form.rotate")))
	p.do("choose a 2-day grace", chromedp.Click(chromedp.CSS(card+` input[name=grace][value=custom]`)),
		chromedp.SendKeys(chromedp.CSS(card+` input.grace-custom`), "2d"), chromedp.ScrollIntoView(chromedp.CSS(card+" form.rotate")))
	p.shotViewport("rotate")
	p.do("rotate", chromedp.Click(chromedp.CSS(card+" form.rotate button")), chromedp.WaitVisible(chromedp.ID("new-secret")))
	fresh := p.text("#new-secret")
	if !strings.HasPrefix(fresh, tollgate.TokenPrefix) || fresh == old.Reveal() {
		t.Fatalf("rotated page shows %q", fresh)
	}
	if note := p.text("p.note"); !strings.Contains(note, "the previous secret works until") {
		t.Fatalf("rotated page says %q", note)
	}
	p.shot("rotated")

	// Both secrets pull; each one's last use is recorded apart.
	if err := pullable(host, old.Reveal()); err != nil {
		t.Fatalf("old secret in its grace: %v", err)
	}
	if err := pullable(host, fresh); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	if err := d.Main.Cache.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p.do("back to the card", chromedp.Click(chromedp.ID("done")), chromedp.WaitVisible(chromedp.CSS(card+" [data-previous]")))
	prev := p.text(card + " [data-previous]")
	for _, want := range []string{"Previous secret valid until", "from 127.0.0.1 by go-containerregistry", "Current secret last used 20"} {
		if !strings.Contains(prev, want) {
			t.Errorf("previous-secret line lacks %q: %q", want, prev)
		}
	}
	if strings.Contains(prev, "last used never") {
		t.Errorf("the old secret's use is not shown: %q", prev)
	}
	p.do("scroll to the line", chromedp.ScrollIntoView(chromedp.CSS(card+" [data-previous]")))
	p.shotViewport("rotation-card")

	// Webhooks: set one up, test it, see a failure, redeliver.
	recv := &flakyReceiver{fail: map[string]bool{tollgate.EventTokenRotated: true}, failed: map[string]bool{}, got: map[string]int{}}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	hooksURL := d.Env["TOLLGATE_URL"] + "/console/webhooks"
	p.do("open webhooks", chromedp.Click(chromedp.CSS(`nav a[href="/console/webhooks"]`)), chromedp.WaitVisible(chromedp.ID("new-webhook")))
	p.do("add a webhook",
		chromedp.SendKeys(chromedp.CSS(`#new-webhook input[name=url]`), srv.URL+"/tollgate"),
		chromedp.Click(chromedp.CSS(`#new-webhook input[value="token.rotated"]`)),
		chromedp.Click(chromedp.CSS(`#new-webhook input[value="token.expiring"]`)),
		chromedp.Click(chromedp.CSS(`#new-webhook button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("webhook-secret")))
	if s := p.text("#webhook-secret"); !strings.HasPrefix(s, tollgate.WebhookSecretPrefix) {
		t.Fatalf("webhook secret shown: %q", s)
	}
	if ev := p.text("#webhooks tbody tr td:nth-child(2)"); ev != "token.expiring, token.rotated" && ev != "token.rotated, token.expiring" {
		t.Fatalf("webhook events shown: %q", ev)
	}
	p.do("test it", chromedp.Click(chromedp.CSS(`#webhooks form.test button`)), chromedp.WaitVisible(chromedp.CSS(`#deliveries tr[data-delivery]`)))
	// A rotation the receiver first refuses.
	if _, _, err := svc.RotateToken(ctx, "operator", tok.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, svc, "demo")
	rotated := `#deliveries tr[data-event="token.rotated"]`
	p.do("reload", chromedp.Navigate(hooksURL), chromedp.WaitVisible(chromedp.CSS(rotated)))
	if failed := p.text(rotated); p.count(rotated+`[data-status="pending"]`) != 1 || !strings.Contains(failed, "503") {
		t.Fatalf("failed delivery row: %q", failed)
	}
	if ok := p.text(`#deliveries tr[data-event="webhook.test"]`); !strings.Contains(ok, "delivered") || !strings.Contains(ok, "200") {
		t.Fatalf("test delivery row: %q", ok)
	}
	p.shot("webhooks")
	p.do("redeliver", chromedp.Click(chromedp.CSS(rotated+` form.redeliver button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	waitDelivered(t, svc, "demo")
	p.do("reload", chromedp.Navigate(hooksURL), chromedp.WaitVisible(chromedp.ID("deliveries")))
	if n := p.count(`#deliveries tr[data-status="pending"]`); n != 0 {
		t.Fatalf("%d deliveries still pending after redeliver: %s", n, p.text("#deliveries"))
	}
	recv.mu.Lock()
	// webhook.test and token.rotated, and the 7-day token.expiring if
	// the sweep wrote it after the webhook existed: each once.
	if len(recv.got) < 2 || len(recv.got) > 3 {
		t.Errorf("receiver accepted %v", recv.got)
	}
	for key, n := range recv.got {
		if n != 1 {
			t.Errorf("event %s accepted %d times", key, n)
		}
	}
	recv.mu.Unlock()
	p.do("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(hooksURL), chromedp.WaitVisible(chromedp.ID("deliveries")))
	if n := p.count(`#deliveries form.redeliver button`); n == 0 || p.eval(`String(document.querySelector("#deliveries form.redeliver button").getBoundingClientRect().width > 0)`) != "true" {
		t.Error("Redeliver is not visible on a phone")
	}
	p.shot("webhooks-phone")
}
