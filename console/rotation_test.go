package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/storetest"
)

var newSecretRE = regexp.MustCompile(`id="new-secret">(tg_[A-Za-z0-9]+)<`)

// TestRotateShowsTheNewSecretOnceAndBothSecretsLastUse: Rotate with a
// custom grace shows the new secret once; the card then tells the two
// secrets apart — until when the previous one works and when, from where
// and by which client each was last used.
func TestRotateShowsTheNewSecretOnceAndBothSecretsLastUse(t *testing.T) {
	e := newEnv(t, "https://registry.example.com")
	b := e.signedIn("ops@acme.example", tollgate.RoleOperator)
	ctx := context.Background()
	tok, old, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	b.get("/console/tokens")
	st, body, _ := b.post("/console/tokens/"+tok.ID+"/rotate", url.Values{"grace": {"custom"}, "grace_custom": {"3"}})
	wantStatus(t, "rotate", st, http.StatusOK, body)
	m := newSecretRE.FindStringSubmatch(body)
	if m == nil || m[1] == old.Reveal() {
		t.Fatalf("rotated page lacks the new secret:\n%s", body)
	}
	until := e.clock.Now().Add(72 * time.Hour).UTC().Format("2006-01-02 15:04 UTC")
	if !strings.Contains(body, "the previous secret works until "+until) {
		t.Fatalf("rotated page does not say until when the old secret works (%s):\n%s", until, body)
	}
	// Both secrets in use from two places.
	e.clock.Add(time.Minute)
	if err := e.svc.Store.RecordUsage(ctx, []tollgate.TokenUsage{
		{TokenID: tok.ID, At: e.clock.Now(), IP: "198.51.100.7", UA: "containerd/2.0.0", Previous: true, Pulls: 1},
		{TokenID: tok.ID, At: e.clock.Now(), IP: "192.0.2.1", UA: "crane/0.20", Pulls: 1},
	}); err != nil {
		t.Fatal(err)
	}
	_, body, _ = b.get("/console/tokens?open=" + tok.ID)
	for _, want := range []string{"Previous secret valid until <strong class=\"previous-until\">" + until,
		"from <span class=\"previous-ip\">198.51.100.7</span>", "by <span class=\"ua previous-ua\">containerd/2.0.0</span>",
		"Current secret last used", "from 192.0.2.1"} {
		if !strings.Contains(body, want) {
			t.Errorf("card lacks %q", want)
		}
	}
	if strings.Contains(body, m[1]) || strings.Contains(body, old.Reveal()) {
		t.Fatal("the tokens page shows a secret nobody revealed")
	}
	// The old secret still authenticates, the new one too.
	for _, s := range []string{old.Reveal(), m[1]} {
		if _, _, err := storetest.Authenticate(ctx, e.svc, s); err != nil {
			t.Fatalf("secret after rotation: %v", err)
		}
	}
	// A grace past 30 days is refused on the card, naming the field.
	st, body, _ = b.post("/console/tokens/"+tok.ID+"/rotate", url.Values{"grace": {"custom"}, "grace_custom": {"31d"}})
	if st != http.StatusBadRequest || !strings.Contains(body, "grace: ") {
		t.Fatalf("31 days: %d\n%s", st, body)
	}
	// A viewer cannot rotate.
	v := e.signedIn("viewer@acme.example", tollgate.RoleViewer)
	_, vbody, _ := v.get("/console/tokens")
	if strings.Contains(vbody, "/rotate") {
		t.Fatal("a viewer sees the Rotate form")
	}
	if st, _, _ := v.post("/console/tokens/"+tok.ID+"/rotate", url.Values{"grace": {"now"}}); st != http.StatusForbidden {
		t.Fatalf("viewer rotate: %d", st)
	}
}

// TestExpiryBannerNamesTokensExpiringSoon: tokens that expire within the
// warning window are listed above the cards, soonest first; the others not.
func TestExpiryBannerNamesTokensExpiringSoon(t *testing.T) {
	e := newEnv(t, "https://registry.example.com")
	b := e.signedIn("ops@acme.example", tollgate.RoleOperator)
	ctx := context.Background()
	for name, in := range map[string]time.Duration{"soon": 3 * 24 * time.Hour, "later": 60 * 24 * time.Hour, "today": 5 * time.Hour} {
		if _, _, err := e.svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: name, Expiry: tollgate.Expiry{At: e.clock.Now().Add(in)}}); err != nil {
			t.Fatal(err)
		}
	}
	_, body, _ := b.get("/console/tokens")
	i := strings.Index(body, `id="expiry-banner"`)
	if i < 0 {
		t.Fatalf("no banner:\n%s", body)
	}
	banner := body[i : i+strings.Index(body[i:], "</div>")]
	if !strings.Contains(banner, "2 tokens expire soon") || !strings.Contains(banner, ">today</a> (today)") || !strings.Contains(banner, ">soon</a> (in 3 days)") ||
		strings.Contains(banner, "later") || strings.Index(banner, ">today<") > strings.Index(banner, ">soon<") {
		t.Fatalf("banner: %s", banner)
	}
}

// TestWebhooksPageCreateTestDeleteAndRedeliver: an admin adds a webhook
// (secret shown once), tests it, sees the delivery in the log and
// redelivers it; the operator's webhook has no Delete; other roles
// cannot open the page.
func TestWebhooksPageCreateTestDeleteAndRedeliver(t *testing.T) {
	e := newEnv(t, "https://registry.example.com")
	b := e.signedIn("boss@acme.example", tollgate.RoleAdmin)
	ctx := context.Background()
	ops, _, err := e.svc.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: "acme", URL: "https://ops.example.com/hook"})
	if err != nil {
		t.Fatal(err)
	}
	b.get("/console/webhooks")
	st, body, _ := b.post("/console/webhooks", url.Values{"url": {"ftp://nope"}})
	if st != http.StatusBadRequest || !strings.Contains(body, "must be an absolute http or https URL") {
		t.Fatalf("bad URL: %d\n%s", st, body)
	}
	st, body, _ = b.post("/console/webhooks", url.Values{"url": {"https://hooks.acme.example/tg?token=chat-secret"}, "events": {"token.rotated", "token.expiring"}, "format": {"slack"}})
	wantStatus(t, "create", st, http.StatusCreated, body)
	if !regexp.MustCompile(`id="webhook-secret">tgw_[A-Za-z0-9]+<`).MatchString(body) || strings.Contains(body, "chat-secret") {
		t.Fatalf("created page:\n%s", body)
	}
	hooks, _ := e.svc.ListWebhooks(ctx, "acme")
	var own *tollgate.Webhook
	for _, h := range hooks {
		if h.ID != ops.ID {
			own = h
		}
	}
	if own == nil || own.Format != tollgate.WebhookSlack || len(own.Events) != 2 || own.ManagedBy != tollgate.ManagedByCustomer {
		t.Fatalf("stored webhook: %+v", own)
	}
	_, body, _ = b.get("/console/webhooks")
	if strings.Contains(body, `action="/console/webhooks/`+ops.ID+`/delete"`) || !strings.Contains(body, `action="/console/webhooks/`+own.ID+`/delete"`) {
		t.Fatal("Delete offered on the operator's webhook, or not on the account's own")
	}
	if st, _, _ := b.post("/console/webhooks/"+ops.ID+"/delete", nil); st != http.StatusForbidden {
		t.Fatalf("deleting the operator's webhook: %d", st)
	}
	st, _, h := b.post("/console/webhooks/"+own.ID+"/test", nil)
	if st != http.StatusSeeOther || h.Get("Location") != "/console/webhooks?done=tested" {
		t.Fatalf("test: %d %s", st, h.Get("Location"))
	}
	ds, _ := e.svc.ListDeliveries(ctx, "acme", 10)
	if len(ds) != 1 || ds[0].Event.Type != tollgate.EventWebhookTest {
		t.Fatalf("deliveries: %+v", ds)
	}
	_, body, _ = b.get("/console/webhooks?done=tested")
	if !strings.Contains(body, `data-delivery="`) || !strings.Contains(body, "webhook.test") || !strings.Contains(body, "Test event queued") {
		t.Fatalf("delivery log:\n%s", body)
	}
	if st, _, h := b.post("/console/deliveries/"+itoa(ds[0].ID)+"/redeliver", nil); st != http.StatusSeeOther || !strings.HasSuffix(h.Get("Location"), "redelivered") {
		t.Fatalf("redeliver: %d", st)
	}
	if st, _, _ := b.post("/console/deliveries/999999/redeliver", nil); st != http.StatusNotFound {
		t.Fatalf("redeliver of an unknown delivery: %d", st)
	}
	if st, _, _ := b.post("/console/webhooks/"+own.ID+"/delete", nil); st != http.StatusSeeOther {
		t.Fatalf("delete: %d", st)
	}
	for _, role := range []tollgate.Role{tollgate.RoleOperator, tollgate.RoleViewer} {
		o := e.signedIn(string(role)+"@acme.example", role)
		if st, _, _ := o.get("/console/webhooks"); st != http.StatusForbidden {
			t.Fatalf("%s opens the webhooks page: %d", role, st)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
