package console_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/usage"
)

// recordUsage puts pulls of acme's default token (and of another
// account's) into the store as the recorder would.
func recordUsage(t *testing.T, e *env) (tokenID string) {
	t.Helper()
	ctx := context.Background()
	toks, a, err := e.svc.ListTokens(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	tok := toks[0]
	now := e.clock.Now()
	delta := func(day time.Time, repo, addr string, pulls, bytes int64) tollgate.UsageDelta {
		at := day.Add(9 * time.Hour)
		return tollgate.UsageDelta{
			UsageKey: tollgate.UsageKey{Day: day, TokenID: tok.ID, AccountID: a.ID, Kind: tollgate.UsageImage, Repository: repo},
			Pulls:    pulls, Manifests: pulls * 2, Bytes: bytes,
			Addresses: []tollgate.AddressUse{{Address: addr, Pulls: pulls, First: at, Last: at}},
			Agents:    []tollgate.AgentUse{{UserAgent: "containerd/2.0 <script>", Pulls: pulls}},
		}
	}
	today := tollgate.Day(now)
	err = e.svc.RecordPulls(ctx, []tollgate.UsageDelta{
		delta(today.AddDate(0, 0, -20), "demo/hello", "10.1.2.3", 4, 4<<20),
		delta(today.AddDate(0, 0, -1), "demo/hello", "10.1.2.4", 2, 2<<20),
		delta(today, "demo/other", "203.0.113.9", 1, 1<<10), // a new /24
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := e.svc.CreateAccount(ctx, "operator", "other"); err != nil {
		t.Fatal(err)
	}
	otoks, oa, _ := e.svc.ListTokens(ctx, "other", "")
	err = e.svc.RecordPulls(ctx, []tollgate.UsageDelta{{UsageKey: tollgate.UsageKey{Day: today, TokenID: otoks[0].ID, AccountID: oa.ID, Kind: tollgate.UsageImage, Repository: "secret/other-account"}, Pulls: 99}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.ID
}

var barRE = regexp.MustCompile(`<rect class="bar"[^>]*data-day="([0-9-]+)" data-value="([0-9]+)"`)

func TestUsagePageChartsAndTables(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	tokID := recordUsage(t, e)
	b := e.signedIn("vic@acme.example", tollgate.RoleViewer) // every role reads usage
	st, body, h := b.get("/console/usage?since=30d")
	wantStatus(t, "usage page", st, 200, body)
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP = %q", csp)
	}
	bars := barRE.FindAllStringSubmatch(body, -1)
	if len(bars) != 60 { // 30 days, two charts
		t.Fatalf("%d bars, want 60 (30 days × pulls and bytes)", len(bars))
	}
	values := map[string]string{}
	for _, m := range bars[:30] {
		values[m[1]] = m[2]
	}
	today := tollgate.Day(e.clock.Now())
	if values[today.Format(time.DateOnly)] != "1" || values[today.AddDate(0, 0, -1).Format(time.DateOnly)] != "2" || values[today.AddDate(0, 0, -20).Format(time.DateOnly)] != "4" {
		t.Errorf("pull bars = %v", values)
	}
	for _, want := range []string{`id="usage-pulls">7<`, "demo/hello", "demo/other", "10.1.2.3", "203.0.113.9", "203.0.113.0/24", "containerd/2.0 &lt;script&gt;", `href="/console/usage.csv?since=30d"`} {
		if !strings.Contains(body, want) {
			t.Errorf("usage page lacks %q", want)
		}
	}
	if strings.Contains(body, "secret/other-account") || strings.Contains(body, "<script>") {
		t.Error("usage page shows another account's pulls or unescaped text")
	}
	// The 7-day view leaves the 20-day-old pulls out.
	_, body, _ = b.get("/console/usage?since=7d&token=" + tokID)
	if !strings.Contains(body, `id="usage-pulls">3<`) || len(barRE.FindAllString(body, -1)) != 14 {
		t.Errorf("7-day view: pulls or bars wrong")
	}
	// A bad period is a 400 that says why.
	st, body, _ = b.get("/console/usage?since=forever")
	wantStatus(t, "bad period", st, http.StatusBadRequest, body)
}

func TestUsageCSVDownloadRoundTrips(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	recordUsage(t, e)
	b := e.signedIn("vic@acme.example", tollgate.RoleViewer)
	st, body, h := b.get("/console/usage.csv?since=30d")
	wantStatus(t, "csv", st, 200, body)
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
		t.Errorf("headers: %v", h)
	}
	rows, err := usage.ReadCSV(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var pulls int64
	for _, r := range rows {
		pulls += r.Pulls
	}
	if len(rows) != 3 || pulls != 7 {
		t.Errorf("csv rows = %+v, want 3 rows, 7 pulls", rows)
	}
}

func TestTokenCardFlagsNewNetwork(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	tokID := recordUsage(t, e)
	b := e.signedIn("ann@acme.example", tollgate.RoleOperator)
	st, body, _ := b.get("/console/tokens")
	wantStatus(t, "tokens", st, 200, body)
	card := body[strings.Index(body, `data-token="`+tokID+`"`):]
	card = card[:strings.Index(card, "</details>")]
	for _, want := range []string{`class="badge new-network"`, "new network 203.0.113.0/24", `<svg class="spark"`, "7 pulls, 6.0 MiB", `href="/console/usage?token=` + tokID} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %q:\n%s", want, card)
		}
	}
	// A week later the network is no longer news.
	e.clock.Add(8 * 24 * time.Hour)
	b2 := e.signedIn("bob@acme.example", tollgate.RoleOperator)
	_, body, _ = b2.get("/console/tokens")
	if strings.Contains(body, `class="badge new-network"`) {
		t.Error("a network first seen 8 days ago is still flagged")
	}
}

// TestUsageOfAnotherAccountsTokenIsNotFound: ?token= cannot read another
// account's token, and the CSV download says the same.
func TestUsageOfAnotherAccountsTokenIsNotFound(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	recordUsage(t, e)
	otoks, _, err := e.svc.ListTokens(context.Background(), "other", "")
	if err != nil {
		t.Fatal(err)
	}
	b := e.signedIn("vic@acme.example", tollgate.RoleViewer)
	for _, path := range []string{"/console/usage?token=", "/console/usage.csv?token="} {
		st, body, _ := b.get(path + otoks[0].ID)
		wantStatus(t, path, st, http.StatusNotFound, body)
		if strings.Contains(body, "secret/other-account") {
			t.Errorf("%s shows the other account's pulls", path)
		}
	}
}
