package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// Background job claims (tollgate.JobTx): of the replicas that look for a
// due job, one runs it per interval.

func testJobs(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tollgate.Store)
	}{
		{"ConcurrentClaimersExactlyOneWinsEachInterval", jobsConcurrent},
		{"ClaimRightAfterTheWinnerLosesUntilTheIntervalEnds", jobsInterval},
		{"JobsAreClaimedIndependently", jobsIndependent},
		{"RolledBackClaimLeavesTheJobDue", jobsRollback},
		{"ViewRejectsClaims", jobsViewReadOnly},
		{"ServiceRefusesBadArguments", jobsBadArguments},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

const jobEvery = 10 * time.Minute

func jobClaim(t *testing.T, s tollgate.Store, name string, now time.Time) bool {
	t.Helper()
	ok, err := usageService(s, now).ClaimJob(t.Context(), name, jobEvery)
	if err != nil {
		t.Fatalf("ClaimJob(%s, %s): %v", name, now.Format(time.TimeOnly), err)
	}
	return ok
}

// jobsConcurrent: eight claimers (replicas) start together for each of
// three due runs; one wins each.
func jobsConcurrent(t *testing.T, s tollgate.Store) {
	const claimers = 8
	for round := range 3 {
		now := txT0.Add(time.Duration(round) * jobEvery)
		start := make(chan struct{})
		var wg sync.WaitGroup
		results := make(chan error, claimers)
		won := make(chan bool, claimers)
		for range claimers {
			wg.Go(func() {
				svc := usageService(s, now)
				<-start
				ok, err := svc.ClaimJob(t.Context(), tollgate.JobAutoPause, jobEvery)
				results <- err
				won <- ok
			})
		}
		close(start)
		wg.Wait()
		close(results)
		close(won)
		for err := range results {
			if err != nil {
				t.Fatalf("round %d: ClaimJob: %v", round, err)
			}
		}
		winners := 0
		for ok := range won {
			if ok {
				winners++
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d of %d concurrent claimers won, want exactly 1", round, winners, claimers)
		}
	}
}

// jobsInterval: a replica that looks right after the winner finished
// does not run the job again; once the interval has passed, one does.
func jobsInterval(t *testing.T, s tollgate.Store) {
	if !jobClaim(t, s, tollgate.JobAutoPause, txT0) {
		t.Fatal("the first claim of a job never run lost")
	}
	for _, d := range []time.Duration{0, time.Second, jobEvery - time.Microsecond} {
		if jobClaim(t, s, tollgate.JobAutoPause, txT0.Add(d)) {
			t.Fatalf("a claim %v after the winner's won: the job would run twice in one interval", d)
		}
	}
	if !jobClaim(t, s, tollgate.JobAutoPause, txT0.Add(jobEvery)) {
		t.Fatal("the claim once the interval has passed lost: the job would never run again")
	}
	if jobClaim(t, s, tollgate.JobAutoPause, txT0.Add(jobEvery+time.Second)) {
		t.Fatal("a second claim in the next interval won")
	}
	// A replica that was down for hours claims once, then the interval
	// counts from its claim.
	late := txT0.Add(5 * time.Hour)
	if !jobClaim(t, s, tollgate.JobAutoPause, late) || jobClaim(t, s, tollgate.JobAutoPause, late.Add(jobEvery/2)) {
		t.Fatal("after a long pause: want one claim won, the next within the interval lost")
	}
}

func jobsIndependent(t *testing.T, s tollgate.Store) {
	if !jobClaim(t, s, tollgate.JobAutoPause, txT0) {
		t.Fatal("claim of auto_pause lost")
	}
	if !jobClaim(t, s, tollgate.JobSweepEphemeral, txT0) {
		t.Fatal("claim of sweep_ephemeral lost because auto_pause was claimed")
	}
	if jobClaim(t, s, tollgate.JobSweepEphemeral, txT0.Add(time.Second)) {
		t.Fatal("sweep_ephemeral claimed twice in one interval")
	}
}

// jobsRollback: a claim whose transaction does not commit leaves the
// job to the next caller.
func jobsRollback(t *testing.T, s tollgate.Store) {
	boom := errors.New("boom")
	err := s.Update(t.Context(), func(tx tollgate.Tx) error {
		ok, err := tx.ClaimJob(t.Context(), tollgate.JobAutoPause, txT0, jobEvery)
		if err != nil || !ok {
			t.Fatalf("ClaimJob = %v, %v", ok, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if !jobClaim(t, s, tollgate.JobAutoPause, txT0) {
		t.Fatal("the job stayed claimed after its claim was rolled back")
	}
}

func jobsViewReadOnly(t *testing.T, s tollgate.Store) {
	err := s.View(t.Context(), func(tx tollgate.Tx) error {
		_, err := tx.ClaimJob(t.Context(), tollgate.JobAutoPause, txT0, jobEvery)
		return err
	})
	if tollgate.ErrorCode(err) != tollgate.EINTERNAL {
		t.Fatalf("ClaimJob inside View = %v, want EINTERNAL", err)
	}
	if !jobClaim(t, s, tollgate.JobAutoPause, txT0) {
		t.Fatal("the claim refused inside View left the job claimed")
	}
}

func jobsBadArguments(t *testing.T, s tollgate.Store) {
	svc := usageService(s, txT0)
	for _, tc := range []struct {
		name  string
		every time.Duration
	}{{"", jobEvery}, {string(make([]byte, 65)), jobEvery}, {tollgate.JobAutoPause, 0}, {tollgate.JobAutoPause, -time.Minute}} {
		if _, err := svc.ClaimJob(t.Context(), tc.name, tc.every); tollgate.ErrorCode(err) != tollgate.EINVALID {
			t.Errorf("ClaimJob(%q, %v) = %v, want EINVALID", tc.name, tc.every, err)
		}
	}
}
