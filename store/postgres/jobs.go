package postgres

import (
	"context"
	"time"

	"github.com/tollgate/tollgate"
)

// Background job claims (tollgate.JobTx, migration 0012).

var _ tollgate.JobTx = (*tx)(nil)

// ClaimJob is one upsert. Under READ COMMITTED a second transaction that
// meets the row the first has just inserted or updated waits for its row
// lock, then judges the WHERE against the committed row: its next_run_at
// is in the future, so nothing is updated and no row comes back. Exactly
// one of the racers wins, with no advisory lock and no retry.
func (t *tx) ClaimJob(ctx context.Context, name string, now time.Time, every time.Duration) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	tag, err := t.q.Exec(ctx, `
		INSERT INTO jobs (name, claimed_at, next_run_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET claimed_at = excluded.claimed_at, next_run_at = excluded.next_run_at
		WHERE jobs.next_run_at <= excluded.claimed_at`,
		name, utc(now), utc(now.Add(every)))
	if err != nil {
		return false, dbError(err, "", "")
	}
	return tag.RowsAffected() == 1, nil
}
