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

// TestGraceEndReachesEveryReplica rotates a token through replica 1's
// API with a 2 s grace, then has replicas 2 and 3 judge JWTs minted from
// the old secret until they refuse them: no replica may honour the old
// secret once its grace has ended (every replica judges the same
// valid_until; no message has to reach them), and each refuses it within
// a second. It logs how long after valid_until the last replica refused.
func TestGraceEndReachesEveryReplica(t *testing.T) {
	ms := startReplicas(t, 3)
	ctx := context.Background()
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
		tok, err := cl.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: fmt.Sprintf("g%d", run)})
		if err != nil {
			t.Fatal(err)
		}
		rot, err := cl.RotateToken(ctx, tok.ID, "2s")
		if err != nil {
			t.Fatal(err)
		}
		end := rot.Previous.ValidUntil
		jwts := map[*Main]string{}
		for _, m := range ms[1:] {
			jwts[m] = jwtFrom(t, m, tok.Secret, "repository:demo/hello:pull")
		}
		var slowest time.Duration
		for _, m := range ms[1:] {
			for {
				st := manifestStatus(t, m, jwts[m])
				now := time.Now()
				if st == http.StatusUnauthorized {
					if now.Before(end) {
						t.Fatalf("run %d: replica %s refused the old secret %v before its grace ended", run, m.URL, end.Sub(now))
					}
					slowest = max(slowest, now.Sub(end))
					break
				}
				if st != 200 {
					t.Fatalf("run %d: old secret's JWT got %d", run, st)
				}
				if after := now.Sub(end); after > time.Second {
					t.Fatalf("run %d: replica %s still honours the old secret %v after its grace", run, m.URL, after)
				}
				time.Sleep(time.Millisecond)
			}
		}
		if got := jwtFrom(t, ms[2], rot.Secret, "repository:demo/hello:pull"); manifestStatus(t, ms[2], got) != 200 {
			t.Fatalf("run %d: the new secret does not pull", run)
		}
		worst = append(worst, slowest)
	}
	slices.Sort(worst)
	t.Logf("old secret refused by 2 other replicas after its grace over %d runs (from valid_until): median %v, worst %v",
		runs, worst[runs/2].Round(10*time.Microsecond), worst[runs-1].Round(10*time.Microsecond))
}
