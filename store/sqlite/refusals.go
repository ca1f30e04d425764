package sqlite

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/tollgate/tollgate"
)

// Refused attempts and tokens' distinct addresses (tollgate.PolicyTx).

var _ tollgate.PolicyTx = (*tx)(nil)

func (t *tx) AddRefusals(ctx context.Context, rs []tollgate.TokenRefusal, keep int) error {
	if err := t.writable(); err != nil {
		return err
	}
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b tollgate.TokenRefusal) int { return a.At.Compare(b.At) })
	ins, err := t.q.PrepareContext(ctx, `
		INSERT INTO token_refusals (token_id, at, address, user_agent, reason) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return dbError(err, "", "")
	}
	defer ins.Close()
	var tokens []string
	for _, r := range rs {
		if _, err := ins.ExecContext(ctx, r.TokenID, micros(r.At), r.Address, r.UserAgent, r.Reason); err != nil {
			return dbError(err, "", "")
		}
		tokens = append(tokens, r.TokenID)
	}
	slices.Sort(tokens)
	for _, id := range slices.Compact(tokens) {
		if _, err := t.q.ExecContext(ctx, `
			DELETE FROM token_refusals WHERE token_id = ? AND id NOT IN (
				SELECT id FROM token_refusals WHERE token_id = ? ORDER BY at DESC, id DESC LIMIT ?)`, id, id, keep); err != nil {
			return dbError(err, "", "")
		}
	}
	return nil
}

func (t *tx) TokenRefusals(ctx context.Context, tokenIDs []string, limit int) ([]tollgate.TokenRefusal, error) {
	if len(tokenIDs) == 0 {
		return nil, nil
	}
	ids, err := json.Marshal(tokenIDs)
	if err != nil {
		return nil, tollgate.Internal(err)
	}
	rows, err := t.q.QueryContext(ctx, `
		SELECT token_id, at, address, user_agent, reason FROM (
			SELECT r.*, row_number() OVER (PARTITION BY token_id ORDER BY at DESC, id DESC) AS n
			FROM token_refusals r WHERE token_id IN (SELECT value FROM json_each(?)))
		WHERE n <= ? ORDER BY token_id, at DESC, id DESC`, string(ids), limit)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.TokenRefusal
	for rows.Next() {
		var r tollgate.TokenRefusal
		var at int64
		if err := rows.Scan(&r.TokenID, &at, &r.Address, &r.UserAgent, &r.Reason); err != nil {
			return nil, dbError(err, "", "")
		}
		r.At = fromMicros(at)
		out = append(out, r)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) TokenAddressCounts(ctx context.Context, accountID string, since, until time.Time) (map[string]int, error) {
	rows, err := t.q.QueryContext(ctx, `
		SELECT token_id, count(DISTINCT address) FROM usage_addresses
		WHERE account_id = ? AND token_id <> '' AND day >= ? AND day < ?
		GROUP BY token_id`, accountID, tollgate.EpochDay(since), tollgate.EpochDay(until))
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, dbError(err, "", "")
		}
		out[id] = n
	}
	return out, dbError(rows.Err(), "", "")
}
