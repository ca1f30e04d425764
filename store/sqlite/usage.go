package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/tollgate/tollgate"
)

// Pull usage (tollgate.UsageTx): days are stored as days since the Unix
// epoch, times as microseconds, like every other time here.

var _ tollgate.UsageTx = (*tx)(nil)

func (t *tx) AddUsage(ctx context.Context, deltas []tollgate.UsageDelta) error {
	if err := t.writable(); err != nil {
		return err
	}
	merged := tollgate.MergeUsage(deltas)
	if len(merged) == 0 {
		return nil
	}
	// Prepared once per batch: a batch is thousands of statements.
	var stmts [4]*sql.Stmt
	for i, q := range []string{`
		INSERT INTO usage_days (day, token_id, account_id, kind, repository, pulls, manifests, bytes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (day, token_id, kind, repository) DO UPDATE SET
			pulls = pulls + excluded.pulls,
			manifests = manifests + excluded.manifests,
			bytes = bytes + excluded.bytes`, `
		INSERT INTO usage_addresses (day, token_id, account_id, kind, repository, address, pulls, first_seen, last_seen)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (day, token_id, kind, repository, address) DO UPDATE SET
			pulls = pulls + excluded.pulls,
			first_seen = min(first_seen, excluded.first_seen),
			last_seen = max(last_seen, excluded.last_seen)`, `
		INSERT INTO usage_agents (day, token_id, account_id, kind, repository, user_agent, pulls)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (day, token_id, kind, repository, user_agent) DO UPDATE SET
			pulls = pulls + excluded.pulls`, `
		UPDATE usage_days SET addresses = (
			SELECT count(*) FROM usage_addresses a
			WHERE a.day = usage_days.day AND a.token_id = usage_days.token_id
			  AND a.kind = usage_days.kind AND a.repository = usage_days.repository)
		WHERE day = ? AND token_id = ? AND kind = ? AND repository = ?`,
	} {
		st, err := t.q.PrepareContext(ctx, q)
		if err != nil {
			return dbError(err, "", "")
		}
		defer st.Close()
		stmts[i] = st
	}
	days, addrs, agents, recount := stmts[0], stmts[1], stmts[2], stmts[3]
	for _, d := range merged {
		day := tollgate.EpochDay(d.Day)
		if _, err := days.ExecContext(ctx, day, d.TokenID, d.AccountID, d.Kind, d.Repository, d.Pulls, d.Manifests, d.Bytes); err != nil {
			return dbError(err, "", "")
		}
		for _, a := range d.Addresses {
			if _, err := addrs.ExecContext(ctx, day, d.TokenID, d.AccountID, d.Kind, d.Repository, a.Address, a.Pulls, micros(a.First), micros(a.Last)); err != nil {
				return dbError(err, "", "")
			}
		}
		for _, a := range d.Agents {
			if _, err := agents.ExecContext(ctx, day, d.TokenID, d.AccountID, d.Kind, d.Repository, a.UserAgent, a.Pulls); err != nil {
				return dbError(err, "", "")
			}
		}
		if len(d.Addresses) > 0 {
			if _, err := recount.ExecContext(ctx, day, d.TokenID, d.Kind, d.Repository); err != nil {
				return dbError(err, "", "")
			}
		}
	}
	return nil
}

func (t *tx) SeeNetworks(ctx context.Context, nets []tollgate.TokenNetwork) error {
	if err := t.writable(); err != nil {
		return err
	}
	for _, n := range nets {
		if _, err := t.q.ExecContext(ctx, `
			INSERT INTO token_networks (token_id, network, first_seen, last_seen) VALUES (?, ?, ?, ?)
			ON CONFLICT (token_id, network) DO UPDATE SET
				first_seen = min(first_seen, excluded.first_seen),
				last_seen = max(last_seen, excluded.last_seen)`,
			n.TokenID, n.Network, micros(n.First), micros(n.Last)); err != nil {
			return dbError(err, "", "")
		}
	}
	return nil
}

// usageWhere selects q's rows; its arguments follow the query's own.
const usageWhere = ` account_id = ? AND (? = '' OR token_id = ?) AND day >= ? AND day < ? `

func usageArgs(q tollgate.UsageQuery) []any {
	return []any{q.AccountID, q.TokenID, q.TokenID, tollgate.EpochDay(q.Since), tollgate.EpochDay(q.Until)}
}

func (t *tx) UsageDays(ctx context.Context, q tollgate.UsageQuery) ([]tollgate.UsageDay, error) {
	rows, err := t.q.QueryContext(ctx, `
		SELECT day, token_id, account_id, kind, repository, pulls, manifests, bytes, addresses
		FROM usage_days WHERE`+usageWhere+`ORDER BY day, kind, repository, token_id`, usageArgs(q)...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.UsageDay
	for rows.Next() {
		var d tollgate.UsageDay
		var day int64
		if err := rows.Scan(&day, &d.TokenID, &d.AccountID, &d.Kind, &d.Repository, &d.Pulls, &d.Manifests, &d.Bytes, &d.Addresses); err != nil {
			return nil, dbError(err, "", "")
		}
		d.Day = tollgate.FromEpochDay(day)
		out = append(out, d)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) UsageAddresses(ctx context.Context, q tollgate.UsageQuery, limit int) ([]tollgate.AddressUse, error) {
	rows, err := t.q.QueryContext(ctx, `
		SELECT address, sum(pulls), min(first_seen), max(last_seen)
		FROM usage_addresses WHERE`+usageWhere+`
		GROUP BY address ORDER BY sum(pulls) DESC, address LIMIT ?`, append(usageArgs(q), limit)...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.AddressUse
	for rows.Next() {
		var a tollgate.AddressUse
		var first, last int64
		if err := rows.Scan(&a.Address, &a.Pulls, &first, &last); err != nil {
			return nil, dbError(err, "", "")
		}
		a.First, a.Last = fromMicros(first), fromMicros(last)
		out = append(out, a)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) UsageAgents(ctx context.Context, q tollgate.UsageQuery, limit int) ([]tollgate.AgentUse, error) {
	rows, err := t.q.QueryContext(ctx, `
		SELECT user_agent, sum(pulls) FROM usage_agents WHERE`+usageWhere+`
		GROUP BY user_agent ORDER BY sum(pulls) DESC, user_agent LIMIT ?`, append(usageArgs(q), limit)...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.AgentUse
	for rows.Next() {
		var a tollgate.AgentUse
		if err := rows.Scan(&a.UserAgent, &a.Pulls); err != nil {
			return nil, dbError(err, "", "")
		}
		out = append(out, a)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) TokenNetworks(ctx context.Context, accountID string) ([]tollgate.TokenNetwork, error) {
	rows, err := t.q.QueryContext(ctx, `
		SELECT n.token_id, n.network, n.first_seen, n.last_seen
		FROM token_networks n JOIN tokens t ON t.id = n.token_id
		WHERE t.account_id = ? ORDER BY n.token_id, n.first_seen, n.network`, accountID)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.TokenNetwork
	for rows.Next() {
		var n tollgate.TokenNetwork
		var first, last int64
		if err := rows.Scan(&n.TokenID, &n.Network, &first, &last); err != nil {
			return nil, dbError(err, "", "")
		}
		n.First, n.Last = fromMicros(first), fromMicros(last)
		out = append(out, n)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) UsageByAccount(ctx context.Context, since, until time.Time) ([]tollgate.AccountUsage, error) {
	rows, err := t.q.QueryContext(ctx, `
		SELECT account_id, sum(pulls), sum(bytes), max(day) FROM usage_days
		WHERE account_id <> '' AND day >= ? AND day < ?
		GROUP BY account_id ORDER BY sum(pulls) DESC, sum(bytes) DESC, account_id`,
		tollgate.EpochDay(since), tollgate.EpochDay(until))
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.AccountUsage
	for rows.Next() {
		var a tollgate.AccountUsage
		var last int64
		if err := rows.Scan(&a.AccountID, &a.Pulls, &a.Bytes, &last); err != nil {
			return nil, dbError(err, "", "")
		}
		a.LastDay = tollgate.FromEpochDay(last)
		out = append(out, a)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) PruneUsage(ctx context.Context, detailBefore, aggregatesBefore time.Time) (int64, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	var total int64
	for _, s := range []struct {
		query string
		arg   any
	}{
		{`DELETE FROM usage_addresses WHERE day < ?`, tollgate.EpochDay(detailBefore)},
		{`DELETE FROM usage_agents WHERE day < ?`, tollgate.EpochDay(detailBefore)},
		{`DELETE FROM usage_days WHERE day < ?`, tollgate.EpochDay(aggregatesBefore)},
		{`DELETE FROM token_networks WHERE last_seen < ?`, micros(aggregatesBefore)},
	} {
		res, err := t.q.ExecContext(ctx, s.query, s.arg)
		if err != nil {
			return total, dbError(err, "", "")
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}
