package tollgate

import (
	"context"
	"time"
)

// Background jobs that must run once per interval however many replicas
// there are (the auto-pause sweep, the ephemeral-credential sweep, the
// expiry-notification sweep). Every
// replica looks now and then; the one that claims the job through the
// store runs it, the others skip it. A claim is a conditional upsert of
// the job's row that moves its next run time forward, so of the replicas
// racing for a due run exactly one wins, and a replica that looks again
// right after the winner finished finds the job not due. The claim is
// committed before the job runs: a replica that dies mid-run leaves the
// job to the next interval (the jobs are idempotent sweeps, so nothing is
// lost but time). Not a PostgreSQL advisory lock: such a lock only keeps
// two runs apart while one is going on, and its keys are shared by every
// schema of the database, so two installations side by side would share
// them.

// Jobs that one replica runs per interval.
const (
	// JobAutoPause pauses tokens unused past their account's
	// AutoPauseAfter (Service.AutoPause).
	JobAutoPause = "auto_pause"
	// JobSweepEphemeral deletes ended ephemeral credentials
	// (Service.SweepEphemeral).
	JobSweepEphemeral = "sweep_ephemeral"
	// JobExpirySweep writes the token.expiring and token.expired events
	// that are due (Service.SweepExpiry). Its once-only event keys stay
	// the safety net should two replicas ever sweep at once.
	JobExpirySweep = "expiry_sweep"
)

// JobTx is how replicas agree on who runs a background job.
type JobTx interface {
	// ClaimJob claims the run of job name that is due at now. It returns
	// true when the job was never claimed or its next run time is at or
	// before now, and then sets the next run time to now+every; else
	// false and changes nothing. Of the transactions racing for one due
	// run, on every replica sharing the store, exactly one gets true
	// (once it commits; a rolled-back claim leaves the job due).
	// EINTERNAL inside View.
	ClaimJob(ctx context.Context, name string, now time.Time, every time.Duration) (bool, error)
}

// maxJobName bounds a job's name (a constant of the code, not input).
const maxJobName = 64

// ClaimJob claims job name for this caller if it is due (see
// JobTx.ClaimJob), in a transaction of its own that is committed before
// it returns: true means run it now, false means another replica ran it
// less than every ago. EINVALID for an empty or long name or an every
// that is not positive.
func (s *Service) ClaimJob(ctx context.Context, name string, every time.Duration) (bool, error) {
	if name == "" || len(name) > maxJobName {
		return false, Errorf(EINVALID, "job name must be 1 to %d bytes", maxJobName)
	}
	if every <= 0 {
		return false, Errorf(EINVALID, "job %s: the interval must be positive", name)
	}
	claimed := false
	err := s.Store.Update(ctx, func(tx Tx) (err error) {
		claimed, err = tx.ClaimJob(ctx, name, s.now(), every)
		return err
	})
	if err != nil {
		return false, err
	}
	return claimed, nil
}
