package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// The console in a real browser: Debian's Chromium, headless, driven by
// chromedp against `tollgate dev` run in this process (its embedded
// upstream registry included). Skipped without Chromium unless
// TOLLGATE_TEST_REQUIRE_SERVICES=1. With TOLLGATE_SCREENSHOTS=DIR the
// screenshots of the main screens are written to DIR (the README's come
// from `TOLLGATE_SCREENSHOTS=$PWD/docs/screenshots go test -run Browser ./cmd/tollgate`).

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testenv.Required() {
		t.Fatal("chromium is required (TOLLGATE_TEST_REQUIRE_SERVICES=1) but not installed: apt-get install -y chromium")
	}
	t.Skip("chromium not installed, skipping the browser tests (apt-get install -y chromium)")
	return ""
}

// page is one browser tab with helpers that fail the test with the step.
type page struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots, "" for none
}

func newPage(t *testing.T) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser; it must not run under a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &page{t: t, ctx: ctx, dir: os.Getenv("TOLLGATE_SCREENSHOTS")}
}

func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(p.ctx, chromedp.Location())
		body, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		p.t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
	}
}

func (p *page) eval(js string, opts ...chromedp.EvaluateOption) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, opts...))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (p *page) text(sel string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		p.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(v)
}

func (p *page) count(sel string) int {
	p.t.Helper()
	var n int
	fmt.Sscan(p.eval(`String(document.querySelectorAll(`+jsString(sel)+`).length)`), &n)
	return n
}

func (p *page) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if p.dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(p.dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// shotViewport captures only what the window shows (a long list would
// make a very tall image).
func (p *page) shotViewport(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, cdppage.CaptureScreenshot, cdppage.CaptureScreenshotParams{Format: cdppage.CaptureScreenshotFormatPng})
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if p.dir != "" {
		if err := os.WriteFile(filepath.Join(p.dir, name+".png"), res.Data, 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// pullable reports whether the registry token lets crane resolve the demo
// image through tollgate, as `docker login` + `docker pull` would.
func pullable(host, secret string) error {
	_, err := crane.Digest(host+"/demo/hello:latest", crane.Insecure,
		crane.WithAuth(&authn.Basic{Username: tollgate.SetupUsername, Password: secret}))
	return err
}

var dockerLoginRE = regexp.MustCompile(`^echo '(tg_[0-9A-Za-z]+)' \| docker login (\S+) -u (\S+) --password-stdin$`)

func TestBrowserConsole(t *testing.T) {
	p := newPage(t)
	d := startDev(t, t.TempDir(), &testenv.Buffer{})
	svc := d.Main.Service
	ctx := context.Background()
	base := d.Env["TOLLGATE_URL"]
	const pw = "a long demo passphrase"

	// Clipboard access for the copy buttons, as a user's click grants it.
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name, AllowWithoutSanitization: true},
			Setting:    browser.PermissionSettingGranted, Origin: base}); err != nil {
			t.Fatalf("grant %s: %v", name, err)
		}
	}

	// The one-time link `tollgate dev` printed: choose a password.
	p.do("open the set-password link", chromedp.Navigate(d.Env["TOLLGATE_CONSOLE_SET_PASSWORD_URL"]),
		chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)))
	p.shot("set-password")
	p.do("set the password",
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), pw),
		chromedp.SendKeys(chromedp.CSS(`input[name=confirm]`), pw),
		chromedp.Click(chromedp.ID("set-password")),
		chromedp.WaitVisible(chromedp.ID("sign-in")))

	// Sign in: the new account's default token is there.
	p.do("sign in",
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), demoConsoleEmail),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), pw),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("token-count")))
	var active int
	if _, err := fmt.Sscanf(p.text("#token-count"), "%d of 100 tokens", &active); err != nil || active < 1 {
		t.Fatalf("count = %q", p.text("#token-count"))
	}
	if p.count(`details[data-name="default"]`) != 1 {
		t.Fatal("the default token's card is missing")
	}
	// Whatever dev seeded, the account starts without package access here.
	if _, err := svc.DenyPackages(ctx, "operator", demoAccount); err != nil {
		t.Fatal(err)
	}

	// Create: a field error first, then the token, its secret shown once.
	p.do("open the form", chromedp.Navigate(base+"/console/tokens/new"), chromedp.WaitVisible(chromedp.ID("token-form")))
	if p.eval(`String(document.getElementById("scope-packages").disabled)`) != "true" || p.count("#packages-hint") != 1 {
		t.Fatal("packages scope is not disabled with an explanation")
	}
	p.do("submit without a name", chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("name-error")))
	if got := p.text("#name-error"); got != "must not be empty" {
		t.Fatalf("name error = %q", got)
	}
	p.do("fill the form",
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "ci"),
		chromedp.SendKeys(chromedp.CSS(`textarea[name=description]`), "GitHub Actions pulls"))
	p.shot("new-token")
	p.do("create", chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("new-secret")))
	created := p.text("#new-secret")
	if _, err := tollgate.ParseToken(created); err != nil {
		t.Fatalf("created secret %q: %v", created, err)
	}
	p.shot("token-created")
	p.do("back to the list", chromedp.Click(chromedp.ID("done")), chromedp.WaitVisible(chromedp.ID("token-count")))
	if got, want := p.text("#token-count"), fmt.Sprintf("%d of 100 tokens", active+1); got != want {
		t.Fatalf("count = %q, want %q", got, want)
	}

	// Expand the card, reveal, copy.
	card := `details[data-name="ci"]`
	id := p.eval(`document.querySelector(` + jsString(card) + `).dataset.token`)
	p.do("expand the card", chromedp.Click(chromedp.CSS(card+" > summary")), chromedp.WaitVisible(chromedp.CSS(card+" form.reveal button")))
	if got := p.text("#secret-" + id); strings.HasPrefix(got, "tg_") {
		t.Fatal("secret shown before reveal")
	}
	p.do("reveal", chromedp.Click(chromedp.CSS(card+" form.reveal button")),
		chromedp.WaitVisible(chromedp.CSS(card+" .secret-row button.copy")))
	revealed := p.text("#secret-" + id)
	if revealed != created {
		t.Fatalf("revealed %q, created %q", revealed, created)
	}
	p.do("copy", chromedp.Click(chromedp.CSS(card+" .secret-row button.copy")))
	if got := p.eval(`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise); got != revealed {
		t.Fatalf("clipboard holds %q, want the secret", got)
	}
	p.do("scroll", chromedp.ScrollIntoView(chromedp.CSS(card)))
	p.shot("token-revealed")

	// The docker login line shown works: its secret pulls the demo image.
	login := p.text("#cmd-" + id + "-0")
	m := dockerLoginRE.FindStringSubmatch(login)
	if m == nil {
		t.Fatalf("docker login line %q", login)
	}
	if err := pullable(m[2], m[1]); err != nil {
		t.Fatalf("pull with the secret of the docker login line: %v", err)
	}
	if kube := p.text("#cmd-" + id + "-1"); !strings.Contains(kube, "--docker-password='"+revealed+"'") {
		t.Fatalf("kubectl line %q", kube)
	}

	// Edit every field the form has.
	p.do("edit", chromedp.Click(chromedp.CSS(card+` a[href$="/edit"]`)), chromedp.WaitVisible(chromedp.ID("token-form")),
		chromedp.SetValue(chromedp.CSS(`input[name=name]`), "ci-eu"),
		chromedp.SetValue(chromedp.CSS(`textarea[name=description]`), "EU runners"),
		chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.CSS(`details[data-name="ci-eu"][open]`)))
	if got := p.text(`details[data-name="ci-eu"] .desc`); got != "EU runners" {
		t.Fatalf("description after edit = %q", got)
	}

	// Time passes: the token expires (as `token edit --expires now` does).
	now := tollgate.Expiry{Now: true}
	if _, err := svc.EditToken(ctx, "operator", id, tollgate.TokenEdit{Expiry: &now}); err != nil {
		t.Fatal(err)
	}
	if err := pullable(m[2], revealed); err == nil {
		t.Fatal("an expired token still pulls")
	}
	card = `details[data-name="ci-eu"]`
	p.do("expired filter", chromedp.Navigate(base+"/console/tokens?status=expired"), chromedp.WaitVisible(chromedp.CSS(card)))
	if got := p.text(card + " .badge"); got != "expired" {
		t.Fatalf("badge = %q", got)
	}
	if p.count(`details[data-name="default"]`) != 0 {
		t.Fatal("the expired filter shows an active token")
	}
	p.do("expand", chromedp.Click(chromedp.CSS(card+" > summary")), chromedp.WaitVisible(chromedp.CSS(card+" form.extend")))
	p.shot("token-expired")
	p.do("extend",
		chromedp.SetValue(chromedp.CSS(card+" form.extend input.expires-date"), "2030-06-30"),
		chromedp.Click(chromedp.CSS(card+" form.extend button")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if got := p.text(card + " .badge"); got != "active" || !strings.Contains(p.text(card+" .expires"), "2030-06-30") {
		t.Fatalf("after extend: badge %q, expires %q", got, p.text(card+" .expires"))
	}
	if err := pullable(m[2], revealed); err != nil {
		t.Fatalf("extended token does not pull: %v", err)
	}

	// Package access request.
	p.do("request package access", chromedp.Click(chromedp.ID("request-packages")), chromedp.WaitVisible(chromedp.CSS(".pkg-requested")))

	// Revoke, confirmed, and pulls are denied.
	p.do("revoke", chromedp.Click(chromedp.CSS(card+" > summary")),
		chromedp.Click(chromedp.CSS(card+` a[href$="/revoke"]`)), chromedp.WaitVisible(chromedp.ID("confirm-revoke")))
	p.shot("revoke-confirm")
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-revoke")), chromedp.WaitVisible(chromedp.CSS(card+" .badge.revoked")))
	if err := pullable(m[2], revealed); err == nil {
		t.Fatal("a revoked token still pulls")
	}
	if p.count(card+" form.reveal") != 0 || p.count(card+` a[href$="/edit"]`) != 0 {
		t.Fatal("a revoked token's card still offers reveal or edit")
	}

	// The admin's audit log.
	p.do("audit", chromedp.Navigate(base+"/console/audit"), chromedp.WaitVisible(chromedp.CSS("table.audit")))
	if log := p.text("table.audit"); !strings.Contains(log, "token.revoked") || !strings.Contains(log, "user:"+demoConsoleEmail) {
		t.Fatalf("audit log lacks the console's actions:\n%s", log)
	}
	p.shot("audit-log")

	// A phone-sized screen.
	p.do("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/console/tokens?status=active"),
		chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Click(chromedp.CSS(`details[data-name="default"] > summary`)))
	if w := p.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("the page is %s px wide on a 390 px phone", w)
	}
	p.shot("phone")
	p.do("desktop", chromedp.EmulateViewport(1100, 900))

	// The 101st token: the rule's message above the form.
	// active+1 were made, one of them since revoked.
	for i := 0; i < tollgate.MaxActiveTokens-active; i++ {
		if _, _, err := svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: demoAccount, Name: fmt.Sprintf("bulk-%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	p.do("tokens", chromedp.Navigate(base+"/console/tokens"), chromedp.WaitVisible(chromedp.ID("token-count")))
	if got := p.text("#token-count"); got != "100 of 100 tokens" {
		t.Fatalf("count = %q", got)
	}
	p.do("101st", chromedp.Navigate(base+"/console/tokens/new"), chromedp.WaitVisible(chromedp.ID("token-form")),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "one too many"),
		chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("form-error")))
	if got := p.text("#form-error"); got != "account demo already holds 100 active tokens" {
		t.Fatalf("101st message = %q", got)
	}
	p.shot("token-limit")

	// Clear the bulk tokens away for the viewer's screen.
	bulk, _, err := svc.ListTokens(ctx, demoAccount, tollgate.TokenActive)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range bulk {
		if strings.HasPrefix(tok.Name, "bulk-") {
			if _, err := svc.RevokeToken(ctx, "operator", tok.ID); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A viewer cannot reveal or revoke, in the page or by forging the form.
	users := d.Main.users()
	_, link, err := users.CreateUser(ctx, "operator", tollgate.UserCreate{Account: demoAccount, Email: "viewer@demo.example", Role: tollgate.RoleViewer})

	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.SetPassword(ctx, link.Reveal(), pw); err != nil {
		t.Fatal(err)
	}
	p.do("sign out", chromedp.Click(chromedp.ID("sign-out")), chromedp.WaitVisible(chromedp.ID("sign-in")))
	p.do("sign in as viewer",
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "viewer@demo.example"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), pw),
		chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Navigate(base+"/console/tokens?status=active"), chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Click(chromedp.CSS(`details[data-name="default"] > summary`)))
	if n := p.count("form.reveal") + p.count(`a[href$="/revoke"]`) + p.count("#new-token"); n != 0 {
		t.Fatalf("the viewer is offered %d reveal/revoke/create controls", n)
	}
	if p.count(`a[href="/console/audit"]`) != 0 {
		t.Fatal("the viewer sees the audit log link")
	}
	p.shotViewport("viewer")
	defID := p.eval(`document.querySelector('details[data-name="default"]').dataset.token`)
	for _, action := range []string{"reveal", "revoke"} {
		status := p.eval(`fetch("/console/tokens/`+defID+`/`+action+`", {method: "POST", headers: {"Accept": "application/json"},
			body: new URLSearchParams({csrf: document.querySelector("input[name=csrf]").value})}).then(r => String(r.status))`, chromedp.EvalAwaitPromise)
		if status != "403" {
			t.Fatalf("viewer's forged %s: status %s, want 403", action, status)
		}
	}
	if tok, _, _ := svc.Token(ctx, defID); tok.RevokedAt != nil {
		t.Fatal("the viewer revoked a token")
	}
}
