package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
)

// TestDeletingATrustPolicyReachesEveryReplica: a workload logged in with
// its OIDC token on replicas 2 and 3 (each exchanged it for its own
// ephemeral credential); deleting the policy through replica 1's API ends
// both as fast as a revocation: only the invalidation can, their L1
// entries being fresh for 30 s.
func TestDeletingATrustPolicyReachesEveryReplica(t *testing.T) {
	ms := startReplicas(t, 3)
	ctx := context.Background()
	is, err := oidcissuer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	cl := &api.Client{BaseURL: ms[0].URL, Key: ms[0].AdminKey.Reveal()}
	if _, _, err := cl.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetSubscription(ctx, "acme", []string{"demo/**"}, nil); err != nil {
		t.Fatal(err)
	}
	const runs = 5
	var worst []time.Duration
	for run := range runs {
		p, err := cl.CreateTrustPolicy(ctx, "acme", api.TrustPolicy{Name: fmt.Sprintf("ci-%d", run), Issuer: is.URL,
			Claims: []api.ClaimRule{{Claim: "repository", Value: "acme/app"}}})
		if err != nil {
			t.Fatal(err)
		}
		idToken := is.Sign(oidcissuer.GitHubActions("acme/app", "tollgate:acme", time.Now()))
		jwts := map[*Main]string{}
		for _, m := range ms[1:] {
			jwts[m] = jwtFrom(t, m, idToken, "repository:demo/hello:pull")
			if st := manifestStatus(t, m, jwts[m]); st != 200 {
				t.Fatalf("run %d: pull with the OIDC login = %d", run, st)
			}
		}
		start := time.Now()
		if err := cl.DeleteTrustPolicy(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		var slowest time.Duration
		for _, m := range ms[1:] {
			for manifestStatus(t, m, jwts[m]) != http.StatusUnauthorized {
				if time.Since(start) > time.Second {
					t.Fatalf("run %d: replica %s still honours a credential of a deleted policy after 1 s", run, m.URL)
				}
				time.Sleep(time.Millisecond)
			}
			slowest = max(slowest, time.Since(start))
		}
		worst = append(worst, slowest)
	}
	slices.Sort(worst)
	t.Logf("policy deletion reaching 2 other replicas over %d runs (from the delete call): median %v, worst %v",
		runs, worst[runs/2].Round(10*time.Microsecond), worst[runs-1].Round(10*time.Microsecond))
}
