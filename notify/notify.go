// Package notify delivers the notification outbox (tollgate.Event and
// tollgate.Delivery, written by Service in the transaction of each
// change): webhooks, signed with HMAC-SHA256, and e-mail through SMTP.
//
// Every replica runs a Deliverer. Each tick it (1) sweeps for
// token.previous_secret_expired events, due by the clock rather than by a
// write (row locks make three replicas sweeping together write each once),
// then (2) claims due deliveries with a lease (FOR UPDATE SKIP LOCKED on
// PostgreSQL; SQLite's single writer does the same), sends each and writes
// the outcome. A replica killed mid-delivery leaves a lease that runs out;
// another replica sends the delivery again with the same idempotency key
// (the event id), so receivers that dedupe on it see every event once.
// Failures are retried with exponential back-off (30 s doubling, at most
// 1 h apart) for RetryFor (24 h), then given up. token.expiring and
// token.expired are written by Service.SweepExpiry, which the server runs
// on one replica per interval (tollgate.JobExpirySweep) rather than here
// on every replica's every tick.
//
// Webhook requests: POST, body the event JSON (tollgate.Payload, or
// {"text": ...} for the slack format), headers
//
//	Tollgate-Event: token.rotated
//	Tollgate-Idempotency-Key: evt_...
//	Tollgate-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "1767225600." + body)>
//
// Verify (docs/api.md has the snippet): recompute v1 over t + "." + the
// raw body with the webhook's secret, compare in constant time, and
// refuse a t too far from now. Secrets are never logged; a webhook URL is
// logged without its query (it may carry a chat service's token).
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/tollgate/tollgate"
)

// Options configure a Deliverer. Zero fields take defaults.
type Options struct {
	Service *tollgate.Service // sweeps, and Store and Keys for deliveries
	Logger  *slog.Logger
	Now     func() time.Time

	Interval time.Duration // between ticks (default 30s)
	Lease    time.Duration // how long a claim holds (default 2m)
	RetryFor time.Duration // how long to retry (default 24h)
	Batch    int           // deliveries claimed per round (default 20)
	// HTTP sends webhooks; nil builds one with a 10 s timeout that
	// refuses private addresses unless AllowPrivate.
	HTTP         *http.Client
	AllowPrivate bool
	SMTP         *SMTP  // nil: e-mail deliveries fail ("no SMTP server configured")
	ConsoleURL   string // link to a token card in e-mails
}

// Deliverer sends the outbox. Its methods start no goroutine but Run.
type Deliverer struct {
	o   Options
	svc *tollgate.Service
	log *slog.Logger
}

// New returns a Deliverer.
func New(o Options) (*Deliverer, error) {
	if o.Service == nil {
		return nil, errors.New("notify: a service is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 24 * time.Hour
	}
	if o.Batch <= 0 {
		o.Batch = 20
	}
	if o.HTTP == nil {
		o.HTTP = NewHTTPClient(o.AllowPrivate)
	}
	return &Deliverer{o: o, svc: o.Service, log: o.Logger}, nil
}

// NewHTTPClient returns the webhook client: 10 s per request, no
// redirects followed (a receiver that moves must be reconfigured), and,
// unless allowPrivate, no connection to a loopback, private, link-local
// or unspecified address (checked on the address dialled, after DNS).
func NewHTTPClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			a := ap.Addr().Unmap()
			if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() {
				return fmt.Errorf("notify: webhook address %s is not public", a)
			}
			return nil
		}
	}
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DialContext: d.DialContext, Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run ticks until ctx ends. Errors of one tick are logged, never fatal.
func (d *Deliverer) Run(ctx context.Context) error {
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for {
		if _, err := d.Tick(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("notify: tick failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick sweeps for ended previous secrets, then sends every due delivery
// it can claim. It says how many deliveries it attempted.
func (d *Deliverer) Tick(ctx context.Context) (int, error) {
	var errs []error
	if _, err := d.svc.SweepPreviousSecrets(ctx); err != nil {
		errs = append(errs, err)
	}
	n := 0
	for ctx.Err() == nil {
		var claimed []*tollgate.Delivery
		now := d.o.Now().UTC()
		err := d.svc.Store.Update(ctx, func(tx tollgate.Tx) (err error) {
			claimed, err = tx.ClaimDeliveries(ctx, now, now.Add(d.o.Lease), d.o.Batch)
			return err
		})
		if err != nil {
			errs = append(errs, err)
			break
		}
		if len(claimed) == 0 {
			break
		}
		for _, del := range claimed {
			d.deliver(ctx, del)
			n++
		}
	}
	return n, errors.Join(errs...)
}

// deliver sends one delivery and writes its outcome.
func (d *Deliverer) deliver(ctx context.Context, del *tollgate.Delivery) {
	code, err := d.send(ctx, del)
	now := d.o.Now().UTC()
	del.LastCode = code
	del.LastError = ""
	switch {
	case err == nil:
		del.Status, del.DeliveredAt, del.NextAttemptAt = tollgate.DeliveryDelivered, &now, now
	case errors.Is(err, errPermanent) || now.Sub(del.CreatedAt) >= d.o.RetryFor:
		del.Status, del.NextAttemptAt, del.LastError = tollgate.DeliveryFailed, now, err.Error()
	default:
		del.Status, del.NextAttemptAt, del.LastError = tollgate.DeliveryPending, now.Add(Backoff(del.Attempts)), err.Error()
	}
	if err != nil {
		d.log.Info("notify: delivery failed", "delivery", del.ID, "event", del.Event.Type, "channel", del.Channel,
			"code", code, "attempts", del.Attempts, "status", del.Status, "err", err)
	}
	// Written even if ctx ended (shutdown): the send happened.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.svc.Store.Update(wctx, func(tx tollgate.Tx) error { return tx.FinishDelivery(wctx, del) }); err != nil {
		// The lease runs out and it is sent again: at least once.
		d.log.Warn("notify: recording a delivery failed", "delivery", del.ID, "err", err)
	}
}

// Backoff is the wait after the given number of attempts: 30 s, doubling,
// at most an hour.
func Backoff(attempts int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < attempts && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

var errPermanent = errors.New("will not succeed on retry")

func (d *Deliverer) send(ctx context.Context, del *tollgate.Delivery) (int, error) {
	var p tollgate.Payload
	if err := json.Unmarshal(del.Event.Payload, &p); err != nil {
		return 0, fmt.Errorf("%w: undecodable event: %v", errPermanent, err)
	}
	switch del.Channel {
	case tollgate.ChannelWebhook:
		if del.Webhook == nil {
			return 0, fmt.Errorf("%w: the webhook was deleted", errPermanent)
		}
		secret, err := d.svc.Keys.Open(del.SealedSecret, del.Webhook.ID)
		if err != nil {
			return 0, fmt.Errorf("%w: the webhook's secret cannot be opened", errPermanent)
		}
		return d.sendWebhook(ctx, del, &p, secret)
	case tollgate.ChannelEmail:
		if d.o.SMTP == nil {
			return 0, fmt.Errorf("%w: no SMTP server configured", errPermanent)
		}
		return d.o.SMTP.Send(ctx, del.Target, Mail(&p, d.o.ConsoleURL))
	}
	return 0, fmt.Errorf("%w: unknown channel %q", errPermanent, del.Channel)
}

func (d *Deliverer) sendWebhook(ctx context.Context, del *tollgate.Delivery, p *tollgate.Payload, secret tollgate.Secret) (int, error) {
	body := del.Event.Payload
	if del.Webhook.Format == tollgate.WebhookSlack {
		m := Mail(p, d.o.ConsoleURL)
		body, _ = json.Marshal(map[string]string{"text": m.Subject + "\n" + m.Link})
	}
	ts := d.o.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, del.Webhook.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: bad webhook URL", errPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tollgate-webhook/1")
	req.Header.Set("Tollgate-Event", p.Type)
	req.Header.Set("Tollgate-Idempotency-Key", del.EventID)
	req.Header.Set("Tollgate-Delivery", strconv.FormatInt(del.ID, 10))
	req.Header.Set("Tollgate-Signature", Sign(secret, ts, body))
	resp, err := d.o.HTTP.Do(req)
	if err != nil {
		// The URL (with a possible token in its query) stays out of it.
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) {
			err = uerr.Unwrap()
		}
		return 0, fmt.Errorf("POST %s: %v", tollgate.RedactURL(del.Webhook.URL), err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("POST %s: %s", tollgate.RedactURL(del.Webhook.URL), resp.Status)
	}
	return resp.StatusCode, nil
}

// Sign returns the Tollgate-Signature header value for body sent at ts.
func Sign(secret tollgate.Secret, ts int64, body []byte) string {
	t := strconv.FormatInt(ts, 10)
	m := hmac.New(sha256.New, []byte(secret.Reveal())) // the key of the HMAC, never sent
	m.Write([]byte(t + "."))
	m.Write(body)
	return "t=" + t + ",v1=" + hex.EncodeToString(m.Sum(nil))
}
