package postgres_test

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/postgres"
	"github.com/tollgate/tollgate/store/storetest"
)

// replicas are n Services on one PostgreSQL schema, each with a store
// handle (a connection pool) of its own, as n `tollgate serve` processes
// have: started together, stopped (handles closed) and started again.
type replicas struct {
	t     *testing.T
	dsn   string
	keys  *tollgate.Keys
	clock *testenv.Clock // shared by the replicas
	dbs   []*postgres.DB
	svcs  []*tollgate.Service
}

func startReplicas(t *testing.T, n int) *replicas {
	t.Helper()
	r := &replicas{t: t, dsn: testenv.PostgresDSN(t), keys: storetest.NewKeys(t),
		clock: testenv.NewClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)),
		dbs:   make([]*postgres.DB, n), svcs: make([]*tollgate.Service, n)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

// start opens every replica's handle at once (each migrates, as a
// starting replica does).
func (r *replicas) start() {
	r.t.Helper()
	errs := make([]error, len(r.dbs))
	var wg sync.WaitGroup
	for i := range r.dbs {
		wg.Go(func() { r.dbs[i], errs[i] = postgres.Open(r.t.Context(), r.dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			r.t.Fatalf("replica %d: Open: %v", i, err)
		}
		r.svcs[i] = tollgate.NewService(r.dbs[i], r.keys)
		r.svcs[i].Now = r.clock.Now
	}
}

func (r *replicas) stop() {
	for i, db := range r.dbs {
		if db != nil {
			db.Close()
			r.dbs[i], r.svcs[i] = nil, nil
		}
	}
}

func (r *replicas) restart() { r.t.Helper(); r.stop(); r.start() }

// sweep has every replica sweep for expiry notifications at once and
// returns how many events they wrote in all.
func (r *replicas) sweep() int {
	r.t.Helper()
	counts := make([]int, len(r.svcs))
	errs := make([]error, len(r.svcs))
	var wg sync.WaitGroup
	for i, s := range r.svcs {
		wg.Go(func() { counts[i], errs[i] = s.SweepExpiry(r.t.Context(), nil) })
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			r.t.Fatalf("replica %d: SweepExpiry: %v", i, err)
		}
		total += counts[i]
	}
	return total
}

// TestExpiringEventsOnceAcrossThreeReplicasAndRestarts: three replicas,
// each with its own store handle on one PostgreSQL schema and its own
// Service, sweep at once at every step of three tokens' lives, are
// restarted (handles closed and opened again) and sweep again: each
// token gets each notification it is due — token.expiring at 30, 7 and
// 1 days (the tightest crossed for a token created inside a threshold),
// token.expired — exactly once.
func TestExpiringEventsOnceAcrossThreeReplicasAndRestarts(t *testing.T) {
	r := startReplicas(t, 3)
	ctx := t.Context()
	const day = 24 * time.Hour
	s := r.svcs[0]
	a, _, _, err := s.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: a.Name, URL: "https://hooks.example.com/x"}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{} // token id → its events, "expired" or the threshold
	for _, tc := range []struct {
		name   string
		expiry time.Duration
		events []string
	}{
		{"long", 40 * day, []string{"30d", "7d", "1d", "expired"}},
		{"month", 20 * day, []string{"30d", "7d", "1d", "expired"}},
		{"short", 3 * day, []string{"7d", "1d", "expired"}},
	} {
		tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: a.Name, Name: tc.name,
			Expiry: tollgate.Expiry{At: r.clock.Now().Add(tc.expiry)}})
		if err != nil {
			t.Fatal(err)
		}
		want[tok.ID] = tc.events
	}
	// Days since the tokens were made, at which the replicas sweep: at
	// and between every threshold of each token.
	steps := []time.Duration{0, 2*day + 12*time.Hour, 4 * day, 10 * day, 13*day + 12*time.Hour, 15 * day,
		19*day + 12*time.Hour, 21 * day, 33*day + 12*time.Hour, 39*day + 12*time.Hour, 41 * day, 45 * day}
	written, at := 0, time.Duration(0)
	for _, step := range steps {
		r.clock.Add(step - at)
		at = step
		written += r.sweep()
		r.restart()
		if n := r.sweep(); n != 0 {
			t.Fatalf("day %v: after a restart the replicas wrote %d events again", step/day, n)
		}
	}
	got := map[string][]string{}
	ds, err := r.svcs[1].ListDeliveries(ctx, a.Name, 200)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Channel != tollgate.ChannelWebhook {
			continue
		}
		var p tollgate.Payload
		if err := json.Unmarshal(d.Event.Payload, &p); err != nil {
			t.Fatal(err)
		}
		switch p.Type {
		case tollgate.EventTokenExpiring:
			got[p.Token.ID] = append(got[p.Token.ID], p.Threshold)
		case tollgate.EventTokenExpired:
			got[p.Token.ID] = append(got[p.Token.ID], "expired")
		}
	}
	total := 0
	for id, events := range want {
		total += len(events)
		g := got[id]
		slices.Sort(g)
		w := slices.Clone(events)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			t.Errorf("token %s: events %v, want each of %v once", id, got[id], events)
		}
	}
	if written != total || len(got) != len(want) {
		t.Errorf("the sweeps said they wrote %d events for %d tokens; want %d for %d", written, len(got), total, len(want))
	}
}
