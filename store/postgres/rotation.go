package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/codec"
)

// Rotation and the notification outbox (migration 0006).

const rotationColumns = `t.secret_version, t.secret_hash, t.prev_secret_hash, t.prev_version, t.prev_rotated_at,
	t.prev_valid_until, t.prev_expired_noted, t.prev_last_used_at, t.prev_last_used_ip, t.prev_last_used_ua`

// rotationScan holds the rotation columns of a token row.
type rotationScan struct {
	version               int
	hash, prevHash        []byte
	prevVersion           *int
	rotatedAt, validUntil *time.Time
	prevLU                *time.Time
	noted                 bool
	prevIP, prevUA        string
}

func (r *rotationScan) dest() []any {
	return []any{&r.version, &r.hash, &r.prevHash, &r.prevVersion, &r.rotatedAt, &r.validUntil, &r.noted, &r.prevLU, &r.prevIP, &r.prevUA}
}

func (r *rotationScan) fill(t *tollgate.Token) {
	t.SecretVersion, t.SecretHash = r.version, r.hash
	if len(r.prevHash) == 0 || r.validUntil == nil || r.rotatedAt == nil || r.prevVersion == nil {
		return
	}
	t.Previous = &tollgate.PreviousSecret{
		Hash: r.prevHash, Version: *r.prevVersion,
		RotatedAt: r.rotatedAt.UTC(), ValidUntil: r.validUntil.UTC(), ExpiredNoted: r.noted,
		LastUsedAt: utcPtr(r.prevLU), LastUsedIP: r.prevIP, LastUsedUA: r.prevUA,
	}
}

func (t *tx) RotateTokenSecret(ctx context.Context, id string, hash, sealed []byte, at, validUntil time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	// Every right-hand side reads the row as it was: prev_* take the old
	// current secret's values.
	tag, err := t.guardedExec(ctx, `
		UPDATE tokens SET
			prev_secret_hash = secret_hash, prev_version = secret_version,
			prev_rotated_at = $1, prev_valid_until = $2, prev_expired_noted = false,
			prev_last_used_at = last_used_at, prev_last_used_ip = last_used_ip, prev_last_used_ua = last_used_ua,
			secret_hash = $3, secret_sealed = $4, secret_version = secret_version + 1, updated_at = $1
		WHERE id = $5`,
		utc(at), utc(validUntil), hash, codec.NullBytes(sealed), id)
	return affectedOne(tag, err, "token not found", "a token with this secret already exists")
}

// PreviousSecretsEnded skips rows another transaction holds: that one is
// noting them.
func (t *tx) PreviousSecretsEnded(ctx context.Context, now time.Time, limit int) ([]*tollgate.Token, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	ids, err := t.ids(ctx, `
		UPDATE tokens SET prev_expired_noted = true
		WHERE id IN (SELECT id FROM tokens
			WHERE prev_valid_until IS NOT NULL AND prev_valid_until <= $1 AND NOT prev_expired_noted
			ORDER BY prev_valid_until LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING id`, utc(now), limit)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	return t.tokens(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = ANY($1) ORDER BY t.prev_valid_until, t.id`, ids)
}

func (t *tx) TokensExpiringBy(ctx context.Context, since, by time.Time, after tollgate.ExpiryCursor, limit int) ([]*tollgate.Token, error) {
	var lo any
	if !since.IsZero() {
		lo = utc(since)
	}
	return t.tokens(ctx, `SELECT `+tokenColumns+tokenFrom+`
		WHERE t.revoked_at IS NULL AND t.trust_policy_id IS NULL AND t.expires_at IS NOT NULL
			AND ($1::timestamptz IS NULL OR t.expires_at >= $1) AND t.expires_at <= $2
			AND ($4::text = '' OR (t.expires_at, t.id COLLATE "C") > ($5::timestamptz, $4::text COLLATE "C"))
		ORDER BY t.expires_at, t.id COLLATE "C" LIMIT $3`, lo, utc(by), limit, after.ID, utc(after.At))
}

func (t *tx) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, dbError(err, "", "")
}

func (t *tx) tokens(ctx context.Context, query string, args ...any) ([]*tollgate.Token, error) {
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.Token
	for rows.Next() {
		tok, err := scanToken(rows)
		if err != nil {
			return nil, dbError(err, "", "")
		}
		out = append(out, tok)
	}
	return out, dbError(rows.Err(), "", "")
}

// queuePreviousUse moves the previous secret's last-use data forward.
func queuePreviousUse(b *pgx.Batch, u tollgate.TokenUsage) {
	b.Queue(`
		UPDATE tokens SET
			prev_last_used_ip = CASE WHEN prev_last_used_at IS NULL OR prev_last_used_at <= $1 THEN $2 ELSE prev_last_used_ip END,
			prev_last_used_ua = CASE WHEN prev_last_used_at IS NULL OR prev_last_used_at <= $1 THEN $3 ELSE prev_last_used_ua END,
			prev_last_used_at = GREATEST(prev_last_used_at, $1)
		WHERE id = $4 AND prev_secret_hash IS NOT NULL`,
		utc(u.At), u.IP, u.UA, u.TokenID)
}

func (t *tx) InsertEvent(ctx context.Context, e *tollgate.Event) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	var key any
	if e.Key != "" {
		key = e.Key
	}
	// A concurrent insert of the same key waits for the other
	// transaction, then does nothing if it committed.
	tag, err := t.guardedExec(ctx, `
		INSERT INTO events (id, account_id, type, dedupe_key, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (dedupe_key) DO NOTHING`,
		e.ID, e.AccountID, e.Type, key, string(e.Payload), utc(e.CreatedAt))
	if err != nil {
		return false, dbError(err, "", "an event with this id exists")
	}
	return tag.RowsAffected() == 1, nil
}

func (t *tx) InsertDelivery(ctx context.Context, d *tollgate.Delivery) error {
	if err := t.writable(); err != nil {
		return err
	}
	err := t.q.QueryRow(ctx, `
		INSERT INTO deliveries (event_id, account_id, channel, target, status, next_attempt_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		d.EventID, d.AccountID, d.Channel, d.Target, tollgate.DeliveryPending, utc(d.NextAttemptAt), utc(d.CreatedAt)).Scan(&d.ID)
	return dbError(err, "event not found", "")
}

const deliveryColumns = `d.id, d.event_id, d.account_id, d.channel, d.target, d.status, d.attempts, d.next_attempt_at,
	d.last_code, d.last_error, d.created_at, d.delivered_at, e.type, e.dedupe_key, e.payload, e.created_at,
	w.id, w.url, w.events, w.format, w.secret_sealed, w.created_at, w.managed_by`

const deliveryFrom = ` FROM deliveries d JOIN events e ON e.id = d.event_id
	LEFT JOIN webhooks w ON d.channel = 'webhook' AND w.id = d.target `

func scanDelivery(s pgx.Row) (*tollgate.Delivery, error) {
	var (
		d                    tollgate.Delivery
		e                    tollgate.Event
		key                  *string
		payload              string
		wID, wURL, wFmt, wBy *string
		wEvents              []byte
		wSealed              []byte
		wCreated             *time.Time
	)
	if err := s.Scan(&d.ID, &d.EventID, &d.AccountID, &d.Channel, &d.Target, &d.Status, &d.Attempts, &d.NextAttemptAt,
		&d.LastCode, &d.LastError, &d.CreatedAt, &d.DeliveredAt, &e.Type, &key, &payload, &e.CreatedAt,
		&wID, &wURL, &wEvents, &wFmt, &wSealed, &wCreated, &wBy); err != nil {
		return nil, err
	}
	d.NextAttemptAt, d.CreatedAt, d.DeliveredAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC(), utcPtr(d.DeliveredAt)
	e.ID, e.AccountID, e.Payload, e.CreatedAt = d.EventID, d.AccountID, []byte(payload), e.CreatedAt.UTC()
	if key != nil {
		e.Key = *key
	}
	d.Event = &e
	if wID != nil {
		w := &tollgate.Webhook{ID: *wID, AccountID: d.AccountID, URL: *wURL, Format: *wFmt, ManagedBy: *wBy, CreatedAt: wCreated.UTC()}
		if err := json.Unmarshal(wEvents, &w.Events); err != nil {
			return nil, err
		}
		if len(w.Events) == 0 {
			w.Events = nil
		}
		d.Webhook, d.SealedSecret = w, wSealed
	}
	return &d, nil
}

func (t *tx) deliveries(ctx context.Context, query string, args ...any) ([]*tollgate.Delivery, error) {
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, dbError(err, "", "")
		}
		out = append(out, d)
	}
	return out, dbError(rows.Err(), "", "")
}

// ClaimDeliveries takes due rows that no other claim holds (SKIP LOCKED),
// so that replicas claiming at once share the work instead of waiting.
func (t *tx) ClaimDeliveries(ctx context.Context, now, leaseUntil time.Time, limit int) ([]*tollgate.Delivery, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	rows, err := t.q.Query(ctx, `
		UPDATE deliveries SET leased_until = $1, attempts = attempts + 1
		WHERE id IN (SELECT id FROM deliveries
			WHERE status = 'pending' AND next_attempt_at <= $2 AND (leased_until IS NULL OR leased_until <= $2)
			ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING id`, utc(leaseUntil), utc(now), limit)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		return nil, dbError(err, "", "")
	}
	return t.deliveries(ctx, `SELECT `+deliveryColumns+deliveryFrom+`WHERE d.id = ANY($1) ORDER BY d.id`, ids)
}

func (t *tx) FinishDelivery(ctx context.Context, d *tollgate.Delivery) error {
	if err := t.writable(); err != nil {
		return err
	}
	tag, err := t.q.Exec(ctx, `
		UPDATE deliveries SET status = $1, next_attempt_at = $2, last_code = $3, last_error = $4, delivered_at = $5,
			leased_until = NULL
		WHERE id = $6`,
		d.Status, utc(d.NextAttemptAt), d.LastCode, d.LastError, nullTime(d.DeliveredAt), d.ID)
	return affectedOne(tag, err, "delivery not found", "")
}

func (t *tx) ListDeliveries(ctx context.Context, accountID string, limit int) ([]*tollgate.Delivery, error) {
	return t.deliveries(ctx, `SELECT `+deliveryColumns+deliveryFrom+`WHERE d.account_id = $1 ORDER BY d.id DESC LIMIT $2`, accountID, limit)
}

func (t *tx) RedeliverDelivery(ctx context.Context, accountID string, id int64, now time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	tag, err := t.q.Exec(ctx, `
		UPDATE deliveries SET status = 'pending', next_attempt_at = $1, leased_until = NULL
		WHERE id = $2 AND account_id = $3`, utc(now), id, accountID)
	return affectedOne(tag, err, "delivery not found", "")
}

func (t *tx) InsertWebhook(ctx context.Context, w *tollgate.Webhook, sealed []byte) error {
	if err := t.writable(); err != nil {
		return err
	}
	events := w.Events
	if events == nil {
		events = []string{}
	}
	data, err := json.Marshal(events)
	if err != nil {
		return tollgate.Internal(err)
	}
	_, err = t.guardedExec(ctx, `
		INSERT INTO webhooks (id, account_id, url, events, format, secret_sealed, created_at, managed_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		w.ID, w.AccountID, w.URL, string(data), w.Format, sealed, utc(w.CreatedAt), w.ManagedBy)
	return dbError(err, "account not found", "a webhook with this id exists")
}

func (t *tx) ListWebhooks(ctx context.Context, accountID string) ([]*tollgate.Webhook, error) {
	rows, err := t.q.Query(ctx, `
		SELECT id, account_id, url, events, format, created_at, managed_by FROM webhooks
		WHERE account_id = $1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.Webhook
	for rows.Next() {
		var (
			w      tollgate.Webhook
			events []byte
		)
		if err := rows.Scan(&w.ID, &w.AccountID, &w.URL, &events, &w.Format, &w.CreatedAt, &w.ManagedBy); err != nil {
			return nil, dbError(err, "", "")
		}
		if err := json.Unmarshal(events, &w.Events); err != nil {
			return nil, tollgate.Internal(err)
		}
		if len(w.Events) == 0 {
			w.Events = nil
		}
		w.CreatedAt = w.CreatedAt.UTC()
		out = append(out, &w)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) DeleteWebhook(ctx context.Context, accountID, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	tag, err := t.q.Exec(ctx, `DELETE FROM webhooks WHERE id = $1 AND account_id = $2`, id, accountID)
	return affectedOne(tag, err, "webhook not found", "")
}
