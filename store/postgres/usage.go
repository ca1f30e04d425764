package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
)

// Pull usage (tollgate.UsageTx): days are stored as days since the Unix
// epoch. A batch goes in one round trip of four statements over arrays;
// rows are written in key order
// (tollgate.MergeUsage), so replicas adding to the same keys at once wait
// for each other instead of deadlocking. The distinct address count is
// recounted after the row lock on the aggregate is held, so it sees every
// committed replica's addresses.

var _ tollgate.UsageTx = (*tx)(nil)

func (t *tx) AddUsage(ctx context.Context, deltas []tollgate.UsageDelta) error {
	if err := t.writable(); err != nil {
		return err
	}
	merged := tollgate.MergeUsage(deltas)
	if len(merged) == 0 {
		return nil
	}
	// Four statements over arrays (unnest), whatever the batch's size.
	// Keys are unique and sorted (MergeUsage), so no statement touches a
	// row twice and every writer locks rows in the same order.
	var (
		day                             []int32
		tok, acct, kind, repo           []string
		pulls, manifests, bytes         []int64
		aDay                            []int32
		aTok, aAcct, aKind, aRepo, aAdr []string
		aPulls                          []int64
		aFirst, aLast                   []time.Time
		gDay                            []int32
		gTok, gAcct, gKind, gRepo, gUA  []string
		gPulls                          []int64
		rDay                            []int32
		rTok, rKind, rRepo              []string
	)
	for _, d := range merged {
		dd := int32(tollgate.EpochDay(d.Day))
		day, tok, acct, kind, repo = append(day, dd), append(tok, d.TokenID), append(acct, d.AccountID), append(kind, d.Kind), append(repo, d.Repository)
		pulls, manifests, bytes = append(pulls, d.Pulls), append(manifests, d.Manifests), append(bytes, d.Bytes)
		for _, a := range d.Addresses {
			aDay, aTok, aAcct, aKind, aRepo = append(aDay, dd), append(aTok, d.TokenID), append(aAcct, d.AccountID), append(aKind, d.Kind), append(aRepo, d.Repository)
			aAdr, aPulls, aFirst, aLast = append(aAdr, a.Address), append(aPulls, a.Pulls), append(aFirst, utc(a.First)), append(aLast, utc(a.Last))
		}
		for _, g := range d.Agents {
			gDay, gTok, gAcct, gKind, gRepo = append(gDay, dd), append(gTok, d.TokenID), append(gAcct, d.AccountID), append(gKind, d.Kind), append(gRepo, d.Repository)
			gUA, gPulls = append(gUA, g.UserAgent), append(gPulls, g.Pulls)
		}
		if len(d.Addresses) > 0 {
			rDay, rTok, rKind, rRepo = append(rDay, dd), append(rTok, d.TokenID), append(rKind, d.Kind), append(rRepo, d.Repository)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO usage_days AS u (day, token_id, account_id, kind, repository, pulls, manifests, bytes)
		SELECT * FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[])
		ON CONFLICT (day, token_id, kind, repository) DO UPDATE SET
			pulls = u.pulls + excluded.pulls,
			manifests = u.manifests + excluded.manifests,
			bytes = u.bytes + excluded.bytes`,
		day, tok, acct, kind, repo, pulls, manifests, bytes)
	if len(aDay) > 0 {
		b.Queue(`
			INSERT INTO usage_addresses AS u (day, token_id, account_id, kind, repository, address, pulls, first_seen, last_seen)
			SELECT * FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::timestamptz[], $9::timestamptz[])
			ON CONFLICT (day, token_id, kind, repository, address) DO UPDATE SET
				pulls = u.pulls + excluded.pulls,
				first_seen = LEAST(u.first_seen, excluded.first_seen),
				last_seen = GREATEST(u.last_seen, excluded.last_seen)`,
			aDay, aTok, aAcct, aKind, aRepo, aAdr, aPulls, aFirst, aLast)
	}
	if len(gDay) > 0 {
		b.Queue(`
			INSERT INTO usage_agents AS u (day, token_id, account_id, kind, repository, user_agent, pulls)
			SELECT * FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
			ON CONFLICT (day, token_id, kind, repository, user_agent) DO UPDATE SET
				pulls = u.pulls + excluded.pulls`,
			gDay, gTok, gAcct, gKind, gRepo, gUA, gPulls)
	}
	if len(rDay) > 0 {
		b.Queue(`
			UPDATE usage_days u SET addresses = c.n
			FROM (SELECT a.day, a.token_id, a.kind, a.repository, count(*) AS n
			      FROM usage_addresses a
			      JOIN unnest($1::integer[], $2::text[], $3::text[], $4::text[]) AS k(day, token_id, kind, repository)
			        USING (day, token_id, kind, repository)
			      GROUP BY a.day, a.token_id, a.kind, a.repository) c
			WHERE u.day = c.day AND u.token_id = c.token_id AND u.kind = c.kind AND u.repository = c.repository`,
			rDay, rTok, rKind, rRepo)
	}
	return dbError(t.q.SendBatch(ctx, b).Close(), "", "")
}

func (t *tx) SeeNetworks(ctx context.Context, nets []tollgate.TokenNetwork) error {
	if err := t.writable(); err != nil {
		return err
	}
	if len(nets) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, n := range nets {
		b.Queue(`
			INSERT INTO token_networks AS n (token_id, network, first_seen, last_seen) VALUES ($1, $2, $3, $4)
			ON CONFLICT (token_id, network) DO UPDATE SET
				first_seen = LEAST(n.first_seen, excluded.first_seen),
				last_seen = GREATEST(n.last_seen, excluded.last_seen)`,
			n.TokenID, n.Network, utc(n.First), utc(n.Last))
	}
	return dbError(t.q.SendBatch(ctx, b).Close(), "", "")
}

// usageWhere selects q's rows ($1 to $5, see usageArgs).
const usageWhere = ` account_id = $1 AND ($2::text = '' OR token_id = $2) AND day >= $3 AND day < $4 `

func usageArgs(q tollgate.UsageQuery) []any {
	return []any{q.AccountID, q.TokenID, tollgate.EpochDay(q.Since), tollgate.EpochDay(q.Until)}
}

func (t *tx) UsageDays(ctx context.Context, q tollgate.UsageQuery) ([]tollgate.UsageDay, error) {
	rows, err := t.q.Query(ctx, `
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
	rows, err := t.q.Query(ctx, `
		SELECT address, sum(pulls)::bigint, min(first_seen), max(last_seen)
		FROM usage_addresses WHERE`+usageWhere+`
		GROUP BY address ORDER BY sum(pulls) DESC, address LIMIT $5`, append(usageArgs(q), limit)...)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.AddressUse
	for rows.Next() {
		var a tollgate.AddressUse
		if err := rows.Scan(&a.Address, &a.Pulls, &a.First, &a.Last); err != nil {
			return nil, dbError(err, "", "")
		}
		a.First, a.Last = a.First.UTC(), a.Last.UTC()
		out = append(out, a)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) UsageAgents(ctx context.Context, q tollgate.UsageQuery, limit int) ([]tollgate.AgentUse, error) {
	rows, err := t.q.Query(ctx, `
		SELECT user_agent, sum(pulls)::bigint FROM usage_agents WHERE`+usageWhere+`
		GROUP BY user_agent ORDER BY sum(pulls) DESC, user_agent LIMIT $5`, append(usageArgs(q), limit)...)
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
	rows, err := t.q.Query(ctx, `
		SELECT n.token_id, n.network, n.first_seen, n.last_seen
		FROM token_networks n JOIN tokens t ON t.id = n.token_id
		WHERE t.account_id = $1 ORDER BY n.token_id, n.first_seen, n.network`, accountID)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []tollgate.TokenNetwork
	for rows.Next() {
		var n tollgate.TokenNetwork
		if err := rows.Scan(&n.TokenID, &n.Network, &n.First, &n.Last); err != nil {
			return nil, dbError(err, "", "")
		}
		n.First, n.Last = n.First.UTC(), n.Last.UTC()
		out = append(out, n)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) UsageByAccount(ctx context.Context, since, until time.Time) ([]tollgate.AccountUsage, error) {
	rows, err := t.q.Query(ctx, `
		SELECT account_id, sum(pulls)::bigint, sum(bytes)::bigint, max(day) FROM usage_days
		WHERE account_id <> '' AND day >= $1 AND day < $2
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
		{`DELETE FROM usage_addresses WHERE day < $1`, tollgate.EpochDay(detailBefore)},
		{`DELETE FROM usage_agents WHERE day < $1`, tollgate.EpochDay(detailBefore)},
		{`DELETE FROM usage_days WHERE day < $1`, tollgate.EpochDay(aggregatesBefore)},
		{`DELETE FROM token_networks WHERE last_seen < $1`, utc(aggregatesBefore)},
	} {
		tag, err := t.q.Exec(ctx, s.query, s.arg)
		if err != nil {
			return total, dbError(err, "", "")
		}
		total += tag.RowsAffected()
	}
	return total, nil
}
