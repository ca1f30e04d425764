package console_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/console"
	"github.com/tollgate/tollgate/quota"
)

// TestLockToSeenAddresses: the confirm page lists, as exact networks,
// the addresses the token pulled from in the last 30 days (IPv4 /32,
// IPv6 /128, nothing older), confirming sets exactly those, the audit
// log has the change before → after, and a viewer cannot do it.
func TestLockToSeenAddresses(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	id := recordUsage(t, e) // 10.1.2.3 (20 days ago), 10.1.2.4, 203.0.113.9
	ctx := context.Background()
	tok, a, _ := e.svc.Token(ctx, id)
	today := tollgate.Day(e.clock.Now())
	for _, u := range []struct {
		day  time.Time
		addr string
	}{{today, "2001:db8::7"}, {today.AddDate(0, 0, -45), "192.0.2.99"}} {
		at := u.day.Add(time.Hour)
		if err := e.svc.RecordPulls(ctx, []tollgate.UsageDelta{{UsageKey: tollgate.UsageKey{Day: u.day, TokenID: tok.ID, AccountID: a.ID, Kind: tollgate.UsageImage, Repository: "demo/hello"},
			Pulls: 1, Addresses: []tollgate.AddressUse{{Address: u.addr, Pulls: 1, First: at, Last: at}}}}); err != nil {
			t.Fatal(err)
		}
	}
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	st, body, _ := b.get("/console/tokens")
	if st != 200 || !strings.Contains(body, "/console/tokens/"+id+"/lock") {
		t.Fatalf("tokens page offers no lock action: %d", st)
	}
	st, body, _ = b.get("/console/tokens/" + id + "/lock")
	want := []string{"10.1.2.3/32", "10.1.2.4/32", "203.0.113.9/32", "2001:db8::7/128"}
	for _, n := range want {
		if st != 200 || !strings.Contains(body, "<code>"+n+"</code>") {
			t.Fatalf("confirm page lacks %s: %d %s", n, st, body)
		}
	}
	if strings.Contains(body, "192.0.2.99") {
		t.Fatal("confirm page offers an address older than 30 days")
	}
	if !strings.Contains(body, "Lock to these 4 addresses") {
		t.Fatalf("confirm button does not say what it locks to: %s", body)
	}
	m := strings.Index(body, `name="networks" value="`)
	posted := body[m+len(`name="networks" value="`):]
	posted = posted[:strings.Index(posted, `"`)]
	st, _, h := b.post("/console/tokens/"+id+"/lock", url.Values{"networks": {html.UnescapeString(posted)}})
	if st != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "done=locked") {
		t.Fatalf("confirm: %d %s", st, h.Get("Location"))
	}
	tok, _, _ = e.svc.Token(ctx, id)
	got := tollgate.FormatNetworks(tok.Policy.Networks)
	if strings.Join(got, " ") != "10.1.2.3/32 10.1.2.4/32 203.0.113.9/32 2001:db8::7/128" {
		t.Fatalf("networks after the lock = %v, want %v", got, want)
	}
	evs, _ := e.svc.ListAudit(ctx, "acme", tollgate.AuditPage{Limit: 1})
	if c := evs[0].Changes["networks"]; evs[0].Target != id || c.From != "" || !strings.Contains(c.To, "2001:db8::7/128") {
		t.Errorf("audit = %+v, want the token's networks from none to the list", evs[0])
	}
	_, body, _ = b.get("/console/tokens?open=" + id)
	if !strings.Contains(body, "<code>2001:db8::7/128</code>") {
		t.Error("the card does not show the new networks")
	}
	v := e.signedIn("vic@acme.example", tollgate.RoleViewer)
	if st, _, _ := v.get("/console/tokens/" + id + "/lock"); st != http.StatusForbidden {
		t.Errorf("viewer opens the lock page: %d", st)
	}
}

// TestLockRefusedWithoutAddresses: a token that pulled nothing in 30
// days has nothing to lock to; posting an empty list changes nothing.
func TestLockRefusedWithoutAddresses(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	toks, _, _ := e.svc.ListTokens(context.Background(), "acme", "")
	id := toks[0].ID
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	st, body, _ := b.get("/console/tokens/" + id + "/lock")
	if st != 200 || !strings.Contains(body, `id="lock-none"`) || strings.Contains(body, `id="confirm-lock"`) {
		t.Fatalf("lock page of an unused token: %d", st)
	}
	st, body, _ = b.post("/console/tokens/"+id+"/lock", url.Values{"networks": {""}})
	if st != http.StatusBadRequest || !strings.Contains(body, "no address to lock the token to") {
		t.Fatalf("empty lock: %d", st)
	}
	if tok, _, _ := e.svc.Token(context.Background(), id); len(tok.Policy.Networks) != 0 {
		t.Fatalf("an empty lock set networks %v", tok.Policy.Networks)
	}
}

// TestCardShowsRefusedAttemptsAndCap: a capped token's card shows this
// month's pulls and bytes against its caps as the edge counts them (the
// quota counter), that the cap is reached and when it resets; and its
// refused attempts with time, address, client (escaped) and why.
func TestCardShowsRefusedAttemptsAndCap(t *testing.T) {
	var q *quota.Counter
	e := newEnvWith(t, "http://registry.test:5000", func(c *console.Console) {
		q = quota.New(quota.Options{Now: c.Service.Now})
		c.MonthUsage = func(ctx context.Context, id string) (int64, int64) { u := q.Get(ctx, id); return u.Pulls, u.Bytes }
	})
	ctx := context.Background()
	tok, _, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "capped", Policy: tollgate.TokenPolicy{MaxPulls: 10, MaxBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	q.Add(ctx, tok.ID, 10, 3<<10)
	err = e.svc.RecordRefusals(ctx, []tollgate.TokenRefusal{
		{TokenID: tok.ID, At: e.clock.Now().Add(-time.Hour), Address: "198.51.100.7", UserAgent: "containerd/2.1 <script>alert(1)</script>", Reason: "address_not_allowed"},
		{TokenID: tok.ID, At: e.clock.Now(), Address: "192.0.2.1", UserAgent: "podman/5", Reason: "cap_reached"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := e.signedIn("vic@acme.example", tollgate.RoleViewer)
	_, body, _ := b.get("/console/tokens?open=" + tok.ID)
	card := body[strings.Index(body, `id="`+tok.ID+`"`):]
	for _, want := range []string{`class="cap-pulls">10 of 10<`, `3.0 KiB of 1.0 MiB`, "cap reached", "Resets 2026-12-01 00:00 UTC",
		"<code>198.51.100.7</code>", "outside its networks", "monthly cap reached", "2026-11-28 12:00 UTC"} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %q", want)
		}
	}
	if strings.Contains(card, "<script>alert") {
		t.Error("a refusal's client is not escaped")
	}
	if strings.Index(card, "192.0.2.1") > strings.Index(card, "198.51.100.7") {
		t.Error("refused attempts are not newest first")
	}
	if strings.Contains(card, "/lock") {
		t.Error("a viewer is offered the lock action")
	}
}

// TestStaleTokenFilters: never used, unused for N days, and used from
// many addresses each list exactly the tokens they name.
func TestStaleTokenFilters(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	ctx := context.Background()
	mk := func(name string) *tollgate.Token {
		tok, _, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	old, oldUsed := mk("old-never"), mk("old-used")
	e.clock.Add(100 * 24 * time.Hour)
	fresh, busy := mk("fresh-never"), mk("busy")
	now := e.clock.Now()
	if err := e.svc.Store.RecordUsage(ctx, []tollgate.TokenUsage{
		{TokenID: oldUsed.ID, At: now.Add(-95 * 24 * time.Hour), IP: "10.0.0.1"},
		{TokenID: busy.ID, At: now, IP: "10.0.0.2"},
	}); err != nil {
		t.Fatal(err)
	}
	var addrs []tollgate.AddressUse
	for i := range 12 {
		addrs = append(addrs, tollgate.AddressUse{Address: fmt.Sprintf("10.8.0.%d", i), Pulls: 1, First: now, Last: now})
	}
	if err := e.svc.RecordPulls(ctx, []tollgate.UsageDelta{{UsageKey: tollgate.UsageKey{Day: now, TokenID: busy.ID, AccountID: busy.AccountID, Kind: tollgate.UsageImage, Repository: "demo/hello"},
		Pulls: 12, Addresses: addrs}}); err != nil {
		t.Fatal(err)
	}
	b := e.signedIn("vic@acme.example", tollgate.RoleViewer)
	for _, tc := range []struct {
		query string
		want  []*tollgate.Token
	}{
		{"stale=never", []*tollgate.Token{old, fresh}},
		{"stale=unused&days=90", []*tollgate.Token{old, oldUsed}},
		{"stale=addresses&min=10", []*tollgate.Token{busy}},
	} {
		st, body, _ := b.get("/console/tokens?" + tc.query)
		if st != 200 {
			t.Fatalf("%s: %d", tc.query, st)
		}
		want := map[string]bool{}
		for _, w := range tc.want {
			want[w.ID] = true
			if !strings.Contains(body, `data-token="`+w.ID+`"`) {
				t.Errorf("%s: %s missing", tc.query, w.Name)
			}
		}
		for _, other := range []*tollgate.Token{old, oldUsed, fresh, busy} {
			if !want[other.ID] && strings.Contains(body, `data-token="`+other.ID+`"`) {
				t.Errorf("%s: %s listed", tc.query, other.Name)
			}
		}
		if !strings.Contains(body, `class="current" id="stale-`) {
			t.Errorf("%s: the filter is not marked as chosen", tc.query)
		}
	}
}

// TestFormSetsPackagesValidFromAndCaps: the token form creates a token
// limited to package repositories, valid from a date and capped per
// month; the edit form shows the same values, saving it unchanged
// changes nothing, and a bad size is refused next to its field.
func TestFormSetsPackagesValidFromAndCaps(t *testing.T) {
	e := newEnv(t, "http://registry.test:5000")
	ctx := context.Background()
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	b.get("/console/tokens/new")
	form := url.Values{"name": {"capped"}, "images": {"on"}, "never": {"on"}, "restrict_packages": {"os\nlibs-*"},
		"valid_from": {"2026-12-01"}, "max_pulls": {"1000"}, "max_bytes": {"10 GiB"}}
	if st, body, _ := b.post("/console/tokens", form); st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, body)
	}
	toks, _, _ := e.svc.ListTokens(ctx, "acme", "")
	tok := toks[len(toks)-1]
	p := tok.Policy
	if strings.Join(p.Packages, ",") != "libs-*,os" && strings.Join(p.Packages, ",") != "os,libs-*" || p.ValidFrom == nil ||
		!p.ValidFrom.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || p.MaxPulls != 1000 || p.MaxBytes != 10<<30 {
		t.Fatalf("policy = %+v", p)
	}
	if tok.Status(nil, e.clock.Now()) != tollgate.TokenScheduled {
		t.Errorf("status = %s, want scheduled until its valid-from date", tok.Status(nil, e.clock.Now()))
	}
	_, body, _ := b.get("/console/tokens/" + tok.ID + "/edit")
	for _, want := range []string{`value="2026-12-01"`, `value="1000"`, `value="10 GiB"`, "libs-*"} {
		if !strings.Contains(body, want) {
			t.Errorf("edit form lacks %s", want)
		}
	}
	before, _ := e.svc.ListAudit(ctx, "acme", tollgate.AuditPage{})
	form.Set("max_bytes", "10 GiB")
	if st, _, _ := b.post("/console/tokens/"+tok.ID+"/edit", form); st != http.StatusSeeOther {
		t.Fatalf("save unchanged: %d", st)
	}
	if after, _ := e.svc.ListAudit(ctx, "acme", tollgate.AuditPage{}); len(after) != len(before) {
		t.Errorf("saving an unchanged form wrote an audit event: %+v", after[0])
	}
	form.Set("max_bytes", "lots")
	st, body, _ := b.post("/console/tokens/"+tok.ID+"/edit", form)
	if st != http.StatusBadRequest || !strings.Contains(body, `id="max-bytes-error"`) {
		t.Fatalf("bad size: %d", st)
	}
	form.Set("max_bytes", "")
	form.Set("valid_from", "")
	if st, _, _ := b.post("/console/tokens/"+tok.ID+"/edit", form); st != http.StatusSeeOther {
		t.Fatalf("clear: %d", st)
	}
	tok, _, _ = e.svc.Token(ctx, tok.ID)
	if tok.Policy.MaxBytes != 0 || tok.Policy.ValidFrom != nil || tok.Policy.MaxPulls != 1000 {
		t.Errorf("after clearing the byte cap and the date: %+v", tok.Policy)
	}
}
