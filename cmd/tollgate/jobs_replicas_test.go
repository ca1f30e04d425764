package main

import (
	"context"
	"github.com/tollgate/tollgate/internal/testenv"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
)

// TestAutoPauseRunsOnOneReplica runs two replicas on one PostgreSQL and
// has both look for due background jobs at the same moment, five times
// in a row, as their tickers would within one interval. The token left
// unused past its account's auto-pause limit is paused once: one audit
// entry, one token.paused event at the account's webhook; and of the ten
// looks exactly one ran each sweep (tollgate_background_jobs_total summed
// over the replicas), so a sweep's work and log line are not repeated by
// every replica.
func TestAutoPauseRunsOnOneReplica(t *testing.T) {
	ms := startReplicasWith(t, 2, func(c *config.Config) {
		c.Notify.AllowPrivateWebhooks = true // the receiver is on loopback
		c.Notify.Interval = config.Duration(200 * time.Millisecond)
	})
	ctx := context.Background()

	// The account and its default token as they were made 40 days ago
	// (a Service on the shared store with the clock back then), never
	// used since; its policy pauses tokens unused for 30 days.
	keys, err := config.LoadKeys(ms[0].Config.Keys)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := tollgate.NewKeys(keys.Lookup, keys.Seal)
	if err != nil {
		t.Fatal(err)
	}
	then := tollgate.NewService(ms[0].Store, tk)
	then.Now = func() time.Time { return time.Now().Add(-40 * 24 * time.Hour) }
	_, stale, _, err := then.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].Service.SetAccountPolicy(ctx, "operator", "acme", tollgate.AccountPolicy{AutoPauseAfter: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	fresh, _, err := ms[0].Service.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "fresh", Expiry: tollgate.Expiry{Never: true}})
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{t: t, keys: map[string]int{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, secret, err := ms[0].Service.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: "acme", URL: srv.URL + "/hook", Events: []string{tollgate.EventTokenPaused}})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.secret = secret.Reveal() // the receiver checks signatures with it
	h.mu.Unlock()

	for range 5 {
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() { m.runJobs(ctx) })
		}
		wg.Wait()
	}

	for _, job := range []string{tollgate.JobAutoPause, tollgate.JobSweepEphemeral} {
		var ran, failed float64
		for _, m := range ms {
			rec := httptest.NewRecorder()
			m.metricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			r, _ := metricValue(rec.Body.String(), `tollgate_background_jobs_total{outcome="ran",task="`+job+`"}`)
			f, _ := metricValue(rec.Body.String(), `tollgate_background_jobs_total{outcome="failed",task="`+job+`"}`)
			ran, failed = ran+r, failed+f
		}
		if ran != 1 || failed != 0 {
			t.Errorf("%s: ran %v times and failed %v times over both replicas' ten looks, want one run", job, ran, failed)
		}
	}

	tok, a, err := ms[1].Service.Token(ctx, stale.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st := tok.Status(a, time.Now()); st != tollgate.TokenPaused {
		t.Fatalf("the token unused for 40 days is %s, want paused", st)
	}
	if tok, a, _ := ms[1].Service.Token(ctx, fresh.ID); tok.Status(a, time.Now()) != tollgate.TokenActive {
		t.Fatalf("the token made today is %s, want active", tok.Status(a, time.Now()))
	}
	events, err := ms[0].Service.ListAudit(ctx, "acme", tollgate.AuditPage{})
	if err != nil {
		t.Fatal(err)
	}
	var pauses []string
	for _, e := range events {
		if e.Action == tollgate.ActionTokenPaused {
			pauses = append(pauses, e.Actor+" "+e.Target)
		}
	}
	if len(pauses) != 1 || pauses[0] != tollgate.ActorSystem+" "+stale.ID {
		t.Fatalf("token.paused audit entries = %q, want one by %s for %s", pauses, tollgate.ActorSystem, stale.ID)
	}

	waitDelivered(t, ms[0].Service, "acme")
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.types) != 1 || h.types[0] != tollgate.EventTokenPaused {
		t.Fatalf("the webhook got %q, want one token.paused", strings.Join(h.types, ", "))
	}
	for key, n := range h.keys {
		if n != 1 {
			t.Errorf("event %s delivered %d times", key, n)
		}
	}
}

// TestExpirySweepRunsOnOneReplica runs three replicas on one PostgreSQL,
// each with its deliverer ticking every 200ms. The deliverers no longer
// sweep for expiry warnings: a token expiring in three days gets none
// while only they run. Then all three look for due background jobs at
// the same moment, five times in a row: of the fifteen looks exactly one
// ran the expiry sweep (tollgate_background_jobs_total summed over the
// replicas, the other fourteen not due), and the token's 7-day
// token.expiring reaches the webhook once.
func TestExpirySweepRunsOnOneReplica(t *testing.T) {
	ms := startReplicasWith(t, 3, func(c *config.Config) {
		c.Notify.AllowPrivateWebhooks = true // the receiver is on loopback
		c.Notify.Interval = config.Duration(200 * time.Millisecond)
	})
	ctx := context.Background()
	svc := ms[0].Service
	if _, _, _, err := svc.CreateAccount(ctx, "operator", "acme"); err != nil {
		t.Fatal(err)
	}
	tok, _, err := svc.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: "acme", Name: "ci",
		Expiry: tollgate.Expiry{At: time.Now().Add(3 * 24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{t: t, keys: map[string]int{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, secret, err := svc.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: "acme", URL: srv.URL + "/hook", Events: []string{tollgate.EventTokenExpiring}})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.secret = secret.Reveal() // the receiver checks signatures with it
	h.mu.Unlock()

	expiring := func() []*tollgate.Delivery {
		t.Helper()
		ds, err := svc.ListDeliveries(ctx, "acme", 200)
		if err != nil {
			t.Fatal(err)
		}
		var out []*tollgate.Delivery
		for _, d := range ds {
			if d.Event.Type == tollgate.EventTokenExpiring {
				out = append(out, d)
			}
		}
		return out
	}
	time.Sleep(time.Second) // five ticks of every replica's deliverer
	if ds := expiring(); len(ds) != 0 {
		t.Fatalf("the deliverers wrote %d token.expiring events; the sweep is a background job now", len(ds))
	}

	for range 5 {
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() { m.runJobs(ctx) })
		}
		wg.Wait()
	}
	var ran, failed, notDue float64
	for _, m := range ms {
		rec := httptest.NewRecorder()
		m.metricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body := rec.Body.String()
		r, _ := metricValue(body, `tollgate_background_jobs_total{outcome="ran",task="`+tollgate.JobExpirySweep+`"}`)
		f, _ := metricValue(body, `tollgate_background_jobs_total{outcome="failed",task="`+tollgate.JobExpirySweep+`"}`)
		n, _ := metricValue(body, `tollgate_background_jobs_total{outcome="not_due",task="`+tollgate.JobExpirySweep+`"}`)
		ran, failed, notDue = ran+r, failed+f, notDue+n
	}
	if ran != 1 || failed != 0 || notDue != 14 {
		t.Errorf("expiry sweep over the replicas' fifteen looks: ran %v, failed %v, not due %v; want 1, 0, 14", ran, failed, notDue)
	}

	waitDelivered(t, svc, "acme")
	var mine []string
	for _, d := range expiring() {
		p, err := d.Event.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if p.Token.ID == tok.ID {
			mine = append(mine, p.Threshold+" "+string(d.Status))
		}
	}
	if len(mine) != 1 || mine[0] != "7d "+string(tollgate.DeliveryDelivered) {
		t.Fatalf("token.expiring deliveries for the token = %q, want one 7d, delivered", mine)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, n := range h.keys {
		if n != 1 {
			t.Errorf("event %s delivered %d times", key, n)
		}
	}
}

// TestJobsRunEveryIntervalThoughLooksJitter: a replica's looks come a
// little earlier or later in their minute each time; a look a
// millisecond earlier in its minute than the one that ran a job must
// still find it due once its interval is up, or the job slips a whole
// look (the expiry sweep would run every other minute).
func TestJobsRunEveryIntervalThoughLooksJitter(t *testing.T) {
	m := startReplicas(t, 1)[0]
	clk := testenv.NewClock(time.Now().Add(time.Hour)) // past any look the replica made itself
	svc := *m.Service                                  // the replica's store, this test's clock
	svc.Now = clk.Now
	ctx := context.Background()
	clk.Add(5 * time.Millisecond)
	if ran := m.runJobsWith(ctx, &svc); len(ran) != len(m.backgroundJobs(&svc)) {
		t.Fatalf("first look ran %q, want every job", ran)
	}
	start := clk.Now()
	for minute := 1; minute <= 10; minute++ {
		// Each look a millisecond earlier in its minute than the last.
		clk.Set(start.Add(time.Duration(minute)*jobCheckInterval - time.Duration(minute)*time.Millisecond))
		ran := m.runJobsWith(ctx, &svc)
		if !slices.Contains(ran, tollgate.JobExpirySweep) {
			t.Errorf("look %d: the expiry sweep (every %v) did not run: %q", minute, jobCheckInterval, ran)
		}
		if want := minute == 10; slices.Contains(ran, tollgate.JobAutoPause) != want {
			t.Errorf("look %d: auto-pause (every %v) ran %v, want %v", minute, jobEvery, !want, want)
		}
	}
}
