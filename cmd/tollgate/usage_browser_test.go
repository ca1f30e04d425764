package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestBrowserUsage: pulls through `tollgate dev`, then the console's
// Usage page draws them as SVG bars in Chromium (the charts are the
// server's SVG), on a desktop and on a phone, and the token
// card carries its sparkline. With TOLLGATE_SCREENSHOTS=DIR the pages are
// written to DIR/usage.png and DIR/usage-phone.png.
func TestBrowserUsage(t *testing.T) {
	p := newPage(t)
	d := startDev(t, t.TempDir(), &testenv.Buffer{})
	base := d.Env["TOLLGATE_URL"]
	host := strings.TrimPrefix(base, "http://")
	tok := d.Env["TOLLGATE_DEMO_TOKEN"]
	opts := []crane.Option{crane.Insecure, crane.WithAuth(&authn.Basic{Username: tollgate.SetupUsername, Password: tok})}
	for _, plat := range []string{"linux/amd64", "linux/arm64"} {
		pl, _ := v1.ParsePlatform(plat)
		img, err := crane.Pull(host+"/demo/hello:latest", append(opts, crane.WithPlatform(pl))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := img.RawConfigFile(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Main.usage.rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	p.signInDemo(d) // policy_browser_test.go
	p.do("open usage", chromedp.Click(chromedp.CSS(`nav a[href="/console/usage"]`)), chromedp.WaitVisible(chromedp.ID("usage-summary")))

	if n := p.count(`svg.chart rect.bar`); n != 60 {
		t.Fatalf("%d bars drawn, want 60 (30 days, two charts)", n)
	}
	today := p.eval(`document.querySelector("svg.chart rect.bar:last-of-type").getAttribute("data-day")`)
	if pulls := p.eval(`document.querySelectorAll("svg.chart")[0].querySelector("rect.bar:last-of-type").getAttribute("data-value")`); pulls != "1" {
		t.Errorf("today's (%s) pull bar = %s, want 1 (two platforms of one image, within 30 s: one pull)", today, pulls)
	}
	if h := p.eval(`String(document.querySelectorAll("svg.chart")[1].querySelector("rect.bar:last-of-type").getBoundingClientRect().height > 10)`); h != "true" {
		t.Error("today's bytes bar is not drawn tall")
	}
	if got := p.text("#usage-summary"); !strings.Contains(got, "1 pull, 4 manifest fetches") {
		t.Errorf("summary = %q, want 1 pull and 4 manifest fetches (index and platform manifest, twice)", got)
	}
	if !strings.Contains(p.text("table.usage-repos"), "demo/hello") || !strings.Contains(p.text("table.usage-agents"), "go-containerregistry") {
		t.Error("tables lack the pulled image or the client")
	}
	p.shotViewport("usage")

	p.do("phone", chromedp.EmulateViewport(390, 844), chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("usage-summary")))
	if w := p.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("the usage page is %s px wide on a 390 px phone", w)
	}
	p.shot("usage-phone")
	p.do("desktop", chromedp.EmulateViewport(1100, 900))

	p.do("tokens", chromedp.Navigate(base+"/console/tokens"), chromedp.WaitVisible(chromedp.ID("token-count")),
		chromedp.Click(chromedp.CSS(`details[data-name="default"] > summary`)))
	if n := p.count(`details[data-name="default"] svg.spark rect`); n < 1 {
		t.Error("no sparkline bar on the default token's card")
	}
	if got := p.text(`details[data-name="default"] dd.usage`); !strings.Contains(got, "1 pull,") {
		t.Errorf("card usage = %q", got)
	}
}
