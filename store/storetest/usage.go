package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// Pull usage (tollgate.UsageTx), through Service as the recorder uses it.
// Identifiers start with "usage".

func testUsage(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tollgate.Store)
	}{
		{"AggregatesAddUpAcrossBatches", usageAddUp},
		{"DistinctAddressesCountedOnceAcrossReplicas", usageConcurrentReplicas},
		{"QueryKeepsToAccountTokenAndPeriod", usageIsolation},
		{"FirstAndLastSeenWiden", usageFirstLast},
		{"NewNetworkOfAKnownTokenIsReported", usageNewNetwork},
		{"NewNetworkIsAWebhookEventOnce", usageNewNetworkWebhook},
		{"RetentionRemovesDetailBeforeAggregates", usageRetention},
		{"OverviewTopAndIdleAccounts", usageOverview},
		{"ViewRejectsUsageWrites", usageViewReadOnly},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

var usageDay0 = time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)

func usageService(s tollgate.Store, now time.Time) *tollgate.Service {
	svc := tollgate.NewService(s, nil)
	svc.Now = func() time.Time { return now }
	return svc
}

func usageDelta(tok txStoredToken, repo string, day time.Time, addr, ua string) tollgate.UsageDelta {
	at := day.Add(10 * time.Hour)
	return tollgate.UsageDelta{
		UsageKey: tollgate.UsageKey{Day: day, TokenID: tok.ID, AccountID: tok.AccountID, Kind: tollgate.UsageImage, Repository: repo},
		Pulls:    1, Manifests: 2, Bytes: 1000,
		Addresses: []tollgate.AddressUse{{Address: addr, Pulls: 1, First: at, Last: at}},
		Agents:    []tollgate.AgentUse{{UserAgent: ua, Pulls: 1}},
	}
}

func usageRecord(t *testing.T, svc *tollgate.Service, deltas ...tollgate.UsageDelta) {
	t.Helper()
	if err := svc.RecordPulls(t.Context(), deltas); err != nil {
		t.Fatalf("RecordPulls: %v", err)
	}
}

func usageReport(t *testing.T, svc *tollgate.Service, account, token string, since, until time.Time) *tollgate.UsageReport {
	t.Helper()
	rep, err := svc.Usage(t.Context(), account, token, since, until)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	return rep
}

func usageAddUp(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	svc := usageService(s, usageDay0)
	usageRecord(t, svc, usageDelta(tok, "app", usageDay0, "10.0.0.1", "docker/27"), usageDelta(tok, "app", usageDay0, "10.0.0.2", "docker/27"))
	usageRecord(t, svc, usageDelta(tok, "app", usageDay0, "10.0.0.1", "containerd/2"))
	rep := usageReport(t, svc, "acme", "", usageDay0, usageDay0.AddDate(0, 0, 1))
	if len(rep.Days) != 1 {
		t.Fatalf("days = %+v, want one aggregate", rep.Days)
	}
	d := rep.Days[0]
	if d.Pulls != 3 || d.Manifests != 6 || d.Bytes != 3000 || d.Addresses != 2 || !d.Day.Equal(usageDay0) || d.Repository != "app" || d.TokenID != tok.ID {
		t.Errorf("aggregate = %+v, want 3 pulls, 6 manifests, 3000 bytes, 2 addresses", d)
	}
	if len(rep.Agents) != 2 || rep.Agents[0] != (tollgate.AgentUse{UserAgent: "docker/27", Pulls: 2}) {
		t.Errorf("agents = %+v, want docker/27 first with 2", rep.Agents)
	}
	if len(rep.Addresses) != 2 || rep.Addresses[0].Address != "10.0.0.1" || rep.Addresses[0].Pulls != 2 {
		t.Errorf("addresses = %+v, want 10.0.0.1 first with 2", rep.Addresses)
	}
}

// Three replicas write the same keys at once, each with an overlapping
// set of addresses: counts add up and each address counts once.
func usageConcurrentReplicas(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	svc := usageService(s, usageDay0)
	const replicas, rounds = 3, 10
	var wg sync.WaitGroup
	errs := make(chan error, replicas*rounds)
	for r := range replicas {
		wg.Go(func() {
			for i := range rounds {
				batch := []tollgate.UsageDelta{
					usageDelta(tok, "b", usageDay0, fmt.Sprintf("10.0.%d.%d", r, i%4), "ua"),
					usageDelta(tok, "a", usageDay0, "10.9.9.9", "ua"),
				}
				if r%2 == 1 { // another order
					batch[0], batch[1] = batch[1], batch[0]
				}
				if err := svc.RecordPulls(t.Context(), batch); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("RecordPulls: %v", err)
	}
	rep := usageReport(t, svc, "acme", tok.ID, usageDay0, usageDay0.AddDate(0, 0, 1))
	want := map[string][2]int64{"a": {replicas * rounds, 1}, "b": {replicas * rounds, replicas * 4}}
	for _, d := range rep.Days {
		if w := want[d.Repository]; d.Pulls != w[0] || d.Addresses != w[1] {
			t.Errorf("%s: pulls %d addresses %d, want %d and %d", d.Repository, d.Pulls, d.Addresses, w[0], w[1])
		}
	}
	if len(rep.Days) != 2 {
		t.Errorf("days = %+v, want 2 aggregates", rep.Days)
	}
}

func usageIsolation(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "other")
	t1 := txInsertToken(t, s, a, "one", txT0)
	t2 := txInsertToken(t, s, a, "two", txT0)
	tb := txInsertToken(t, s, b, "b", txT0)
	svc := usageService(s, usageDay0)
	usageRecord(t, svc,
		usageDelta(t1, "app", usageDay0, "10.0.0.1", "x"),
		usageDelta(t2, "app", usageDay0, "10.0.0.2", "y"),
		usageDelta(t1, "app", usageDay0.AddDate(0, 0, -1), "10.0.0.3", "z"),
		usageDelta(tb, "app", usageDay0, "10.0.0.4", "w"))
	rep := usageReport(t, svc, "acme", t1.ID, usageDay0, usageDay0.AddDate(0, 0, 1))
	if len(rep.Days) != 1 || rep.Days[0].TokenID != t1.ID || len(rep.Addresses) != 1 || rep.Addresses[0].Address != "10.0.0.1" || len(rep.Agents) != 1 {
		t.Errorf("one token, one day: %+v %+v %+v", rep.Days, rep.Addresses, rep.Agents)
	}
	rep = usageReport(t, svc, "acme", "", usageDay0.AddDate(0, 0, -1), usageDay0.AddDate(0, 0, 1))
	if tot := rep.Totals(); len(tot) != 2 || tot[0].Pulls != 1 || tot[1].Pulls != 2 {
		t.Errorf("account totals = %+v, want 1 then 2", tot)
	}
	if _, err := svc.Usage(t.Context(), "acme", tb.ID, usageDay0, usageDay0.AddDate(0, 0, 1)); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Errorf("another account's token: %v, want ENOTFOUND", err)
	}
	if _, err := svc.Usage(t.Context(), "nobody", "", usageDay0, usageDay0.AddDate(0, 0, 1)); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Errorf("unknown account: %v, want ENOTFOUND", err)
	}
}

func usageFirstLast(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	svc := usageService(s, usageDay0)
	d1 := usageDelta(tok, "app", usageDay0, "10.0.0.1", "x")
	d2 := d1
	d2.Addresses = []tollgate.AddressUse{{Address: "10.0.0.1", Pulls: 1, First: usageDay0.Add(time.Hour), Last: usageDay0.Add(20 * time.Hour)}}
	usageRecord(t, svc, d1)
	usageRecord(t, svc, d2)
	rep := usageReport(t, svc, "acme", "", usageDay0, usageDay0.AddDate(0, 0, 1))
	if got := rep.Addresses[0]; !got.First.Equal(usageDay0.Add(time.Hour)) || !got.Last.Equal(usageDay0.Add(20*time.Hour)) {
		t.Errorf("first/last = %v/%v, want widened to 01:00/20:00", got.First, got.Last)
	}
}

func usageNewNetwork(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	fresh := txInsertToken(t, s, a, "fresh", txT0)
	svc := usageService(s, usageDay0)
	old := usageDay0.AddDate(0, 0, -20)
	usageRecord(t, svc, usageDelta(tok, "app", old, "10.0.0.1", "x"), usageDelta(tok, "app", usageDay0, "10.0.0.77", "x"))
	usageRecord(t, svc, usageDelta(tok, "app", usageDay0, "192.0.2.5", "x"), usageDelta(fresh, "app", usageDay0, "198.51.100.1", "x"))
	rep := usageReport(t, svc, "acme", "", usageDay0, usageDay0.AddDate(0, 0, 1))
	got := rep.NewNetworks(usageDay0.AddDate(0, 0, -7))
	if len(got[tok.ID]) != 1 || got[tok.ID][0].Network != "192.0.2.0/24" {
		t.Errorf("new networks of ci = %+v, want 192.0.2.0/24 only (10.0.0.77 is in a known /24)", got[tok.ID])
	}
	if len(got[fresh.ID]) != 0 {
		t.Errorf("a token's first network is not news: %+v", got[fresh.ID])
	}
}

func usageRetention(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	now := usageDay0.Add(12 * time.Hour)
	svc := usageService(s, now)
	usageRecord(t, svc,
		usageDelta(tok, "ancient", usageDay0.AddDate(0, 0, -400), "10.0.0.1", "x"),
		usageDelta(tok, "old", usageDay0.AddDate(0, 0, -40), "10.0.0.2", "y"),
		usageDelta(tok, "new", usageDay0, "10.0.0.3", "z"))
	if _, err := svc.PruneUsage(t.Context(), 30*24*time.Hour, 395*24*time.Hour); err != nil {
		t.Fatalf("PruneUsage: %v", err)
	}
	rep := usageReport(t, svc, "acme", "", usageDay0.AddDate(0, 0, -399), usageDay0.AddDate(0, 0, 1))
	var repos []string
	for _, d := range rep.Days {
		repos = append(repos, d.Repository)
	}
	if fmt.Sprint(repos) != "[old new]" {
		t.Errorf("aggregates after pruning = %v, want [old new]", repos)
	}
	if len(rep.Addresses) != 1 || rep.Addresses[0].Address != "10.0.0.3" || len(rep.Agents) != 1 || rep.Agents[0].UserAgent != "z" {
		t.Errorf("detail after pruning = %+v %+v, want only the recent day's", rep.Addresses, rep.Agents)
	}
	if len(rep.Networks) != 1 || !rep.Networks[0].Last.Equal(usageDay0.Add(10*time.Hour)) {
		t.Errorf("networks after pruning = %+v, want 10.0.0.0/24, last seen today, kept", rep.Networks)
	}
}

func usageOverview(t *testing.T, s tollgate.Store) {
	busy := txInsertAccount(t, s, "busy")
	quiet := txInsertAccount(t, s, "quiet")
	txInsertAccount(t, s, "idle")
	tb := txInsertToken(t, s, busy, "b", txT0)
	tq := txInsertToken(t, s, quiet, "q", txT0)
	svc := usageService(s, usageDay0)
	usageRecord(t, svc, usageDelta(tb, "app", usageDay0, "10.0.0.1", "x"), usageDelta(tb, "lib", usageDay0, "10.0.0.1", "x"),
		usageDelta(tq, "app", usageDay0, "10.0.0.2", "x"),
		usageDelta(tq, "app", usageDay0.AddDate(0, 0, -60), "10.0.0.2", "x"))
	ov, err := svc.UsageOverview(t.Context(), usageDay0.AddDate(0, 0, -29), usageDay0.AddDate(0, 0, 1), 10)
	if err != nil {
		t.Fatalf("UsageOverview: %v", err)
	}
	if len(ov.Top) != 2 || ov.Top[0].Account != "busy" || ov.Top[0].Pulls != 2 || ov.Top[0].Bytes != 2000 || ov.Top[1].Account != "quiet" {
		t.Errorf("top = %+v, want busy (2 pulls) then quiet", ov.Top)
	}
	if len(ov.Idle) != 1 || ov.Idle[0].Name != "idle" {
		t.Errorf("idle = %+v, want [idle]", ov.Idle)
	}
}

func usageViewReadOnly(t *testing.T, s tollgate.Store) {
	err := s.View(t.Context(), func(tx tollgate.Tx) error {
		return tx.(tollgate.UsageTx).AddUsage(t.Context(), []tollgate.UsageDelta{{UsageKey: tollgate.UsageKey{Day: usageDay0, Kind: tollgate.UsageImage, Repository: "x"}, Pulls: 1}})
	})
	if tollgate.ErrorCode(err) != tollgate.EINTERNAL {
		t.Errorf("AddUsage inside View: %v, want EINTERNAL", err)
	}
}

// usageNewNetworkWebhook: a token used from a network (/24) it was never
// seen from, after being used elsewhere, is one token.new_network event
// for the account's webhooks; its first network, another address of a
// known network, and the same new network again are not.
func usageNewNetworkWebhook(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "ci", txT0)
	svc := tollgate.NewService(s, NewKeys(t))
	svc.Now = func() time.Time { return usageDay0.Add(12 * time.Hour) }
	if _, _, err := svc.CreateWebhook(ctx, "operator", tollgate.WebhookCreate{Account: "acme", URL: "https://hooks.example.com/tollgate",
		Events: []string{tollgate.EventTokenNewNetwork}}); err != nil {
		t.Fatal(err)
	}
	deliveries := func() int {
		ds, err := svc.ListDeliveries(ctx, "acme", 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(ds)
	}
	usageRecord(t, svc, usageDelta(tok, "app", usageDay0, "10.0.0.1", "docker/27"))
	usageRecord(t, svc, usageDelta(tok, "app", usageDay0, "10.0.0.9", "docker/27"))
	if n := deliveries(); n != 0 {
		t.Fatalf("%d deliveries for the token's first network", n)
	}
	usageRecord(t, svc, usageDelta(tok, "app", usageDay0, "192.0.2.7", "docker/27"))
	usageRecord(t, svc, usageDelta(tok, "app", usageDay0, "192.0.2.8", "docker/27"))
	if n := deliveries(); n != 1 {
		t.Fatalf("%d deliveries for one new network, want 1", n)
	}
}
