package api_test

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate"
)

func recordPull(t *testing.T, e *env, tok, account, repo, addr string) {
	t.Helper()
	a, err := e.svc.Account(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	err = e.svc.RecordPulls(context.Background(), []tollgate.UsageDelta{{
		UsageKey: tollgate.UsageKey{Day: tollgate.Day(now), TokenID: tok, AccountID: a.ID, Kind: tollgate.UsageImage, Repository: repo},
		Pulls:    1, Manifests: 1, Bytes: 100,
		Addresses: []tollgate.AddressUse{{Address: addr, Pulls: 1, First: now, Last: now}},
		Agents:    []tollgate.AgentUse{{UserAgent: "docker/27", Pulls: 1}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUsageOfOwnAccountAndToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, tok := e.account("acme")
	e.account("idle")
	recordPull(t, e, tok.ID, "acme", "demo/hello", "192.0.2.1")
	recordPull(t, e, tok.ID, "acme", "demo/hello", "192.0.2.2")

	u, err := acme.Usage(ctx, "acme", "", "7d")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Days) != 7 || u.Days[6].Pulls != 2 || u.Days[6].Bytes != 200 || u.Days[6].Addresses != 2 {
		t.Errorf("days = %+v, want 7 with today's 2 pulls from 2 addresses", u.Days)
	}
	if len(u.Repositories) != 1 || u.Repositories[0].Repository != "demo/hello" || len(u.Rows) != 1 || u.Rows[0].Token != tok.ID {
		t.Errorf("repositories %+v rows %+v", u.Repositories, u.Rows)
	}
	if len(u.Addresses) != 2 || len(u.Agents) != 1 || u.Agents[0].Pulls != 2 {
		t.Errorf("addresses %+v agents %+v", u.Addresses, u.Agents)
	}
	r := e.do("GET", "/api/v1/tokens/"+tok.ID+"/usage?since=2d", acme.Key, nil)
	if r.status != 200 {
		t.Errorf("token usage: %d %s", r.status, r.body)
	}
}

func TestUsageOfAnotherAccountIsNotFound(t *testing.T) {
	e := newEnv(t)
	acme, _ := e.account("acme")
	_, other := e.account("other")
	wantError(t, e.do("GET", "/api/v1/accounts/other/usage", acme.Key, nil), 404, tollgate.ENOTFOUND, "")
	wantError(t, e.do("GET", "/api/v1/tokens/"+other.ID+"/usage", acme.Key, nil), 404, tollgate.ENOTFOUND, "")
	wantError(t, e.do("GET", "/api/v1/accounts/acme/usage?token="+other.ID, acme.Key, nil), 404, tollgate.ENOTFOUND, "")
	wantError(t, e.do("GET", "/api/v1/usage", acme.Key, nil), 403, tollgate.EFORBIDDEN, "")
}

func TestUsageBadPeriodNamesSince(t *testing.T) {
	e := newEnv(t)
	acme, _ := e.account("acme")
	wantError(t, e.do("GET", "/api/v1/accounts/acme/usage?since=forever", acme.Key, nil), 400, tollgate.EINVALID, "since")
}

func TestUsageOverviewTopAndIdle(t *testing.T) {
	e := newEnv(t)
	_, tok := e.account("acme")
	e.account("idle")
	recordPull(t, e, tok.ID, "acme", "demo/hello", "192.0.2.1")
	ov, err := e.op.UsageOverview(context.Background(), "30d")
	if err != nil {
		t.Fatal(err)
	}
	if len(ov.Top) != 1 || ov.Top[0].Account != "acme" || ov.Top[0].Pulls != 1 || len(ov.Idle) != 1 || ov.Idle[0] != "idle" {
		t.Errorf("overview = %+v", ov)
	}
}
