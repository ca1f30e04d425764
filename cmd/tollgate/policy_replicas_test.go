package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/api"
)

// TestPolicyChangeReachesEveryReplica changes a token's policy through
// replica 1's API — a restriction that leaves the pulled repository out,
// networks that leave the client out, a pause — and measures how long
// replicas 2 and 3 keep honouring JWTs they issued before, as
// TestRevocationReachesEveryReplica does for a revocation. Their L1
// entries are fresh for 30 s: only the invalidation can make them deny
// in time.
func TestPolicyChangeReachesEveryReplica(t *testing.T) {
	ms := startReplicas(t, 3)
	ctx := context.Background()
	cl := &api.Client{BaseURL: ms[0].URL, Key: ms[0].AdminKey.Reveal()}
	if _, _, err := cl.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetSubscription(ctx, "acme", []string{"demo/**"}, nil); err != nil {
		t.Fatal(err)
	}
	elsewhere := []string{"demo/other"}
	farAway := []string{"10.0.0.0/8", "2001:db8::/32"}
	changes := []struct {
		name   string
		status int // what a replica answers once the change reached it
		apply  func(id string) error
	}{
		{"restriction", http.StatusForbidden, func(id string) error {
			_, err := cl.EditToken(ctx, id, api.EditTokenRequest{RestrictImages: &elsewhere})
			return err
		}},
		{"networks", http.StatusForbidden, func(id string) error {
			_, err := cl.EditToken(ctx, id, api.EditTokenRequest{Networks: &farAway})
			return err
		}},
		{"pause", http.StatusUnauthorized, func(id string) error {
			_, err := cl.PauseToken(ctx, id)
			return err
		}},
	}
	const runs = 10
	for _, ch := range changes {
		var worst []time.Duration
		for run := range runs {
			tok, err := cl.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: fmt.Sprintf("%s-%d", ch.name, run)})
			if err != nil {
				t.Fatal(err)
			}
			jwts := map[*Main]string{}
			for _, m := range ms[1:] {
				jwts[m] = jwtFrom(t, m, tok.Secret, "repository:demo/hello:pull")
				if st := manifestStatus(t, m, jwts[m]); st != 200 {
					t.Fatalf("%s run %d: pull before the change = %d", ch.name, run, st)
				}
			}
			start := time.Now()
			if err := ch.apply(tok.ID); err != nil {
				t.Fatal(err)
			}
			var slowest time.Duration
			for _, m := range ms[1:] {
				for {
					st := manifestStatus(t, m, jwts[m])
					if st == ch.status {
						break
					}
					if st != 200 {
						t.Fatalf("%s run %d: replica %s answered %d, want 200 until the change arrives, then %d", ch.name, run, m.URL, st, ch.status)
					}
					if time.Since(start) > time.Second {
						t.Fatalf("%s run %d: replica %s still honours the token after 1 s", ch.name, run, m.URL)
					}
					time.Sleep(time.Millisecond)
				}
				slowest = max(slowest, time.Since(start))
			}
			worst = append(worst, slowest)
		}
		slices.Sort(worst)
		t.Logf("%s propagation to 2 other replicas over %d runs (from the API call): median %v, worst %v",
			ch.name, runs, worst[runs/2].Round(10*time.Microsecond), worst[runs-1].Round(10*time.Microsecond))
	}
}
