package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate"
)

// The Webhooks page (admins): the account's webhooks (create, delete,
// test) and the delivery log with redeliver. Every rule is Service's:
// a customer cannot delete the operator's webhook, the URL is checked,
// each change is audited.

type webhookView struct {
	ID, URL, Events, Format, Created string
	Operator                         bool // managed by the operator: no Delete here
}

type deliveryView struct {
	ID                                   int64
	Event, Token, To, Status, Code       string
	Attempts                             int
	Next, Created, Error, IdempotencyKey string
}

func (c *Console) webhooksPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Webhooks")
	v.Flash = webhookFlashes[r.URL.Query().Get("done")]
	c.renderWebhooks(w, r, s, v, http.StatusOK)
}

var webhookFlashes = map[string]string{
	"deleted":     "Webhook deleted. Its past deliveries stay in the log.",
	"tested":      "Test event queued: its delivery shows below within a minute.",
	"redelivered": "Delivery queued again, with the same idempotency key.",
}

func (c *Console) renderWebhooks(w http.ResponseWriter, r *http.Request, s *session, v *view, status int) {
	hooks, err := c.Service.ListWebhooks(r.Context(), s.account.Name)
	if err == nil {
		var ds []*tollgate.Delivery
		if ds, err = c.Service.ListDeliveries(r.Context(), s.account.Name, 50); err == nil {
			v.Deliveries = deliveryViews(ds)
		}
	}
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	for _, h := range hooks {
		events := "all events"
		if len(h.Events) > 0 {
			events = strings.Join(h.Events, ", ")
		}
		v.Webhooks = append(v.Webhooks, webhookView{ID: h.ID, URL: tollgate.EscapeText(tollgate.RedactURL(h.URL)), Events: events, Format: h.Format,
			Created: fmtTime(h.CreatedAt), Operator: h.ManagedBy == tollgate.ManagedByOperator})
	}
	v.EventTypes = tollgate.EventTypes
	c.render(w, r, status, "webhooks", v)
}

func deliveryViews(ds []*tollgate.Delivery) []deliveryView {
	out := make([]deliveryView, 0, len(ds))
	for _, d := range ds {
		dv := deliveryView{ID: d.ID, Event: d.Event.Type, To: d.Target, Status: d.Status, Code: "-", Attempts: d.Attempts,
			Created: fmtTime(d.CreatedAt), Error: tollgate.EscapeText(d.LastError), IdempotencyKey: d.EventID, Next: "-"}
		if p, err := d.Event.Decode(); err == nil {
			dv.Token = tollgate.EscapeText(p.Token.Name)
		}
		if d.Webhook != nil {
			dv.To = tollgate.EscapeText(tollgate.RedactURL(d.Webhook.URL))
		}
		if d.LastCode != 0 {
			dv.Code = strconv.Itoa(d.LastCode)
		}
		if d.Status == tollgate.DeliveryPending {
			dv.Next = fmtTime(d.NextAttemptAt)
		}
		out = append(out, dv)
	}
	return out
}

func (c *Console) createWebhook(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Webhooks")
	in := tollgate.WebhookCreate{Account: s.account.Name, URL: strings.TrimSpace(r.PostFormValue("url")), Format: r.PostFormValue("format"),
		Events: r.PostForm["events"]}
	v.Form["url"], v.Form["format"] = in.URL, in.Format
	hook, secret, err := c.Service.CreateWebhook(r.Context(), s.actor(), in)
	if err != nil {
		c.renderWebhooks(w, r, s, v, c.formError(r, v, err))
		return
	}
	v.Flash = "Webhook " + hook.ID + " created. Copy its signing secret now: it is not shown again."
	v.NewSecret = secret.Reveal() // shown once, to the admin who created it
	v.Form = map[string]string{}
	c.renderWebhooks(w, r, s, v, http.StatusCreated)
}

func (c *Console) deleteWebhook(w http.ResponseWriter, r *http.Request, s *session) {
	c.webhookAction(w, r, s, c.Service.DeleteWebhook(r.Context(), s.actor(), s.account.Name, r.PathValue("id")), "deleted")
}

func (c *Console) testWebhook(w http.ResponseWriter, r *http.Request, s *session) {
	_, err := c.Service.TestWebhook(r.Context(), s.actor(), s.account.Name, r.PathValue("id"))
	c.webhookAction(w, r, s, err, "tested")
}

func (c *Console) redeliver(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		err = tollgate.Errorf(tollgate.ENOTFOUND, "delivery %s not found", r.PathValue("id"))
	} else {
		err = c.Service.Redeliver(r.Context(), s.actor(), s.account.Name, id)
	}
	c.webhookAction(w, r, s, err, "redelivered")
}

// webhookAction goes back to the page after a write, or shows its error.
func (c *Console) webhookAction(w http.ResponseWriter, r *http.Request, s *session, err error, done string) {
	if err != nil {
		v := c.base(s, "Webhooks")
		v.Error = c.errText(r, err)
		c.renderWebhooks(w, r, s, v, statusOf(err))
		return
	}
	http.Redirect(w, r, "/console/webhooks?done="+done, http.StatusSeeOther)
}
