package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
)

// Background jobs: sweeps that must run once per interval however many
// replicas there are. Every replica looks every jobCheckInterval; for
// each job it asks the store for the claim (Service.ClaimJob, a
// conditional upsert of the job's row, see tollgate.JobTx), and runs the
// job only when it won. So one replica pauses the stale tokens and logs
// it, and a replica that looks right after it finished finds the job not
// due. Looking more often than the jobs are due keeps the gap between two
// runs near the interval whichever replicas come and go.

// jobCheckInterval is how often a replica looks for a due job.
const jobCheckInterval = time.Minute

// claimSlack is taken off a job's interval when it is claimed: a look
// comes a little earlier or later in its minute each time (the jobs
// before it in the round take their time), and without the slack a look
// a millisecond earlier than the last one would find the job not due and
// push it a whole look later.
const claimSlack = jobCheckInterval / 2

// jobEvery is how often the sweeps that clean up run, on one replica.
const jobEvery = 10 * time.Minute

// backgroundJob is one sweep: it returns how many things it changed.
type backgroundJob struct {
	name  string
	every time.Duration // how often it runs, on one replica
	run   func(ctx context.Context) (int, error)
	// done is the log message when the run changed something, unit the
	// name of the count.
	done, unit string
}

// backgroundJobs are the jobs, run through svc.
func (m *Main) backgroundJobs(svc *tollgate.Service) []backgroundJob {
	return []backgroundJob{
		{tollgate.JobAutoPause, jobEvery, svc.AutoPause, "auto-pause: tokens unused past their account's limit paused", "tokens"},
		{tollgate.JobSweepEphemeral, jobEvery, func(ctx context.Context) (int, error) {
			return svc.SweepEphemeral(ctx, m.Config.OIDC.EphemeralRetention.Duration())
		}, "ended ephemeral credentials deleted", "credentials"},
		// Every look: a warning is news, and a late one surprises.
		{tollgate.JobExpirySweep, jobCheckInterval, func(ctx context.Context) (int, error) {
			return svc.SweepExpiry(ctx, m.Config.Notify.Thresholds())
		}, "expiry notifications written", "events"},
	}
}

// jobStats counts a job's rounds on this replica (tollgate_background_jobs_total).
type jobStats struct{ ran, failed, notDue atomic.Uint64 }

type jobWiring struct {
	stop  context.CancelFunc
	done  chan struct{}
	stats map[string]*jobStats // by job name; read by the metrics collector
}

// startJobs registers the jobs' metrics and starts the loop; the first
// look is one jobCheckInterval after start.
func (m *Main) startJobs() {
	stats := map[string]*jobStats{}
	for _, j := range m.backgroundJobs(m.Service) {
		stats[j.name] = &jobStats{}
	}
	m.Metrics.Register(JobsCollector{Stats: func() map[string]JobStats {
		out := map[string]JobStats{}
		for name, s := range stats {
			out[name] = JobStats{Ran: s.ran.Load(), Failed: s.failed.Load(), NotDue: s.notDue.Load()}
		}
		return out
	}})
	ctx, cancel := context.WithCancel(context.Background())
	m.jobs = jobWiring{stop: cancel, done: make(chan struct{}), stats: stats}
	go func() {
		defer close(m.jobs.done)
		t := time.NewTicker(jobCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.runJobs(ctx)
			}
		}
	}()
}

// runJobs is one look: it claims each due job and runs the ones this
// replica won, and returns their names.
func (m *Main) runJobs(ctx context.Context) []string {
	return m.runJobsWith(ctx, m.Service)
}

// runJobsWith is runJobs through svc (a test's, with its own clock).
func (m *Main) runJobsWith(ctx context.Context, svc *tollgate.Service) []string {
	var ran []string
	for _, j := range m.backgroundJobs(svc) {
		st := m.jobs.stats[j.name]
		ok, err := svc.ClaimJob(ctx, j.name, j.every-claimSlack)
		if err != nil {
			st.failed.Add(1)
			m.Logger.Warn("background job: claim failed", "job", j.name, "err", err)
			continue
		}
		if !ok {
			st.notDue.Add(1)
			continue
		}
		ran = append(ran, j.name)
		n, err := j.run(ctx)
		switch {
		case err != nil:
			// The claim stands: the job runs again an interval from now.
			st.failed.Add(1)
			m.Logger.Warn("background job failed", "job", j.name, "err", err)
			continue
		case n > 0:
			m.Logger.Info(j.done, "job", j.name, j.unit, n)
		}
		st.ran.Add(1)
	}
	return ran
}

// stopJobs ends the loop and waits for a round in flight: call it before
// the store closes.
func (m *Main) stopJobs() {
	if m.jobs.stop == nil {
		return
	}
	m.jobs.stop()
	<-m.jobs.done
	m.jobs.stop = nil
}
