package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// Webhooks and the delivery log of an account (see package notify for
// what a delivery looks like on the wire, docs/webhooks.md for receivers).
// The operator and the account's own key manage them; a customer cannot
// delete a webhook the operator manages.

// Webhook is an account's endpoint for events. The URL is shown without
// its query (it may carry a chat service's token); the signing secret
// only once, in WebhookCreated.
type Webhook struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"` // empty: every event type
	Format    string    `json:"format"` // json or slack
	ManagedBy string    `json:"managed_by"`
	CreatedAt time.Time `json:"created_at"`
}

// WebhookCreated answers POST /accounts/{name}/webhooks: the webhook and
// its signing secret, shown this once.
type WebhookCreated struct {
	Webhook
	Secret string `json:"secret"`
}

// CreateWebhookRequest is the body of POST /accounts/{name}/webhooks.
type CreateWebhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events,omitempty"`
	Format string   `json:"format,omitempty"`
}

// WebhookList answers GET /accounts/{name}/webhooks.
type WebhookList struct {
	Webhooks []Webhook `json:"webhooks"`
	// EventTypes are the event types a webhook may subscribe to.
	EventTypes []string `json:"event_types"`
}

// Delivery is one event on its way to one destination: the delivery log.
type Delivery struct {
	ID             int64      `json:"id"`
	IdempotencyKey string     `json:"idempotency_key"` // the event id, the same on every attempt
	Event          string     `json:"event"`
	Token          string     `json:"token,omitempty"` // the token's name
	Channel        string     `json:"channel"`         // webhook or email
	Target         string     `json:"target"`          // the webhook id or the e-mail address
	URL            string     `json:"url,omitempty"`   // the webhook's, without its query
	Status         string     `json:"status"`          // pending, delivered, failed
	Attempts       int        `json:"attempts"`
	LastCode       int        `json:"last_code"` // HTTP status or SMTP reply code; 0 none
	LastError      string     `json:"last_error,omitempty"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"` // null unless pending
	CreatedAt      time.Time  `json:"created_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
}

// DeliveryList answers GET /accounts/{name}/deliveries.
type DeliveryList struct {
	Deliveries []Delivery `json:"deliveries"`
}

// FromWebhook is the wire form of w.
func FromWebhook(w *tollgate.Webhook) Webhook {
	return Webhook{ID: w.ID, URL: tollgate.RedactURL(w.URL), Events: nonNil(w.Events), Format: w.Format, ManagedBy: w.ManagedBy, CreatedAt: wireTime(w.CreatedAt)}
}

// FromDelivery is the wire form of d.
func FromDelivery(d *tollgate.Delivery) Delivery {
	out := Delivery{ID: d.ID, IdempotencyKey: d.EventID, Channel: d.Channel, Target: d.Target, Status: d.Status,
		Attempts: d.Attempts, LastCode: d.LastCode, LastError: d.LastError, CreatedAt: wireTime(d.CreatedAt), DeliveredAt: utcPtr(d.DeliveredAt)}
	if d.Event != nil {
		out.Event = d.Event.Type
		if p, err := d.Event.Decode(); err == nil {
			out.Token = p.Token.Name
		}
	}
	if d.Webhook != nil {
		out.URL = tollgate.RedactURL(d.Webhook.URL)
	}
	if d.Status == tollgate.DeliveryPending {
		out.NextAttemptAt = utcPtr(&d.NextAttemptAt)
	}
	return out
}

func (s *Server) webhookRoutes() []route {
	const p = "/api/v1/accounts/{name}"
	return []route{
		{"GET", p + "/webhooks", false, s.listWebhooks},
		{"POST", p + "/webhooks", false, s.createWebhook},
		{"DELETE", p + "/webhooks/{id}", false, s.deleteWebhook},
		{"POST", p + "/webhooks/{id}/test", false, s.testWebhook},
		{"GET", p + "/deliveries", false, s.listDeliveries},
		{"POST", p + "/deliveries/{id}/redeliver", false, s.redeliver},
	}
}

// ownAccount is the {name} of r, if who may act on it.
func ownAccount(r *http.Request, who *actor) (string, error) {
	name := r.PathValue("name")
	return name, account(who, name)
}

func (s *Server) listWebhooks(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	hooks, err := s.Service.ListWebhooks(r.Context(), name)
	if err != nil {
		return 0, nil, err
	}
	out := WebhookList{Webhooks: []Webhook{}, EventTypes: tollgate.EventTypes}
	for _, w := range hooks {
		out.Webhooks = append(out.Webhooks, FromWebhook(w))
	}
	return http.StatusOK, out, nil
}

func (s *Server) createWebhook(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	var in CreateWebhookRequest
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	w, secret, err := s.Service.CreateWebhook(r.Context(), who.name, tollgate.WebhookCreate{Account: name, URL: in.URL, Events: in.Events, Format: in.Format})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, WebhookCreated{Webhook: FromWebhook(w), Secret: secret.Reveal()}, nil // shown once, to its creator
}

func (s *Server) deleteWebhook(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	if err := s.Service.DeleteWebhook(r.Context(), who.name, name, r.PathValue("id")); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct{}{}, nil
}

func (s *Server) testWebhook(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	d, err := s.Service.TestWebhook(r.Context(), who.name, name, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, FromDelivery(d), nil
}

func (s *Server) listDeliveries(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 200 {
			return 0, nil, tollgate.FieldError("limit", "must be an integer from 1 to 200")
		}
	}
	ds, err := s.Service.ListDeliveries(r.Context(), name, limit)
	if err != nil {
		return 0, nil, err
	}
	out := DeliveryList{Deliveries: []Delivery{}}
	for _, d := range ds {
		out.Deliveries = append(out.Deliveries, FromDelivery(d))
	}
	return http.StatusOK, out, nil
}

func (s *Server) redeliver(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, nil, tollgate.Errorf(tollgate.ENOTFOUND, "delivery %s not found", r.PathValue("id"))
	}
	if err := s.Service.Redeliver(r.Context(), who.name, name, id); err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, struct{}{}, nil
}

func accountPath(account, rest string) string {
	return "accounts/" + url.PathEscape(account) + "/" + rest
}

// ListWebhooks lists the account's webhooks.
func (c *Client) ListWebhooks(ctx context.Context, account string) (*WebhookList, error) {
	var out WebhookList
	return &out, c.do(ctx, "GET", accountPath(account, "webhooks"), nil, nil, &out)
}

// CreateWebhook adds a webhook; the answer holds its signing secret, once.
func (c *Client) CreateWebhook(ctx context.Context, account string, in CreateWebhookRequest) (*WebhookCreated, error) {
	var out WebhookCreated
	return &out, c.do(ctx, "POST", accountPath(account, "webhooks"), nil, in, &out)
}

// DeleteWebhook removes the account's webhook.
func (c *Client) DeleteWebhook(ctx context.Context, account, id string) error {
	return c.do(ctx, "DELETE", accountPath(account, "webhooks/"+url.PathEscape(id)), nil, nil, nil)
}

// TestWebhook queues a webhook.test event for the webhook alone.
func (c *Client) TestWebhook(ctx context.Context, account, id string) (*Delivery, error) {
	var out Delivery
	return &out, c.do(ctx, "POST", accountPath(account, "webhooks/"+url.PathEscape(id)+"/test"), nil, nil, &out)
}

// ListDeliveries returns the account's delivery log, newest first (limit
// 0: the server's default, 200).
func (c *Client) ListDeliveries(ctx context.Context, account string, limit int) (*DeliveryList, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out DeliveryList
	return &out, c.do(ctx, "GET", accountPath(account, "deliveries"), q, nil, &out)
}

// Redeliver sends a delivery again, with the same idempotency key.
func (c *Client) Redeliver(ctx context.Context, account string, id int64) error {
	return c.do(ctx, "POST", accountPath(account, "deliveries/"+strconv.FormatInt(id, 10)+"/redeliver"), nil, nil, nil)
}
