package sqlite

import (
	"context"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/codec"
)

const trustColumns = `p.id, p.account_id, a.name, p.audience, p.doc, p.created_at, p.updated_at
	FROM trust_policies p JOIN accounts a ON a.id = p.account_id `

func (t *tx) InsertTrustPolicy(ctx context.Context, p *tollgate.TrustPolicy) error {
	if err := t.writable(); err != nil {
		return err
	}
	doc, err := codec.MarshalTrust(p)
	if err != nil {
		return tollgate.Internal(err)
	}
	_, err = t.q.ExecContext(ctx, `
		INSERT INTO trust_policies (id, account_id, audience, doc, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		p.ID, p.AccountID, p.Audience, doc, micros(p.CreatedAt), micros(p.UpdatedAt))
	return dbError(err, "account not found", "a trust policy with this id exists")
}

func (t *tx) UpdateTrustPolicy(ctx context.Context, p *tollgate.TrustPolicy) error {
	if err := t.writable(); err != nil {
		return err
	}
	doc, err := codec.MarshalTrust(p)
	if err != nil {
		return tollgate.Internal(err)
	}
	res, err := t.q.ExecContext(ctx, `UPDATE trust_policies SET audience = ?, doc = ?, updated_at = ? WHERE id = ?`,
		p.Audience, doc, micros(p.UpdatedAt), p.ID)
	return affectedOne(res, err, "trust policy not found", "")
}

func (t *tx) DeleteTrustPolicy(ctx context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, `DELETE FROM trust_policies WHERE id = ?`, id)
	return affectedOne(res, err, "trust policy not found", "")
}

func (t *tx) TrustPolicyByID(ctx context.Context, id string) (*tollgate.TrustPolicy, error) {
	ps, err := t.trustPolicies(ctx, `SELECT `+trustColumns+`WHERE p.id = ?`, id)
	if err == nil && len(ps) == 0 {
		err = tollgate.Errorf(tollgate.ENOTFOUND, "trust policy not found")
	}
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

func (t *tx) ListTrustPolicies(ctx context.Context, accountID string) ([]*tollgate.TrustPolicy, error) {
	return t.trustPolicies(ctx, `SELECT `+trustColumns+`WHERE p.account_id = ? ORDER BY p.created_at, p.rowid`, accountID)
}

func (t *tx) TrustPoliciesByAudience(ctx context.Context, aud string) ([]*tollgate.TrustPolicy, error) {
	return t.trustPolicies(ctx, `SELECT `+trustColumns+`WHERE p.audience = ? ORDER BY p.created_at, p.rowid`, aud)
}

func (t *tx) trustPolicies(ctx context.Context, query string, arg any) ([]*tollgate.TrustPolicy, error) {
	rows, err := t.q.QueryContext(ctx, query, arg)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var out []*tollgate.TrustPolicy
	for rows.Next() {
		var (
			p                  tollgate.TrustPolicy
			doc                string
			created, updatedAt int64
		)
		if err := rows.Scan(&p.ID, &p.AccountID, &p.AccountName, &p.Audience, &doc, &created, &updatedAt); err != nil {
			return nil, dbError(err, "", "")
		}
		if err := codec.UnmarshalTrust(doc, &p); err != nil {
			return nil, tollgate.Internal(err)
		}
		p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updatedAt)
		out = append(out, &p)
	}
	return out, dbError(rows.Err(), "", "")
}

func (t *tx) RevokeIssuedTokens(ctx context.Context, policyID string, at time.Time) ([]string, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	rows, err := t.q.QueryContext(ctx, `
		UPDATE tokens SET revoked_at = ?, updated_at = ?
		WHERE trust_policy_id = ? AND revoked_at IS NULL
		RETURNING id`, micros(at), micros(at), policyID)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, dbError(err, "", "")
		}
		ids = append(ids, id)
	}
	return ids, dbError(rows.Err(), "", "")
}

func (t *tx) DeleteEndedEphemeral(ctx context.Context, before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	res, err := t.q.ExecContext(ctx, `
		DELETE FROM tokens WHERE trust_policy_id IS NOT NULL AND (expires_at < ? OR revoked_at < ?)`,
		micros(before), micros(before))
	if err != nil {
		return 0, dbError(err, "", "")
	}
	n, err := res.RowsAffected()
	return int(n), dbError(err, "", "")
}
