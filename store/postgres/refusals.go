package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
)

// Refused attempts and tokens' distinct addresses (tollgate.PolicyTx).
// Writers of one token's refusals take a transaction-scoped advisory lock
// per token, in token order, before they insert and trim: two replicas
// flushing at once queue instead of deadlocking on each other's deletes.

var _ tollgate.PolicyTx = (*tx)(nil)

func (t *tx) AddRefusals(ctx context.Context, rs []tollgate.TokenRefusal, keep int) error {
	if err := t.writable(); err != nil {
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b tollgate.TokenRefusal) int { return a.At.Compare(b.At) })
	var tokens []string
	for _, r := range rs {
		tokens = append(tokens, r.TokenID)
	}
	slices.Sort(tokens)
	tokens = slices.Compact(tokens)
	b := &pgx.Batch{}
	for _, id := range tokens {
		b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended('tollgate.token_refusals:' || $1, 0))`, id)
	}
	for _, r := range rs {
		b.Queue(`INSERT INTO token_refusals (token_id, at, address, user_agent, reason) VALUES ($1, $2, $3, $4, $5)`,
			r.TokenID, utc(r.At), r.Address, r.UserAgent, r.Reason)
	}
	for _, id := range tokens {
		b.Queue(`
			DELETE FROM token_refusals WHERE token_id = $1 AND id NOT IN (
				SELECT id FROM token_refusals WHERE token_id = $1 ORDER BY at DESC, id DESC LIMIT $2)`, id, keep)
	}
	return dbError(t.q.SendBatch(ctx, b).Close(), "", "")
}

func (t *tx) TokenRefusals(ctx context.Context, tokenIDs []string, limit int) ([]tollgate.TokenRefusal, error) {
	if len(tokenIDs) == 0 {
		return nil, nil
	}
	rows, err := t.q.Query(ctx, `
		SELECT token_id, at, address, user_agent, reason FROM (
			SELECT r.*, row_number() OVER (PARTITION BY token_id ORDER BY at DESC, id DESC) AS n
			FROM token_refusals r WHERE token_id = ANY($1::text[])) x
		WHERE n <= $2 ORDER BY token_id, at DESC, id DESC`, tokenIDs, limit)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.TokenRefusal
	for rows.Next() {
		var r tollgate.TokenRefusal
		if err := rows.Scan(&r.TokenID, &r.At, &r.Address, &r.UserAgent, &r.Reason); err != nil {
			return nil, dbError(err, "", "")
		}
		r.At = r.At.UTC()
		out = append(out, r)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) TokenAddressCounts(ctx context.Context, accountID string, since, until time.Time) (map[string]int, error) {
	rows, err := t.q.Query(ctx, `
		SELECT token_id, count(DISTINCT address)::bigint FROM usage_addresses
		WHERE account_id = $1 AND token_id <> '' AND day >= $2 AND day < $3
		GROUP BY token_id`, accountID, tollgate.EpochDay(since), tollgate.EpochDay(until))
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, dbError(err, "", "")
		}
		out[id] = int(n)
	}
	return out, dbError(rows.Err(), "", "")
}
