package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/codec"
)

// tx implements tollgate.Tx on one database/sql transaction. forUpdate is
// ignored: every Update already holds the database's write lock.
type tx struct {
	q        *sql.Tx
	readOnly bool
}

var _ tollgate.Tx = (*tx)(nil)

var errReadOnly = errors.New("sqlite: write inside View")

func (t *tx) writable() error {
	if t.readOnly {
		return tollgate.Internal(errReadOnly)
	}
	return nil
}

const accountColumns = `id, name, status, package_access, sub_images, sub_packages, created_at, updated_at, policy`

func (t *tx) InsertAccount(ctx context.Context, a *tollgate.Account) error {
	if err := t.writable(); err != nil {
		return err
	}
	images, packages, err := codec.MarshalSubscription(a.Subscription)
	if err != nil {
		return tollgate.Internal(err)
	}
	policy, err := codec.MarshalAccountPolicy(a.Policy)
	if err != nil {
		return tollgate.Internal(err)
	}
	_, err = t.q.ExecContext(ctx, `
		INSERT INTO accounts (`+accountColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.Name, string(a.Status), string(a.PackageAccess), images, packages,
		micros(a.CreatedAt), micros(a.UpdatedAt), policy)
	return dbError(err, "account not found", "an account with this name or id already exists")
}

func (t *tx) AccountByID(ctx context.Context, id string, forUpdate bool) (*tollgate.Account, error) {
	return t.account(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id)
}

func (t *tx) AccountByName(ctx context.Context, name string, forUpdate bool) (*tollgate.Account, error) {
	return t.account(ctx, `SELECT `+accountColumns+` FROM accounts WHERE name = ?`, name)
}

func (t *tx) AccountByKeyHash(ctx context.Context, hash []byte) (*tollgate.Account, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "account not found")
	}
	return t.account(ctx, `SELECT `+accountColumns+` FROM accounts WHERE api_key_hash = ?`, hash)
}

func (t *tx) account(ctx context.Context, query string, arg any) (*tollgate.Account, error) {
	a, err := scanAccount(t.q.QueryRowContext(ctx, query, arg))
	if err != nil {
		return nil, dbError(err, "account not found", "")
	}
	return a, nil
}

func (t *tx) UpdateAccount(ctx context.Context, a *tollgate.Account) error {
	if err := t.writable(); err != nil {
		return err
	}
	images, packages, err := codec.MarshalSubscription(a.Subscription)
	if err != nil {
		return tollgate.Internal(err)
	}
	policy, err := codec.MarshalAccountPolicy(a.Policy)
	if err != nil {
		return tollgate.Internal(err)
	}
	res, err := t.q.ExecContext(ctx, `
		UPDATE accounts SET name = ?, status = ?, package_access = ?,
			sub_images = ?, sub_packages = ?, updated_at = ?, policy = ?
		WHERE id = ?`,
		a.Name, string(a.Status), string(a.PackageAccess), images, packages, micros(a.UpdatedAt), policy, a.ID)
	return affectedOne(res, err, "account not found", "an account with this name already exists")
}

func (t *tx) ListAccounts(ctx context.Context) ([]*tollgate.Account, error) {
	rows, err := t.q.QueryContext(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY name`)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, dbError(err, "", "")
		}
		out = append(out, a)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) SetAccountKey(ctx context.Context, accountID string, hash []byte) error {
	if err := t.writable(); err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, `UPDATE accounts SET api_key_hash = ? WHERE id = ?`, codec.NullBytes(hash), accountID)
	return affectedOne(res, err, "account not found", "this key is already in use")
}

const tokenColumns = `t.id, t.account_id, a.name, t.name, t.description, t.scope, t.expires_at,
	t.created_at, t.updated_at, t.last_used_at, t.last_used_ip, t.last_used_ua, t.pulls, t.revoked_at, t.policy, ` + rotationColumns + `, t.identity`

const tokenFrom = ` FROM tokens t JOIN accounts a ON a.id = t.account_id `

func (t *tx) InsertToken(ctx context.Context, tok *tollgate.Token, hash, sealed []byte) error {
	if err := t.writable(); err != nil {
		return err
	}
	policy, err := codec.MarshalPolicy(tok.Policy)
	if err != nil {
		return tollgate.Internal(err)
	}
	identity, trustPolicy, err := codec.MarshalIdentity(tok.Identity)
	if err != nil {
		return tollgate.Internal(err)
	}
	_, err = t.q.ExecContext(ctx, `
		INSERT INTO tokens (id, account_id, name, description, scope, expires_at,
			created_at, updated_at, last_used_at, last_used_ip, last_used_ua, pulls, revoked_at,
			secret_hash, secret_sealed, policy, identity, trust_policy_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tok.ID, tok.AccountID, tok.Name, tok.Description, int64(tok.Scope), nullMicros(tok.ExpiresAt),
		micros(tok.CreatedAt), micros(tok.UpdatedAt), nullMicros(tok.LastUsedAt), tok.LastUsedIP, tok.LastUsedUA,
		tok.Pulls, nullMicros(tok.RevokedAt),
		codec.NullBytes(hash), codec.NullBytes(sealed), policy, identity, trustPolicy)
	return dbError(err, "account not found", "a token with this id or secret already exists")
}

func (t *tx) TokenByID(ctx context.Context, id string) (*tollgate.Token, error) {
	return t.token(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = ?`, id)
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (*tollgate.Token, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "token not found")
	}
	// The previous secret names its token too: Decide judges its grace.
	tok, err := t.token(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.secret_hash = ?`, hash)
	if tollgate.ErrorCode(err) == tollgate.ENOTFOUND {
		return t.token(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.prev_secret_hash = ?`, hash)
	}
	return tok, err
}

func (t *tx) token(ctx context.Context, query string, arg any) (*tollgate.Token, error) {
	tok, err := scanToken(t.q.QueryRowContext(ctx, query, arg))
	if err != nil {
		return nil, dbError(err, "token not found", "")
	}
	return tok, nil
}

func (t *tx) UpdateToken(ctx context.Context, tok *tollgate.Token) error {
	if err := t.writable(); err != nil {
		return err
	}
	policy, err := codec.MarshalPolicy(tok.Policy)
	if err != nil {
		return tollgate.Internal(err)
	}
	res, err := t.q.ExecContext(ctx, `
		UPDATE tokens SET name = ?, description = ?, scope = ?, expires_at = ?,
			updated_at = ?, revoked_at = ?, policy = ?
		WHERE id = ?`,
		tok.Name, tok.Description, int64(tok.Scope), nullMicros(tok.ExpiresAt),
		micros(tok.UpdatedAt), nullMicros(tok.RevokedAt), policy, tok.ID)
	return affectedOne(res, err, "token not found", "")
}

func (t *tx) ListTokens(ctx context.Context, accountID string) ([]*tollgate.Token, error) {
	// rowid breaks ties between tokens created in the same microsecond:
	// it grows with insertion.
	return t.tokens(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.account_id = ? ORDER BY t.created_at, t.rowid`, accountID)
}

func (t *tx) CountActiveTokens(ctx context.Context, accountID string) (int, error) {
	var n int
	err := t.q.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM tokens WHERE account_id = ? AND revoked_at IS NULL AND trust_policy_id IS NULL`, accountID).Scan(&n)
	if err != nil {
		return 0, dbError(err, "", "")
	}
	return n, nil
}

// SealedSecret returns nil, without error, for a token stored without one.
func (t *tx) SealedSecret(ctx context.Context, tokenID string) ([]byte, error) {
	var sealed []byte
	err := t.q.QueryRowContext(ctx, `SELECT secret_sealed FROM tokens WHERE id = ?`, tokenID).Scan(&sealed)
	if err != nil {
		return nil, dbError(err, "token not found", "")
	}
	if len(sealed) == 0 {
		return nil, nil
	}
	return sealed, nil
}

func (t *tx) InsertAudit(ctx context.Context, e *tollgate.AuditEvent) error {
	if err := t.writable(); err != nil {
		return err
	}
	changes, err := codec.MarshalChanges(e.Changes)
	if err != nil {
		return tollgate.Internal(err)
	}
	var id int64
	err = t.q.QueryRowContext(ctx, `
		INSERT INTO audit (account_id, time, actor, action, target, changes)
		VALUES (?, ?, ?, ?, ?, ?)
		RETURNING id`,
		e.AccountID, micros(e.Time), e.Actor, e.Action, e.Target, changes).Scan(&id)
	if err != nil {
		return dbError(err, "", "")
	}
	e.ID = id
	return nil
}

// ListAudit returns all matching events when page.Limit <= 0.
func (t *tx) ListAudit(ctx context.Context, accountID string, page tollgate.AuditPage) ([]*tollgate.AuditEvent, error) {
	query := `SELECT id, account_id, time, actor, action, target, changes FROM audit WHERE account_id = ?`
	args := []any{accountID}
	if page.Before > 0 {
		query += ` AND id < ?`
		args = append(args, page.Before)
	}
	query += ` ORDER BY id DESC`
	if page.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, page.Limit)
	}
	rows, err := t.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.AuditEvent
	for rows.Next() {
		var (
			e       tollgate.AuditEvent
			at      int64
			changes string
		)
		if err := rows.Scan(&e.ID, &e.AccountID, &at, &e.Actor, &e.Action, &e.Target, &changes); err != nil {
			return nil, dbError(err, "", "")
		}
		e.Time = fromMicros(at)
		if e.Changes, err = codec.UnmarshalChanges(changes); err != nil {
			return nil, tollgate.Internal(err)
		}
		out = append(out, &e)
	}
	return out, dbError(rows.Err(), "", "")
}

type scanner interface{ Scan(dest ...any) error }

func scanAccount(s scanner) (*tollgate.Account, error) {
	var (
		a                  tollgate.Account
		status, access     string
		images, packages   string
		created, updatedAt int64
		policy             string
	)
	if err := s.Scan(&a.ID, &a.Name, &status, &access, &images, &packages, &created, &updatedAt, &policy); err != nil {
		return nil, err
	}
	var perr error
	if a.Policy, perr = codec.UnmarshalAccountPolicy(policy); perr != nil {
		return nil, perr
	}
	a.Status = tollgate.AccountStatus(status)
	a.PackageAccess = tollgate.PackageAccess(access)
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updatedAt)
	var err error
	if a.Subscription.Images, err = codec.UnmarshalList(images); err != nil {
		return nil, err
	}
	if a.Subscription.Packages, err = codec.UnmarshalList(packages); err != nil {
		return nil, err
	}
	return &a, nil
}

func scanToken(s scanner) (*tollgate.Token, error) {
	var (
		tok                          tollgate.Token
		scope                        int64
		created, updatedAt           int64
		expires, lastUsed, revokedAt sql.NullInt64
		policy, identity             string
	)
	var rot rotationScan
	if err := s.Scan(append([]any{&tok.ID, &tok.AccountID, &tok.AccountName, &tok.Name, &tok.Description, &scope, &expires,
		&created, &updatedAt, &lastUsed, &tok.LastUsedIP, &tok.LastUsedUA, &tok.Pulls, &revokedAt, &policy}, append(rot.dest(), &identity)...)...); err != nil {
		return nil, err
	}
	var err error
	if tok.Policy, err = codec.UnmarshalPolicy(policy); err != nil {
		return nil, err
	}
	if tok.Identity, err = codec.UnmarshalIdentity(identity); err != nil {
		return nil, err
	}
	rot.fill(&tok)
	tok.Scope = tollgate.Scope(scope)
	tok.CreatedAt, tok.UpdatedAt = fromMicros(created), fromMicros(updatedAt)
	tok.ExpiresAt, tok.LastUsedAt, tok.RevokedAt = fromNullMicros(expires), fromNullMicros(lastUsed), fromNullMicros(revokedAt)
	return &tok, nil
}

// affectedOne maps an UPDATE by primary key that matched no row to
// ENOTFOUND.
func affectedOne(res sql.Result, err error, notFound, conflict string) error {
	if err != nil {
		return dbError(err, notFound, conflict)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return dbError(err, notFound, conflict)
	}
	if n == 0 {
		return tollgate.Errorf(tollgate.ENOTFOUND, "%s", notFound)
	}
	return nil
}

// micros is t as microseconds since the Unix epoch; sub-microsecond
// digits are dropped (rounding toward the past).
func micros(t time.Time) int64 { return t.UnixMicro() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func (t *tx) AppendInvalidation(ctx context.Context, inv *tollgate.Invalidation) error {
	if err := t.writable(); err != nil {
		return err
	}
	ids, err := marshalIDs(inv.TokenIDs)
	if err != nil {
		return err
	}
	// Every Update holds the write lock: seq order is commit order.
	err = t.q.QueryRowContext(ctx, `
		INSERT INTO invalidations (time, account_id, token_ids) VALUES (?, ?, ?)
		RETURNING seq`, micros(inv.At), inv.AccountID, ids).Scan(&inv.Seq)
	return dbError(err, "", "")
}

func (t *tx) InvalidationsAfter(ctx context.Context, after int64, limit int) ([]tollgate.Invalidation, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := t.q.QueryContext(ctx, `
		SELECT seq, time, account_id, token_ids FROM invalidations
		WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.Invalidation
	for rows.Next() {
		var (
			inv tollgate.Invalidation
			at  int64
			ids string
		)
		if err := rows.Scan(&inv.Seq, &at, &inv.AccountID, &ids); err != nil {
			return nil, dbError(err, "", "")
		}
		inv.At = fromMicros(at)
		if inv.TokenIDs, err = unmarshalIDs(ids); err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) PruneInvalidations(ctx context.Context, before time.Time) (int64, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	res, err := t.q.ExecContext(ctx, `
		DELETE FROM invalidations
		WHERE seq < (SELECT MAX(seq) FROM invalidations WHERE time < ?)`, micros(before))
	if err != nil {
		return 0, dbError(err, "", "")
	}
	n, err := res.RowsAffected()
	return n, dbError(err, "", "")
}

func (t *tx) LastInvalidation(ctx context.Context) (int64, error) {
	var seq int64
	err := t.q.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM invalidations`).Scan(&seq)
	return seq, dbError(err, "", "")
}

func marshalIDs(ids []string) (string, error) {
	if ids == nil {
		ids = []string{}
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return "", tollgate.Internal(err)
	}
	return string(b), nil
}

func unmarshalIDs(s string) ([]string, error) {
	var ids []string
	if err := json.Unmarshal([]byte(s), &ids); err != nil {
		return nil, tollgate.Internal(err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, nil
}
