package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// signInDemo sets the demo console user's password through the one-time
// link `tollgate dev` printed and signs in.
func (p *page) signInDemo(d *devServer) {
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

// pullFrom fetches the demo image's manifest (a GET: a pull) through
// tollgate with crane, from local address ip (127.0.0.2, 127.0.0.3: all
// loopback on Linux).
func pullFrom(host, secret, ip string) error {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	_, err := crane.Manifest(host+"/demo/hello:latest", crane.Insecure,
		crane.WithTransport(&http.Transport{DialContext: dialer.DialContext}),
		crane.WithAuth(&authn.Basic{Username: tollgate.SetupUsername, Password: secret}))
	return err
}

// TestBrowserPolicy drives the console's per-token policy in Chromium
// against `tollgate dev`, with crane pulling from different loopback
// addresses: a token created restricted and bound to an address pulls
// from there and is refused elsewhere, and the refusal is on its card;
// "lock to the addresses seen in the last 30 days" lists the addresses
// the default token pulled from, and confirming binds it to them; pause
// and resume; the stale-token filters; a capped token's usage against its
// cap. With TOLLGATE_SCREENSHOTS=DIR: policy-*.png.
func TestBrowserPolicy(t *testing.T) {
	p := newPage(t)
	d := startDev(t, t.TempDir(), &testenv.Buffer{})
	svc := d.Main.Service
	ctx := context.Background()
	base := d.Env["TOLLGATE_URL"]
	host := strings.TrimPrefix(base, "http://")
	flush := func() {
		t.Helper()
		if err := d.Main.usage.rec.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Main.refusals.rec.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Main.Cache.Flush(ctx); err != nil { // last used
			t.Fatal(err)
		}
	}
	p.signInDemo(d)

	// Create a restricted, address-bound token with the form.
	p.do("open the form", chromedp.Navigate(base+"/console/tokens/new"), chromedp.WaitVisible(chromedp.ID("token-form")),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "ci-bound"),
		chromedp.SendKeys(chromedp.ID("restrict-images"), "demo/**"),
		chromedp.SendKeys(chromedp.ID("networks"), "127.0.0.2"))
	p.shot("policy-new-token")
	p.do("create", chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("new-secret")))
	bound := p.text("#new-secret")
	if err := pullFrom(host, bound, "127.0.0.2"); err != nil {
		t.Fatalf("bound token from its address: %v", err)
	}
	if err := pullFrom(host, bound, "127.0.0.3"); err == nil || !strings.Contains(err.Error(), "allowed-networks") {
		t.Fatalf("bound token from elsewhere: %v, want refused by its networks rule", err)
	}
	flush()
	card := `details[data-name="ci-bound"]`
	p.do("the bound token's card", chromedp.Navigate(base+"/console/tokens"), chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Click(chromedp.CSS(card+" > summary")), chromedp.WaitVisible(chromedp.CSS(card+" .refusals")))
	if got := p.text(card + " dd.networks"); got != "127.0.0.2/32" {
		t.Errorf("networks on the card = %q, want 127.0.0.2/32", got)
	}
	if got := p.text(card + " dd.eff-images"); !strings.Contains(got, "demo/**") || !strings.Contains(got, "restricted") {
		t.Errorf("images on the card = %q, want demo/** (restricted)", got)
	}
	refusals := p.text(card + " .refusals tbody")
	if !strings.Contains(refusals, "127.0.0.3") || !strings.Contains(refusals, "outside its networks") || !strings.Contains(refusals, "go-containerregistry") {
		t.Errorf("refused attempts on the card = %q, want 127.0.0.3, go-containerregistry, outside its networks", refusals)
	}
	if strings.Contains(p.text(card), bound[3:]) {
		t.Fatal("the card shows the secret")
	}
	p.do("scroll", chromedp.ScrollIntoView(chromedp.CSS(card+" .refusals")))
	p.shotViewport("policy-refusals")

	// Lock the default token to where it was used from.
	def := d.Env["TOLLGATE_DEMO_TOKEN"]
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		if err := pullFrom(host, def, ip); err != nil {
			t.Fatalf("default token from %s: %v", ip, err)
		}
	}
	flush()
	card = `details[data-name="default"]`
	p.do("lock", chromedp.Navigate(base+"/console/tokens"), chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Click(chromedp.CSS(card+" > summary")),
		chromedp.Click(chromedp.CSS(card+` .lock-action a`)), chromedp.WaitVisible(chromedp.ID("lock-list")))
	if got := p.text("#lock-list tbody"); !strings.Contains(got, "127.0.0.1/32") || !strings.Contains(got, "127.0.0.2/32") {
		t.Fatalf("the lock page lists %q, want 127.0.0.1/32 and 127.0.0.2/32", got)
	}
	p.shot("policy-lock")
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-lock")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if got := p.text(card + " dd.networks"); got != "127.0.0.1/32, 127.0.0.2/32" {
		t.Errorf("networks after the lock = %q", got)
	}
	if err := pullFrom(host, def, "127.0.0.3"); err == nil {
		t.Fatal("the locked token pulled from an address it was never seen at")
	}
	if err := pullFrom(host, def, "127.0.0.2"); err != nil {
		t.Fatalf("the locked token from a seen address: %v", err)
	}
	evs, err := svc.ListAudit(ctx, demoAccount, tollgate.AuditPage{Limit: 1})
	if err != nil || evs[0].Changes["networks"].To != "127.0.0.1/32,127.0.0.2/32" || !strings.HasPrefix(evs[0].Actor, "user:") {
		t.Errorf("audit of the lock = %+v, %v", evs[0], err)
	}

	// Pause, refused; resume, pulls again.
	p.do("pause", chromedp.Click(chromedp.CSS(card+" form.pause button")), chromedp.WaitVisible(chromedp.CSS(card+` [data-status="paused"]`)))
	if err := pullFrom(host, def, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("paused token: %v, want refused as paused", err)
	}
	p.shotViewport("policy-paused")
	p.do("resume", chromedp.Click(chromedp.CSS(card+" form.resume button")), chromedp.WaitVisible(chromedp.CSS(card+` [data-status="active"]`)))
	if err := pullFrom(host, def, "127.0.0.1"); err != nil {
		t.Fatalf("resumed token: %v", err)
	}

	// A capped token's usage against its cap, on its card.
	capped, secret, err := svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: demoAccount, Name: "capped", Policy: tollgate.TokenPolicy{MaxPulls: 5, MaxBytes: 10 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := pullFrom(host, secret.Reveal(), "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	card = `details[data-name="capped"]`
	p.do("capped card", chromedp.Navigate(base+"/console/tokens?open="+capped.ID), chromedp.WaitVisible(chromedp.CSS(card+" .cap")))
	if got := p.text(card + " .cap-pulls"); got != "2 of 5" {
		t.Errorf("pulls against the cap = %q, want 2 of 5", got)
	}
	if got := p.text(card + " .cap-resets"); !strings.Contains(got, tollgate.CapResetsAt(time.Now()).Format("2006-01-02")) {
		t.Errorf("reset = %q", got)
	}
	p.do("scroll", chromedp.ScrollIntoView(chromedp.CSS(card+" .cap")))
	p.shotViewport("policy-cap")

	// Stale filters: never used, and used from at least 2 addresses.
	flush()
	if _, _, err := svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: demoAccount, Name: "forgotten"}); err != nil {
		t.Fatal(err)
	}
	p.do("never used", chromedp.Navigate(base+"/console/tokens"), chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Click(chromedp.ID("stale-never")), chromedp.WaitVisible(chromedp.CSS(`#stale-never.current`)))
	if names := p.eval(`[...document.querySelectorAll("details.card")].map(c => c.dataset.name).join(",")`); names != "forgotten" {
		t.Errorf("never used lists %q, want forgotten", names)
	}
	p.shotViewport("policy-stale")
	p.do("many addresses", chromedp.Navigate(base+"/console/tokens?stale=addresses&min=2"), chromedp.WaitVisible(chromedp.CSS(`#stale-addresses.current`)))
	if names := p.eval(`[...document.querySelectorAll("details.card")].map(c => c.dataset.name).join(",")`); names != "default" {
		t.Errorf("used from 2+ addresses lists %q, want default", names)
	}

	// On a phone the card with its refused attempts fits the width.
	p.do("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/console/tokens"), chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Click(chromedp.CSS(`details[data-name="ci-bound"] > summary`)))
	if w := p.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("the tokens page is %s px wide on a 390 px phone", w)
	}
	p.do("desktop", chromedp.EmulateViewport(1100, 900))
}
