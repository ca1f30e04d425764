package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/codec"
)

// Rotation and the notification outbox (migration 0006).

const rotationColumns = `t.secret_version, t.secret_hash, t.prev_secret_hash, t.prev_version, t.prev_rotated_at,
	t.prev_valid_until, t.prev_expired_noted, t.prev_last_used_at, t.prev_last_used_ip, t.prev_last_used_ua`

// rotationScan holds the rotation columns of a token row.
type rotationScan struct {
	version                       int
	hash, prevHash                []byte
	prevVersion                   sql.NullInt64
	rotatedAt, validUntil, prevLU sql.NullInt64
	noted                         int64
	prevIP, prevUA                string
}

func (r *rotationScan) dest() []any {
	return []any{&r.version, &r.hash, &r.prevHash, &r.prevVersion, &r.rotatedAt, &r.validUntil, &r.noted, &r.prevLU, &r.prevIP, &r.prevUA}
}

func (r *rotationScan) fill(t *tollgate.Token) {
	t.SecretVersion, t.SecretHash = r.version, r.hash
	if len(r.prevHash) == 0 || !r.validUntil.Valid {
		return
	}
	t.Previous = &tollgate.PreviousSecret{
		Hash: r.prevHash, Version: int(r.prevVersion.Int64),
		RotatedAt: fromMicros(r.rotatedAt.Int64), ValidUntil: fromMicros(r.validUntil.Int64),
		ExpiredNoted: r.noted != 0,
		LastUsedAt:   fromNullMicros(r.prevLU), LastUsedIP: r.prevIP, LastUsedUA: r.prevUA,
	}
}

func (t *tx) RotateTokenSecret(ctx context.Context, id string, hash, sealed []byte, at, validUntil time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	// SQLite evaluates every right-hand side against the row as it was:
	// prev_* take the old current secret's values.
	res, err := t.q.ExecContext(ctx, `
		UPDATE tokens SET
			prev_secret_hash = secret_hash, prev_version = secret_version,
			prev_rotated_at = ?, prev_valid_until = ?, prev_expired_noted = 0,
			prev_last_used_at = last_used_at, prev_last_used_ip = last_used_ip, prev_last_used_ua = last_used_ua,
			secret_hash = ?, secret_sealed = ?, secret_version = secret_version + 1, updated_at = ?
		WHERE id = ?`,
		micros(at), micros(validUntil), hash, codec.NullBytes(sealed), micros(at), id)
	return affectedOne(res, err, "token not found", "a token with this secret already exists")
}

func (t *tx) PreviousSecretsEnded(ctx context.Context, now time.Time, limit int) ([]*tollgate.Token, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	toks, err := t.tokens(ctx, `SELECT `+tokenColumns+tokenFrom+`
		WHERE t.prev_valid_until IS NOT NULL AND t.prev_valid_until <= ? AND t.prev_expired_noted = 0
		ORDER BY t.prev_valid_until LIMIT ?`, micros(now), limit)
	if err != nil {
		return nil, err
	}
	for _, tok := range toks {
		if _, err := t.q.ExecContext(ctx, `UPDATE tokens SET prev_expired_noted = 1 WHERE id = ?`, tok.ID); err != nil {
			return nil, dbError(err, "", "")
		}
		tok.Previous.ExpiredNoted = true
	}
	return toks, nil
}

func (t *tx) TokensExpiringBy(ctx context.Context, since, by time.Time, after tollgate.ExpiryCursor, limit int) ([]*tollgate.Token, error) {
	lo := int64(-1 << 62)
	if !since.IsZero() {
		lo = micros(since)
	}
	return t.tokens(ctx, `SELECT `+tokenColumns+tokenFrom+`
		WHERE t.revoked_at IS NULL AND t.trust_policy_id IS NULL AND t.expires_at IS NOT NULL AND t.expires_at >= ? AND t.expires_at <= ?
			AND (? = '' OR (t.expires_at, t.id) > (?, ?))
		ORDER BY t.expires_at, t.id LIMIT ?`, lo, micros(by), after.ID, micros(after.At), after.ID, limit)
}

func (t *tx) tokens(ctx context.Context, query string, args ...any) ([]*tollgate.Token, error) {
	rows, err := t.q.QueryContext(ctx, query, args...)
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

// recordPreviousUse moves the previous secret's last-use data forward.
func recordPreviousUse(ctx context.Context, q *sql.Tx, u tollgate.TokenUsage) error {
	at := micros(u.At)
	_, err := q.ExecContext(ctx, `
		UPDATE tokens SET
			prev_last_used_ip = CASE WHEN prev_last_used_at IS NULL OR prev_last_used_at <= ? THEN ? ELSE prev_last_used_ip END,
			prev_last_used_ua = CASE WHEN prev_last_used_at IS NULL OR prev_last_used_at <= ? THEN ? ELSE prev_last_used_ua END,
			prev_last_used_at = CASE WHEN prev_last_used_at IS NULL OR prev_last_used_at < ? THEN ? ELSE prev_last_used_at END
		WHERE id = ? AND prev_secret_hash IS NOT NULL`,
		at, u.IP, at, u.UA, at, at, u.TokenID)
	return dbError(err, "", "")
}

func (t *tx) InsertEvent(ctx context.Context, e *tollgate.Event) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	var key any
	if e.Key != "" {
		key = e.Key
	}
	res, err := t.q.ExecContext(ctx, `
		INSERT INTO events (id, account_id, type, dedupe_key, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (dedupe_key) DO NOTHING`,
		e.ID, e.AccountID, e.Type, key, string(e.Payload), micros(e.CreatedAt))
	if err != nil {
		return false, dbError(err, "", "an event with this id exists")
	}
	n, err := res.RowsAffected()
	return n == 1, dbError(err, "", "")
}

func (t *tx) InsertDelivery(ctx context.Context, d *tollgate.Delivery) error {
	if err := t.writable(); err != nil {
		return err
	}
	err := t.q.QueryRowContext(ctx, `
		INSERT INTO deliveries (event_id, account_id, channel, target, status, next_attempt_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		d.EventID, d.AccountID, d.Channel, d.Target, tollgate.DeliveryPending, micros(d.NextAttemptAt), micros(d.CreatedAt)).Scan(&d.ID)
	return dbError(err, "event not found", "")
}

const deliveryColumns = `d.id, d.event_id, d.account_id, d.channel, d.target, d.status, d.attempts, d.next_attempt_at,
	d.last_code, d.last_error, d.created_at, d.delivered_at, e.type, e.dedupe_key, e.payload, e.created_at,
	w.id, w.url, w.events, w.format, w.secret_sealed, w.created_at, w.managed_by`

const deliveryFrom = ` FROM deliveries d JOIN events e ON e.id = d.event_id
	LEFT JOIN webhooks w ON d.channel = 'webhook' AND w.id = d.target `

func scanDelivery(s scanner) (*tollgate.Delivery, error) {
	var (
		d                             tollgate.Delivery
		e                             tollgate.Event
		next, created, evCreated      int64
		delivered                     sql.NullInt64
		key                           sql.NullString
		payload                       string
		wID, wURL, wEvents, wFmt, wBy sql.NullString
		wSealed                       []byte
		wCreated                      sql.NullInt64
	)
	if err := s.Scan(&d.ID, &d.EventID, &d.AccountID, &d.Channel, &d.Target, &d.Status, &d.Attempts, &next,
		&d.LastCode, &d.LastError, &created, &delivered, &e.Type, &key, &payload, &evCreated,
		&wID, &wURL, &wEvents, &wFmt, &wSealed, &wCreated, &wBy); err != nil {
		return nil, err
	}
	d.NextAttemptAt, d.CreatedAt, d.DeliveredAt = fromMicros(next), fromMicros(created), fromNullMicros(delivered)
	e.ID, e.AccountID, e.Key, e.Payload, e.CreatedAt = d.EventID, d.AccountID, key.String, []byte(payload), fromMicros(evCreated)
	d.Event = &e
	if wID.Valid {
		w := &tollgate.Webhook{ID: wID.String, AccountID: d.AccountID, URL: wURL.String, Format: wFmt.String, ManagedBy: wBy.String, CreatedAt: fromMicros(wCreated.Int64)}
		if err := json.Unmarshal([]byte(wEvents.String), &w.Events); err != nil {
			return nil, err
		}
		d.Webhook, d.SealedSecret = w, wSealed
	}
	return &d, nil
}

func (t *tx) deliveries(ctx context.Context, query string, args ...any) ([]*tollgate.Delivery, error) {
	rows, err := t.q.QueryContext(ctx, query, args...)
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

// ClaimDeliveries needs no row locks: the writer lock serializes claims.
func (t *tx) ClaimDeliveries(ctx context.Context, now, leaseUntil time.Time, limit int) ([]*tollgate.Delivery, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	rows, err := t.q.QueryContext(ctx, `
		UPDATE deliveries SET leased_until = ?, attempts = attempts + 1
		WHERE id IN (SELECT id FROM deliveries
			WHERE status = 'pending' AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)
			ORDER BY next_attempt_at, id LIMIT ?)
		RETURNING id`, micros(leaseUntil), micros(now), micros(now), limit)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	var ids []any
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, dbError(err, "", "")
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "", "")
	}
	if len(ids) == 0 {
		return nil, nil
	}
	in := "?"
	for range ids[1:] {
		in += ", ?"
	}
	return t.deliveries(ctx, `SELECT `+deliveryColumns+deliveryFrom+`WHERE d.id IN (`+in+`) ORDER BY d.id`, ids...)
}

func (t *tx) FinishDelivery(ctx context.Context, d *tollgate.Delivery) error {
	if err := t.writable(); err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, `
		UPDATE deliveries SET status = ?, next_attempt_at = ?, last_code = ?, last_error = ?, delivered_at = ?,
			leased_until = NULL
		WHERE id = ?`,
		d.Status, micros(d.NextAttemptAt), d.LastCode, d.LastError, nullMicros(d.DeliveredAt), d.ID)
	return affectedOne(res, err, "delivery not found", "")
}

func (t *tx) ListDeliveries(ctx context.Context, accountID string, limit int) ([]*tollgate.Delivery, error) {
	return t.deliveries(ctx, `SELECT `+deliveryColumns+deliveryFrom+`WHERE d.account_id = ? ORDER BY d.id DESC LIMIT ?`, accountID, limit)
}

func (t *tx) RedeliverDelivery(ctx context.Context, accountID string, id int64, now time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, `
		UPDATE deliveries SET status = 'pending', next_attempt_at = ?, leased_until = NULL
		WHERE id = ? AND account_id = ?`, micros(now), id, accountID)
	return affectedOne(res, err, "delivery not found", "")
}

func (t *tx) InsertWebhook(ctx context.Context, w *tollgate.Webhook, sealed []byte) error {
	if err := t.writable(); err != nil {
		return err
	}
	events, err := json.Marshal(nonNil(w.Events))
	if err != nil {
		return tollgate.Internal(err)
	}
	_, err = t.q.ExecContext(ctx, `
		INSERT INTO webhooks (id, account_id, url, events, format, secret_sealed, created_at, managed_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		w.ID, w.AccountID, w.URL, string(events), w.Format, sealed, micros(w.CreatedAt), w.ManagedBy)
	return dbError(err, "account not found", "a webhook with this id exists")
}

func (t *tx) ListWebhooks(ctx context.Context, accountID string) ([]*tollgate.Webhook, error) {
	rows, err := t.q.QueryContext(ctx, `
		SELECT id, account_id, url, events, format, created_at, managed_by FROM webhooks
		WHERE account_id = ? ORDER BY created_at, rowid`, accountID)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.Webhook
	for rows.Next() {
		var (
			w       tollgate.Webhook
			events  string
			created int64
		)
		if err := rows.Scan(&w.ID, &w.AccountID, &w.URL, &events, &w.Format, &created, &w.ManagedBy); err != nil {
			return nil, dbError(err, "", "")
		}
		if err := json.Unmarshal([]byte(events), &w.Events); err != nil {
			return nil, tollgate.Internal(err)
		}
		if len(w.Events) == 0 {
			w.Events = nil
		}
		w.CreatedAt = fromMicros(created)
		out = append(out, &w)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) DeleteWebhook(ctx context.Context, accountID, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ? AND account_id = ?`, id, accountID)
	return affectedOne(res, err, "webhook not found", "")
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
