package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/codec"
)

// querier is what pgx.Tx and *pgxpool.Pool have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// tx implements tollgate.Tx on a pgx transaction (Update) or on the pool
// (View, readOnly).
type tx struct {
	q        querier
	inTx     bool
	readOnly bool
}

var _ tollgate.Tx = (*tx)(nil)

var errReadOnly = errors.New("postgres: write inside View")

func (t *tx) writable() error {
	if t.readOnly {
		return tollgate.Internal(errReadOnly)
	}
	return nil
}

// guardedExec runs a statement that may fail on a constraint inside a
// savepoint, in one round trip, and rolls back to the savepoint if it
// fails. Without it the first ECONFLICT would abort the whole transaction
// ("current transaction is aborted"), unlike SQLite, where a failed
// statement undoes only itself.
func (t *tx) guardedExec(ctx context.Context, query string, args ...any) (pgconn.CommandTag, error) {
	if !t.inTx {
		return t.q.Exec(ctx, query, args...)
	}
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT tollgate_stmt`)
	b.Queue(query, args...)
	b.Queue(`RELEASE SAVEPOINT tollgate_stmt`)
	br := t.q.SendBatch(ctx, b)
	var tag pgconn.CommandTag
	_, err := br.Exec()
	if err == nil {
		tag, err = br.Exec()
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// If this fails too the transaction is beyond saving; the
		// statement's own error says more.
		t.q.Exec(ctx, `ROLLBACK TO SAVEPOINT tollgate_stmt`)
	}
	return tag, err
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
	_, err = t.guardedExec(ctx, `
		INSERT INTO accounts (`+accountColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		a.ID, a.Name, string(a.Status), string(a.PackageAccess), images, packages,
		utc(a.CreatedAt), utc(a.UpdatedAt), policy)
	return dbError(err, "account not found", "an account with this name or id already exists")
}

func (t *tx) AccountByID(ctx context.Context, id string, forUpdate bool) (*tollgate.Account, error) {
	return t.account(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`+t.lock(forUpdate), id)
}

func (t *tx) AccountByName(ctx context.Context, name string, forUpdate bool) (*tollgate.Account, error) {
	return t.account(ctx, `SELECT `+accountColumns+` FROM accounts WHERE name = $1`+t.lock(forUpdate), name)
}

func (t *tx) AccountByKeyHash(ctx context.Context, hash []byte) (*tollgate.Account, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "account not found")
	}
	return t.account(ctx, `SELECT `+accountColumns+` FROM accounts WHERE api_key_hash = $1`, hash)
}

// lock returns the row-lock clause, outside transactions none.
func (t *tx) lock(forUpdate bool) string {
	if forUpdate && t.inTx {
		return ` FOR UPDATE`
	}
	return ``
}

func (t *tx) account(ctx context.Context, query string, arg any) (*tollgate.Account, error) {
	a, err := scanAccount(t.q.QueryRow(ctx, query, arg))
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
	tag, err := t.guardedExec(ctx, `
		UPDATE accounts SET name = $1, status = $2, package_access = $3,
			sub_images = $4, sub_packages = $5, updated_at = $6, policy = $7
		WHERE id = $8`,
		a.Name, string(a.Status), string(a.PackageAccess), images, packages, utc(a.UpdatedAt), policy, a.ID)
	return affectedOne(tag, err, "account not found", "an account with this name already exists")
}

func (t *tx) ListAccounts(ctx context.Context) ([]*tollgate.Account, error) {
	rows, err := t.q.Query(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY name COLLATE "C"`)
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
	tag, err := t.guardedExec(ctx, `UPDATE accounts SET api_key_hash = $1 WHERE id = $2`, codec.NullBytes(hash), accountID)
	return affectedOne(tag, err, "account not found", "this key is already in use")
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
	_, err = t.guardedExec(ctx, `
		INSERT INTO tokens (id, account_id, name, description, scope, expires_at,
			created_at, updated_at, last_used_at, last_used_ip, last_used_ua, pulls, revoked_at,
			secret_hash, secret_sealed, policy, identity, trust_policy_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
		tok.ID, tok.AccountID, tok.Name, tok.Description, int32(tok.Scope), nullTime(tok.ExpiresAt),
		utc(tok.CreatedAt), utc(tok.UpdatedAt), nullTime(tok.LastUsedAt), tok.LastUsedIP, tok.LastUsedUA,
		tok.Pulls, nullTime(tok.RevokedAt),
		codec.NullBytes(hash), codec.NullBytes(sealed), policy, identity, trustPolicy)
	return dbError(err, "account not found", "a token with this id or secret already exists")
}

func (t *tx) TokenByID(ctx context.Context, id string) (*tollgate.Token, error) {
	return t.token(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.id = $1`, id)
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (*tollgate.Token, error) {
	if len(hash) == 0 {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "token not found")
	}
	// The previous secret names its token too: Decide judges its grace.
	return t.token(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.secret_hash = $1 OR t.prev_secret_hash = $1`, hash)
}

func (t *tx) token(ctx context.Context, query string, arg any) (*tollgate.Token, error) {
	tok, err := scanToken(t.q.QueryRow(ctx, query, arg))
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
	tag, err := t.q.Exec(ctx, `
		UPDATE tokens SET name = $1, description = $2, scope = $3, expires_at = $4,
			updated_at = $5, revoked_at = $6, policy = $7
		WHERE id = $8`,
		tok.Name, tok.Description, int32(tok.Scope), nullTime(tok.ExpiresAt),
		utc(tok.UpdatedAt), nullTime(tok.RevokedAt), policy, tok.ID)
	return affectedOne(tag, err, "token not found", "")
}

func (t *tx) ListTokens(ctx context.Context, accountID string) ([]*tollgate.Token, error) {
	return t.tokens(ctx, `SELECT `+tokenColumns+tokenFrom+`WHERE t.account_id = $1 ORDER BY t.created_at, t.seq`, accountID)
}

func (t *tx) CountActiveTokens(ctx context.Context, accountID string) (int, error) {
	var n int
	err := t.q.QueryRow(ctx,
		`SELECT COUNT(*) FROM tokens WHERE account_id = $1 AND revoked_at IS NULL AND trust_policy_id IS NULL`, accountID).Scan(&n)
	if err != nil {
		return 0, dbError(err, "", "")
	}
	return n, nil
}

// SealedSecret returns nil, without error, for a token stored without one.
func (t *tx) SealedSecret(ctx context.Context, tokenID string) ([]byte, error) {
	var sealed []byte
	err := t.q.QueryRow(ctx, `SELECT secret_sealed FROM tokens WHERE id = $1`, tokenID).Scan(&sealed)
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
	err = t.q.QueryRow(ctx, `
		INSERT INTO audit (account_id, time, actor, action, target, changes)
		VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING id`,
		e.AccountID, utc(e.Time), e.Actor, e.Action, e.Target, changes).Scan(&id)
	if err != nil {
		return dbError(err, "", "")
	}
	e.ID = id
	return nil
}

// ListAudit returns all matching events when page.Limit <= 0.
func (t *tx) ListAudit(ctx context.Context, accountID string, page tollgate.AuditPage) ([]*tollgate.AuditEvent, error) {
	query := `SELECT id, account_id, time, actor, action, target, changes FROM audit WHERE account_id = $1`
	args := []any{accountID}
	if page.Before > 0 {
		args = append(args, page.Before)
		query += ` AND id < $` + strconv.Itoa(len(args))
	}
	query += ` ORDER BY id DESC`
	if page.Limit > 0 {
		args = append(args, page.Limit)
		query += ` LIMIT $` + strconv.Itoa(len(args))
	}
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.AuditEvent
	for rows.Next() {
		var (
			e       tollgate.AuditEvent
			changes string
		)
		if err := rows.Scan(&e.ID, &e.AccountID, &e.Time, &e.Actor, &e.Action, &e.Target, &changes); err != nil {
			return nil, dbError(err, "", "")
		}
		e.Time = e.Time.UTC()
		if e.Changes, err = codec.UnmarshalChanges(changes); err != nil {
			return nil, tollgate.Internal(err)
		}
		out = append(out, &e)
	}
	return out, dbError(rows.Err(), "", "")
}

func scanAccount(s pgx.Row) (*tollgate.Account, error) {
	var (
		a                tollgate.Account
		status, access   string
		images, packages string
		policy           string
	)
	if err := s.Scan(&a.ID, &a.Name, &status, &access, &images, &packages, &a.CreatedAt, &a.UpdatedAt, &policy); err != nil {
		return nil, err
	}
	var perr error
	if a.Policy, perr = codec.UnmarshalAccountPolicy(policy); perr != nil {
		return nil, perr
	}
	a.Status = tollgate.AccountStatus(status)
	a.PackageAccess = tollgate.PackageAccess(access)
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	var err error
	if a.Subscription.Images, err = codec.UnmarshalList(images); err != nil {
		return nil, err
	}
	if a.Subscription.Packages, err = codec.UnmarshalList(packages); err != nil {
		return nil, err
	}
	return &a, nil
}

func scanToken(s pgx.Row) (*tollgate.Token, error) {
	var (
		tok              tollgate.Token
		scope            int32
		policy, identity string
	)
	var rot rotationScan
	if err := s.Scan(append([]any{&tok.ID, &tok.AccountID, &tok.AccountName, &tok.Name, &tok.Description, &scope, &tok.ExpiresAt,
		&tok.CreatedAt, &tok.UpdatedAt, &tok.LastUsedAt, &tok.LastUsedIP, &tok.LastUsedUA, &tok.Pulls, &tok.RevokedAt, &policy}, append(rot.dest(), &identity)...)...); err != nil {
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
	tok.CreatedAt, tok.UpdatedAt = tok.CreatedAt.UTC(), tok.UpdatedAt.UTC()
	tok.ExpiresAt, tok.LastUsedAt, tok.RevokedAt = utcPtr(tok.ExpiresAt), utcPtr(tok.LastUsedAt), utcPtr(tok.RevokedAt)
	return &tok, nil
}

// affectedOne maps an UPDATE by primary key that matched no row to
// ENOTFOUND.
func affectedOne(tag pgconn.CommandTag, err error, notFound, conflict string) error {
	if err != nil {
		return dbError(err, notFound, conflict)
	}
	if tag.RowsAffected() == 0 {
		return tollgate.Errorf(tollgate.ENOTFOUND, "%s", notFound)
	}
	return nil
}

// utc drops sub-microsecond digits (toward the past, as SQLite does) that
// timestamptz cannot hold.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return utc(*t)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (t *tx) AppendInvalidation(ctx context.Context, inv *tollgate.Invalidation) error {
	if err := t.writable(); err != nil {
		return err
	}
	ids := inv.TokenIDs
	if ids == nil {
		ids = []string{}
	}
	data, err := json.Marshal(ids)
	if err != nil {
		return tollgate.Internal(err)
	}
	// The lock, held until commit, makes seq order commit order (see
	// migration 0004): without it a reader could see seq n+1 committed
	// while n, drawn earlier, commits later, and skip n. It serializes
	// only the appends of concurrent writes, which are rare; Service
	// appends last, so nothing waits while holding it. It is an advisory
	// lock keyed by the table's oid (one per schema), not LOCK TABLE:
	// preparing the INSERT of the same batch already takes the table's
	// ROW EXCLUSIVE lock, and upgrading from it deadlocks.
	b := &pgx.Batch{}
	if t.inTx {
		b.Queue(`SELECT pg_advisory_xact_lock('invalidations'::regclass::oid::bigint)`)
	}
	b.Queue(`INSERT INTO invalidations (time, account_id, token_ids) VALUES ($1, $2, $3) RETURNING seq`,
		utc(inv.At), inv.AccountID, string(data))
	br := t.q.SendBatch(ctx, b)
	if t.inTx {
		_, err = br.Exec()
	}
	if err == nil {
		err = br.QueryRow().Scan(&inv.Seq)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return dbError(err, "", "")
}

func (t *tx) InvalidationsAfter(ctx context.Context, after int64, limit int) ([]tollgate.Invalidation, error) {
	query := `SELECT seq, time, account_id, token_ids FROM invalidations WHERE seq > $1 ORDER BY seq`
	args := []any{after}
	if limit > 0 {
		query += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.Invalidation
	for rows.Next() {
		var (
			inv tollgate.Invalidation
			ids string
		)
		if err := rows.Scan(&inv.Seq, &inv.At, &inv.AccountID, &ids); err != nil {
			return nil, dbError(err, "", "")
		}
		inv.At = inv.At.UTC()
		if err := json.Unmarshal([]byte(ids), &inv.TokenIDs); err != nil {
			return nil, tollgate.Internal(err)
		}
		if len(inv.TokenIDs) == 0 {
			inv.TokenIDs = nil
		}
		out = append(out, inv)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) PruneInvalidations(ctx context.Context, before time.Time) (int64, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	tag, err := t.q.Exec(ctx, `
		DELETE FROM invalidations
		WHERE seq < (SELECT MAX(seq) FROM invalidations WHERE time < $1)`, utc(before))
	if err != nil {
		return 0, dbError(err, "", "")
	}
	return tag.RowsAffected(), nil
}

func (t *tx) LastInvalidation(ctx context.Context) (int64, error) {
	var seq int64
	err := t.q.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM invalidations`).Scan(&seq)
	return seq, dbError(err, "", "")
}
