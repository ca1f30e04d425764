package tollgate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Notifications go through a durable outbox: the Service writes an Event,
// and one Delivery per destination (a webhook of the account, or the
// e-mail address of one of its admins), in the same transaction as the
// change the event describes, so that a committed change always has its
// notification and a rolled-back one never does. Deliverers (package
// notify, on every replica) claim deliveries with a lease, send them and
// write the outcome; a replica killed mid-delivery leaves a lease that
// runs out, and another replica sends the delivery again, with the same
// idempotency key (the event id).

// Event types.
const (
	EventTokenExpiring         = "token.expiring"
	EventTokenExpired          = "token.expired"
	EventTokenCreated          = "token.created"
	EventTokenRevoked          = "token.revoked"
	EventTokenRotated          = "token.rotated"
	EventPreviousSecretExpired = "token.previous_secret_expired"
	EventTokenPaused           = "token.paused"
	// EventTokenRefused: a known token was refused at the edge (revoked,
	// expired, paused, outside its networks or restrictions, ...); at
	// most one per token an hour (RefusalEvery), across replicas.
	EventTokenRefused = "token.refused"
	// EventTokenNewNetwork: a token already used elsewhere was used from
	// a network (/24 or /64) for the first time (pull insight).
	EventTokenNewNetwork   = "token.new_network"
	EventPackagesRequested = "package_access.requested"
	EventPackagesGranted   = "package_access.granted"
	EventPackagesDenied    = "package_access.denied"
	// EventWebhookTest is what "test" sends to one webhook, whatever its
	// events filter; it is about no token.
	EventWebhookTest = "webhook.test"
)

// EventTypes lists the event types a webhook may subscribe to.
var EventTypes = []string{EventTokenExpiring, EventTokenExpired, EventTokenCreated, EventTokenRevoked, EventTokenRotated,
	EventPreviousSecretExpired, EventTokenPaused, EventTokenRefused, EventTokenNewNetwork,
	EventPackagesRequested, EventPackagesGranted, EventPackagesDenied}

// emailEvents are also sent by e-mail to the account's admins.
var emailEvents = []string{EventTokenExpiring, EventTokenExpired, EventPreviousSecretExpired}

// PayloadVersion is the version of the event JSON (Payload.Version).
const PayloadVersion = 1

// Event is one thing that happened, as notifications describe it.
type Event struct {
	ID        string // "evt_...": also the idempotency key of every delivery
	AccountID string
	Type      string
	// Key makes the event unique: a second event with the same Key is
	// not written (see InsertEvent). Empty: no such constraint.
	Key       string
	Payload   []byte // JSON of Payload
	CreatedAt time.Time
}

// Payload is the versioned JSON body of an event. It never holds a secret.
type Payload struct {
	Version   int          `json:"version"`
	ID        string       `json:"id"`
	Type      string       `json:"type"`
	CreatedAt time.Time    `json:"created_at"`
	Account   string       `json:"account"`
	Token     PayloadToken `json:"token,omitzero"` // absent for package_access.* and webhook.test
	// Threshold is, for token.expiring, how long before the expiry the
	// warning was due ("30d", "7d", "1d").
	Threshold string `json:"threshold,omitempty"`
	// Network is, for token.new_network, the network first seen.
	Network string `json:"network,omitempty"`
	// PackageAccess is, for package_access.*, the account's new state.
	PackageAccess string `json:"package_access,omitempty"`
	// Reason and Client are, for token.refused, why the edge refused the
	// token (an authz reason: "revoked", "paused", "address_not_allowed",
	// ...) and the client address it came from.
	Reason string `json:"reason,omitempty"`
	Client string `json:"client,omitempty"`
}

// PayloadToken is the token an event is about.
type PayloadToken struct {
	ID                 string     `json:"id"`
	Name               string     `json:"name"`
	ExpiresAt          *time.Time `json:"expires_at,omitempty"`
	SecretVersion      int        `json:"secret_version,omitempty"`
	PreviousValidUntil *time.Time `json:"previous_valid_until,omitempty"`
}

// Delivery channels and statuses.
const (
	ChannelWebhook = "webhook"
	ChannelEmail   = "email"

	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed" // given up (retries exhausted)
)

// Delivery is one event on its way to one destination.
type Delivery struct {
	ID            int64
	EventID       string
	AccountID     string
	Channel       string // ChannelWebhook or ChannelEmail
	Target        string // the webhook id, or the e-mail address
	Status        string
	Attempts      int
	NextAttemptAt time.Time
	LastCode      int    // HTTP status or SMTP reply code of the last attempt
	LastError     string // why the last attempt failed, for the delivery log
	CreatedAt     time.Time
	DeliveredAt   *time.Time

	// Filled by ClaimDeliveries: what the deliverer needs.
	Event   *Event
	Webhook *Webhook // ChannelWebhook only
	// SealedSecret is the webhook's signing secret, sealed with
	// Keys.Seal(secret, webhook id).
	SealedSecret []byte
}

// Webhook formats.
const (
	WebhookJSON  = "json"  // the Payload
	WebhookSlack = "slack" // {"text": "..."}, for chat channels
)

// Webhook is an account's HTTP endpoint for events.
type Webhook struct {
	ID        string // "wh_..."
	AccountID string
	URL       string
	Events    []string // empty: every event type
	Format    string
	// ManagedBy is ManagedByCustomer (the account's own people) or
	// ManagedByOperator (customers see it but cannot delete it).
	ManagedBy string
	CreatedAt time.Time
}

// Who manages a webhook.
const (
	ManagedByCustomer = "customer"
	ManagedByOperator = "operator"
)

// managerOf is who manages what actor creates.
func managerOf(actor string) string {
	if IsCustomerActor(actor) {
		return ManagedByCustomer
	}
	return ManagedByOperator
}

// Wants reports whether the webhook subscribes to the event type.
func (w *Webhook) Wants(typ string) bool { return len(w.Events) == 0 || slices.Contains(w.Events, typ) }

// OutboxTx is what notifications need of a transaction (embedded in Tx).
type OutboxTx interface {
	// InsertEvent writes e and reports true, or, if an event with the same
	// non-empty Key exists, writes nothing and reports false.
	InsertEvent(ctx context.Context, e *Event) (bool, error)
	// InsertDelivery writes d (Status pending) and sets d.ID.
	InsertDelivery(ctx context.Context, d *Delivery) error
	// ClaimDeliveries leases up to limit pending deliveries due at now and
	// not leased (or whose lease ran out) until leaseUntil, counting one
	// attempt each, and returns them with Event (and Webhook and
	// SealedSecret) filled. Concurrent claims never get the same delivery
	// while its lease runs (PostgreSQL: FOR UPDATE SKIP LOCKED).
	ClaimDeliveries(ctx context.Context, now, leaseUntil time.Time, limit int) ([]*Delivery, error)
	// FinishDelivery writes the outcome of an attempt (Status,
	// NextAttemptAt, LastCode, LastError, DeliveredAt) and ends the
	// lease. ENOTFOUND for an unknown id.
	FinishDelivery(ctx context.Context, d *Delivery) error
	// ListDeliveries returns the account's deliveries, newest first, at
	// most limit, with Event filled.
	ListDeliveries(ctx context.Context, accountID string, limit int) ([]*Delivery, error)
	// RedeliverDelivery makes the account's delivery pending again, due
	// at now. ENOTFOUND if the account has no such delivery.
	RedeliverDelivery(ctx context.Context, accountID string, id int64, now time.Time) error
	// InsertWebhook stores w with its sealed signing secret. ENOTFOUND
	// for an unknown account.
	InsertWebhook(ctx context.Context, w *Webhook, sealed []byte) error
	// ListWebhooks returns the account's webhooks, oldest first.
	ListWebhooks(ctx context.Context, accountID string) ([]*Webhook, error)
	// DeleteWebhook removes the account's webhook (its past deliveries
	// stay in the log). ENOTFOUND if the account has no such webhook.
	DeleteWebhook(ctx context.Context, accountID, id string) error
}

// emit writes the event about t and one delivery per destination that
// wants it, inside tx. A non-empty key makes it once-only: an event with
// that key already written is not written again, nor delivered.
func (s *Service) emit(ctx context.Context, tx Tx, a *Account, t *Token, typ string, now time.Time, key string) error {
	_, err := s.emitPayload(ctx, tx, a, t, Payload{Type: typ}, now, key)
	return err
}

// emitNewNetwork records that t was used from network for the first time.
func (s *Service) emitNewNetwork(ctx context.Context, tx Tx, a *Account, t *Token, network string, now time.Time) error {
	_, err := s.emitPayload(ctx, tx, a, t, Payload{Type: EventTokenNewNetwork, Network: network}, now, EventTokenNewNetwork+":"+t.ID+":"+network)
	return err
}

// emitPayload writes the event p (its Type and type-specific fields set;
// t nil for an event about no token) as emit does, saying whether it was
// new.
func (s *Service) emitPayload(ctx context.Context, tx Tx, a *Account, t *Token, p Payload, now time.Time, key string) (bool, error) {
	typ := p.Type
	ev := &Event{ID: NewID("evt_"), AccountID: a.ID, Type: typ, Key: key, CreatedAt: now}
	p.Version, p.ID, p.CreatedAt, p.Account = PayloadVersion, ev.ID, now, a.Name
	if t != nil {
		p.Token = PayloadToken{ID: t.ID, Name: t.Name, ExpiresAt: t.ExpiresAt, SecretVersion: t.SecretVersion}
		if t.Previous != nil {
			until := t.Previous.ValidUntil
			p.Token.PreviousValidUntil = &until
		}
	}
	body, err := json.Marshal(p)
	if err != nil {
		return false, Internal(err)
	}
	ev.Payload = body
	inserted, err := tx.InsertEvent(ctx, ev)
	if err != nil || !inserted {
		return false, err
	}
	hooks, err := tx.ListWebhooks(ctx, a.ID)
	if err != nil {
		return false, err
	}
	for _, w := range hooks {
		if !w.Wants(typ) {
			continue
		}
		if err := insertWebhookDelivery(ctx, tx, ev, w.ID); err != nil {
			return false, err
		}
	}
	if !slices.Contains(emailEvents, typ) {
		return true, nil
	}
	users, err := tx.ListUsers(ctx, a.ID)
	if err != nil {
		return false, err
	}
	for _, u := range users {
		if u.Role != RoleAdmin {
			continue
		}
		if err := tx.InsertDelivery(ctx, &Delivery{EventID: ev.ID, AccountID: a.ID, Channel: ChannelEmail, Target: u.Email,
			Status: DeliveryPending, NextAttemptAt: now, CreatedAt: now}); err != nil {
			return false, err
		}
	}
	return true, nil
}

func insertWebhookDelivery(ctx context.Context, tx Tx, ev *Event, webhookID string) error {
	return tx.InsertDelivery(ctx, &Delivery{EventID: ev.ID, AccountID: ev.AccountID, Channel: ChannelWebhook, Target: webhookID,
		Status: DeliveryPending, NextAttemptAt: ev.CreatedAt, CreatedAt: ev.CreatedAt})
}

// tokenEventOf is the notification of a token audit action, if it has one.
var tokenEventOf = map[string]string{
	ActionTokenCreated: EventTokenCreated,
	ActionTokenRevoked: EventTokenRevoked,
	ActionTokenPaused:  EventTokenPaused,
}

// packageEventOf is the notification of a package access audit action.
var packageEventOf = map[string]string{
	ActionPackagesRequested: EventPackagesRequested,
	ActionPackagesGranted:   EventPackagesGranted,
	ActionPackagesDenied:    EventPackagesDenied,
}

// emitAction writes the notification of the audit action about t, if
// the action has one.
func (s *Service) emitAction(ctx context.Context, tx Tx, a *Account, t *Token, action string, now time.Time) error {
	typ, ok := tokenEventOf[action]
	if !ok {
		return nil
	}
	return s.emit(ctx, tx, a, t, typ, now, "")
}

// RefusalEvery is how often at most token.refused is written per token.
const RefusalEvery = time.Hour

// RecordRefusal writes token.refused for a known token the edge refused
// at, for reason (an authz reason), from client (an address): once per
// token per RefusalEvery hour window, however many replicas refuse it
// how often. It says whether it wrote one. ENOTFOUND for an unknown
// token.
func (s *Service) RecordRefusal(ctx context.Context, tokenID, reason, client string, at time.Time) (bool, error) {
	var wrote bool
	err := s.Store.Update(ctx, func(tx Tx) error {
		t, err := tx.TokenByID(ctx, tokenID)
		if err != nil {
			return tokenNotFound(err, tokenID)
		}
		a, err := tx.AccountByID(ctx, t.AccountID, false)
		if err != nil {
			return err
		}
		at := at.UTC().Truncate(time.Microsecond)
		window := at.Truncate(RefusalEvery).Format(time.RFC3339)
		wrote, err = s.emitPayload(ctx, tx, a, t, Payload{Type: EventTokenRefused, Reason: reason, Client: client}, at,
			EventTokenRefused+":"+t.ID+":"+window)
		return err
	})
	return wrote, err
}

// DefaultExpiryThresholds are when token.expiring is sent: 30, 7 and 1
// days before the expiry.
var DefaultExpiryThresholds = []time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}

// expiredLookback bounds how long after an expiry token.expired is still
// sent: a token that expired before notifications existed is not news.
const expiredLookback = 7 * 24 * time.Hour

// SweepExpiry writes token.expiring and token.expired events that are
// due at now: for each token, the tightest threshold it has crossed
// (so a token created 2 days before its expiry gets the 7-day warning,
// not the 30-day one too), and token.expired once it has expired. Each is
// written once per token, threshold and expiry date, however many
// replicas sweep and however often (an extended expiry warns anew). It
// says how many events it wrote.
func (s *Service) SweepExpiry(ctx context.Context, thresholds []time.Duration) (int, error) {
	if len(thresholds) == 0 {
		thresholds = DefaultExpiryThresholds
	}
	ths := slices.Clone(thresholds)
	slices.Sort(ths)
	now := s.now()
	var after ExpiryCursor
	n := 0
	for {
		page, more, err := s.sweepExpiryPage(ctx, ths, now, &after)
		n += page
		if err != nil || !more {
			return n, err
		}
	}
}

// defaultExpiryPage is how many tokens one transaction of SweepExpiry
// reads (Service.ExpiryPage).
const defaultExpiryPage = 500

// sweepExpiryPage sweeps the tokens after *after, one page of them in one
// transaction, moves *after past them, and says how many events it wrote
// and whether there may be more.
func (s *Service) sweepExpiryPage(ctx context.Context, ths []time.Duration, now time.Time, after *ExpiryCursor) (n int, more bool, err error) {
	size := s.ExpiryPage
	if size <= 0 {
		size = defaultExpiryPage
	}
	var next ExpiryCursor
	err = s.Store.Update(ctx, func(tx Tx) error {
		n, next = 0, *after // a retried transaction starts anew
		toks, err := tx.TokensExpiringBy(ctx, now.Add(-expiredLookback), now.Add(ths[len(ths)-1]), *after, size)
		if err != nil {
			return err
		}
		more = len(toks) == size
		if len(toks) > 0 {
			last := toks[len(toks)-1]
			next = ExpiryCursor{At: *last.ExpiresAt, ID: last.ID}
		}
		accts := map[string]*Account{}
		for _, t := range toks {
			a := accts[t.AccountID]
			if a == nil {
				if a, err = tx.AccountByID(ctx, t.AccountID, false); err != nil {
					return err
				}
				accts[t.AccountID] = a
			}
			exp := t.ExpiresAt.UTC().Format(time.RFC3339)
			if t.Expired(now) {
				before, err := s.countEvent(ctx, tx, a, t, EventTokenExpired, now, fmt.Sprintf("%s:%s:%s", EventTokenExpired, t.ID, exp), "")
				if err != nil {
					return err
				}
				n += before
				continue
			}
			left := t.ExpiresAt.Sub(now)
			for _, th := range ths {
				if left > th {
					continue
				}
				label := FormatDays(th)
				c, err := s.countEvent(ctx, tx, a, t, EventTokenExpiring, now,
					fmt.Sprintf("%s:%s:%s:%s", EventTokenExpiring, t.ID, label, exp), label)
				if err != nil {
					return err
				}
				n += c
				break
			}
		}
		return nil
	})
	if err == nil {
		*after = next
	}
	return n, more, err
}

// countEvent emits and says 1 if the event was new.
func (s *Service) countEvent(ctx context.Context, tx Tx, a *Account, t *Token, typ string, now time.Time, key, threshold string) (int, error) {
	inserted, err := s.emitPayload(ctx, tx, a, t, Payload{Type: typ, Threshold: threshold}, now, key)
	if inserted {
		return 1, err
	}
	return 0, err
}

// FormatDays writes a duration as whole days ("7d") when it is one, else
// as Go does.
func FormatDays(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// WebhookCreate is the input of CreateWebhook.
type WebhookCreate struct {
	Account string
	URL     string
	Events  []string // empty: all
	Format  string   // "" means json
}

// CreateWebhook adds a webhook to the account and returns its signing
// secret, once (deliveries are signed with it, see package notify).
//
// Errors: EINVALID naming the field; ENOTFOUND for the account;
// EFORBIDDEN for a customer of a suspended account.
func (s *Service) CreateWebhook(ctx context.Context, actor string, in WebhookCreate) (*Webhook, Secret, error) {
	if err := ValidateWebhookURL(in.URL); err != nil {
		return nil, "", err
	}
	for _, e := range in.Events {
		if !slices.Contains(EventTypes, e) {
			return nil, "", FieldError("events", "unknown event %q (want one of %s)", e, strings.Join(EventTypes, ", "))
		}
	}
	switch in.Format {
	case "":
		in.Format = WebhookJSON
	case WebhookJSON, WebhookSlack:
	default:
		return nil, "", FieldError("format", "must be json or slack")
	}
	w := &Webhook{ID: NewID("wh_"), URL: in.URL, Events: dedupe(in.Events), Format: in.Format, ManagedBy: managerOf(actor), CreatedAt: s.now()}
	secret := NewSecret(WebhookSecretPrefix)
	err := s.Store.Update(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, in.Account, true)
		if err != nil {
			return accountNotFound(err, in.Account)
		}
		if err := checkSuspended(actor, a); err != nil {
			return err
		}
		w.AccountID = a.ID
		if err := tx.InsertWebhook(ctx, w, s.Keys.Seal(secret, w.ID)); err != nil {
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: w.CreatedAt, Actor: actor, Action: ActionWebhookCreated, Target: w.ID,
			Changes: map[string]Change{"url": {To: RedactURL(w.URL)}, "events": {To: strings.Join(w.Events, ",")}, "format": {To: w.Format},
				"managed_by": {To: w.ManagedBy}}})
	})
	if err != nil {
		return nil, "", err
	}
	return w, secret, nil
}

// WebhookSecretPrefix starts a webhook signing secret.
const WebhookSecretPrefix = "tgw_"

// Audit actions of webhooks.
const (
	ActionWebhookCreated = "webhook.created"
	ActionWebhookDeleted = "webhook.deleted"
	ActionWebhookTested  = "webhook.tested"
	ActionRedelivered    = "webhook.redelivered"
)

// ValidateWebhookURL: an absolute http or https URL without user info.
func ValidateWebhookURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return FieldError("url", "must be an absolute http or https URL")
	}
	if u.User != nil {
		return FieldError("url", "must not carry user info; deliveries are signed instead")
	}
	if len(v) > 2000 {
		return FieldError("url", "must be at most 2000 characters")
	}
	return checkNoControl("url", v)
}

// RedactURL drops a URL's query and user info (they may carry a chat
// service's token) for the audit log and the console.
func RedactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "[invalid URL]"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// ListWebhooks returns the account's webhooks.
func (s *Service) ListWebhooks(ctx context.Context, account string) ([]*Webhook, error) {
	var out []*Webhook
	err := s.Store.View(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, account, false)
		if err != nil {
			return accountNotFound(err, account)
		}
		out, err = tx.ListWebhooks(ctx, a.ID)
		return err
	})
	return out, err
}

// DeleteWebhook removes the account's webhook. Its deliveries stay in
// the log; those still pending fail ("the webhook was deleted").
//
// Errors: ENOTFOUND; EFORBIDDEN for a customer and a webhook the
// operator manages.
func (s *Service) DeleteWebhook(ctx context.Context, actor, account, id string) error {
	return s.Store.Update(ctx, func(tx Tx) error {
		a, w, err := lockWebhook(ctx, tx, account, id)
		if err != nil {
			return err
		}
		if w.ManagedBy == ManagedByOperator && IsCustomerActor(actor) {
			return Errorf(EFORBIDDEN, "webhook %s is managed by the registry's operator; ask them to remove it", id)
		}
		if err := tx.DeleteWebhook(ctx, a.ID, id); err != nil {
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: s.now(), Actor: actor, Action: ActionWebhookDeleted, Target: id,
			Changes: map[string]Change{"url": {From: RedactURL(w.URL)}}})
	})
}

// lockWebhook locks the account and finds its webhook (ENOTFOUND).
func lockWebhook(ctx context.Context, tx Tx, account, id string) (*Account, *Webhook, error) {
	a, err := tx.AccountByName(ctx, account, true)
	if err != nil {
		return nil, nil, accountNotFound(err, account)
	}
	hooks, err := tx.ListWebhooks(ctx, a.ID)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range hooks {
		if w.ID == id {
			return a, w, nil
		}
	}
	return nil, nil, Errorf(ENOTFOUND, "webhook %s not found", id)
}

// TestWebhook sends a webhook.test event to the account's webhook alone
// (whatever its events filter), through the outbox like any event, and
// returns the delivery: its outcome shows in the delivery log once a
// deliverer has sent it.
//
// Errors: ENOTFOUND.
func (s *Service) TestWebhook(ctx context.Context, actor, account, id string) (*Delivery, error) {
	var d *Delivery
	err := s.Store.Update(ctx, func(tx Tx) error {
		a, w, err := lockWebhook(ctx, tx, account, id)
		if err != nil {
			return err
		}
		now := s.now()
		ev := &Event{ID: NewID("evt_"), AccountID: a.ID, Type: EventWebhookTest, CreatedAt: now}
		if ev.Payload, err = json.Marshal(Payload{Version: PayloadVersion, ID: ev.ID, Type: EventWebhookTest, CreatedAt: now, Account: a.Name}); err != nil {
			return Internal(err)
		}
		if _, err := tx.InsertEvent(ctx, ev); err != nil {
			return err
		}
		d = &Delivery{EventID: ev.ID, AccountID: a.ID, Channel: ChannelWebhook, Target: w.ID, Status: DeliveryPending,
			NextAttemptAt: now, CreatedAt: now, Event: ev, Webhook: w}
		if err := tx.InsertDelivery(ctx, d); err != nil {
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: actor, Action: ActionWebhookTested, Target: w.ID,
			Changes: map[string]Change{"delivery": {To: strconv.FormatInt(d.ID, 10)}}})
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// ListDeliveries returns the account's most recent deliveries (at most
// 200), newest first.
func (s *Service) ListDeliveries(ctx context.Context, account string, limit int) ([]*Delivery, error) {
	if limit <= 0 || limit > 200 {
		limit = 200
	}
	var out []*Delivery
	err := s.Store.View(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, account, false)
		if err != nil {
			return accountNotFound(err, account)
		}
		out, err = tx.ListDeliveries(ctx, a.ID, limit)
		return err
	})
	return out, err
}

// Redeliver sends the account's delivery again, with the same
// idempotency key, as soon as a deliverer picks it up (ENOTFOUND).
func (s *Service) Redeliver(ctx context.Context, actor, account string, id int64) error {
	return s.Store.Update(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, account, false)
		if err != nil {
			return accountNotFound(err, account)
		}
		now := s.now()
		if err := tx.RedeliverDelivery(ctx, a.ID, id, now); err != nil {
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: actor, Action: ActionRedelivered,
			Target: strconv.FormatInt(id, 10)})
	})
}

// Decode reads the event's payload.
func (e *Event) Decode() (*Payload, error) {
	var p Payload
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return nil, Internal(err)
	}
	return &p, nil
}
