package sqlite

import (
	"context"
	"time"

	"github.com/tollgate/tollgate"
)

// Background job claims (tollgate.JobTx, migration 0012). SQLite lets one
// writer in at a time, so the conditional upsert needs nothing more to
// let exactly one of several claimers win.

var _ tollgate.JobTx = (*tx)(nil)

func (t *tx) ClaimJob(ctx context.Context, name string, now time.Time, every time.Duration) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	res, err := t.q.ExecContext(ctx, `
		INSERT INTO jobs (name, claimed_at, next_run_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET claimed_at = excluded.claimed_at, next_run_at = excluded.next_run_at
		WHERE jobs.next_run_at <= excluded.claimed_at`,
		name, micros(now), micros(now.Add(every)))
	if err != nil {
		return false, dbError(err, "", "")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, dbError(err, "", "")
	}
	return n == 1, nil
}
