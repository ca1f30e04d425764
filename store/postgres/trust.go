package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

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
	_, err = t.guardedExec(ctx, `
		INSERT INTO trust_policies (id, account_id, audience, doc, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		p.ID, p.AccountID, p.Audience, doc, utc(p.CreatedAt), utc(p.UpdatedAt))
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
	tag, err := t.q.Exec(ctx, `UPDATE trust_policies SET audience = $1, doc = $2, updated_at = $3 WHERE id = $4`,
		p.Audience, doc, utc(p.UpdatedAt), p.ID)
	return affectedOne(tag, err, "trust policy not found", "")
}

func (t *tx) DeleteTrustPolicy(ctx context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	tag, err := t.q.Exec(ctx, `DELETE FROM trust_policies WHERE id = $1`, id)
	return affectedOne(tag, err, "trust policy not found", "")
}

func (t *tx) TrustPolicyByID(ctx context.Context, id string) (*tollgate.TrustPolicy, error) {
	ps, err := t.trustPolicies(ctx, `SELECT `+trustColumns+`WHERE p.id = $1`, id)
	if err == nil && len(ps) == 0 {
		err = tollgate.Errorf(tollgate.ENOTFOUND, "trust policy not found")
	}
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

func (t *tx) ListTrustPolicies(ctx context.Context, accountID string) ([]*tollgate.TrustPolicy, error) {
	return t.trustPolicies(ctx, `SELECT `+trustColumns+`WHERE p.account_id = $1 ORDER BY p.created_at, p.seq`, accountID)
}

func (t *tx) TrustPoliciesByAudience(ctx context.Context, aud string) ([]*tollgate.TrustPolicy, error) {
	return t.trustPolicies(ctx, `SELECT `+trustColumns+`WHERE p.audience = $1 ORDER BY p.created_at, p.seq`, aud)
}

func (t *tx) trustPolicies(ctx context.Context, query string, arg any) ([]*tollgate.TrustPolicy, error) {
	rows, err := t.q.Query(ctx, query, arg)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*tollgate.TrustPolicy, error) {
		var (
			p   tollgate.TrustPolicy
			doc string
		)
		if err := row.Scan(&p.ID, &p.AccountID, &p.AccountName, &p.Audience, &doc, &p.CreatedAt, &p.UpdatedAt); err != nil {
			return nil, err
		}
		if err := codec.UnmarshalTrust(doc, &p); err != nil {
			return nil, tollgate.Internal(err)
		}
		p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
		return &p, nil
	})
	return out, dbError(err, "", "")
}

func (t *tx) RevokeIssuedTokens(ctx context.Context, policyID string, at time.Time) ([]string, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	rows, err := t.q.Query(ctx, `
		UPDATE tokens SET revoked_at = $1, updated_at = $1
		WHERE trust_policy_id = $2 AND revoked_at IS NULL
		RETURNING id`, utc(at), policyID)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, dbError(err, "", "")
}

func (t *tx) DeleteEndedEphemeral(ctx context.Context, before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	tag, err := t.q.Exec(ctx, `
		DELETE FROM tokens WHERE trust_policy_id IS NOT NULL AND (expires_at < $1 OR revoked_at < $1)`, utc(before))
	if err != nil {
		return 0, dbError(err, "", "")
	}
	return int(tag.RowsAffected()), nil
}
