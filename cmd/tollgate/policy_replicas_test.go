package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
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

// TestCardShowsCapUsageCountedOnAnotherReplica: a capped token pulls
// through replica 2; the console of replica 1 shows those pulls against
// the cap, read from the counter the edges share in Redis.
func TestCardShowsCapUsageCountedOnAnotherReplica(t *testing.T) {
	ms := startReplicas(t, 2)
	ctx := context.Background()
	cl := &api.Client{BaseURL: ms[0].URL, Key: ms[0].AdminKey.Reveal()}
	if _, _, err := cl.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetSubscription(ctx, "acme", []string{"demo/**"}, nil); err != nil {
		t.Fatal(err)
	}
	tok, err := cl.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: "capped", MaxPulls: 5})
	if err != nil {
		t.Fatal(err)
	}
	jwt := jwtFrom(t, ms[1], tok.Secret, "repository:demo/hello:pull")
	for range 2 {
		req, _ := http.NewRequest("GET", ms[1].URL+"/v2/demo/hello/manifests/latest", nil)
		req.Header.Set("Authorization", "Bearer "+jwt)
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("pull through replica 2: %d", resp.StatusCode)
		}
	}
	// A console user of acme signs in on replica 1.
	users := ms[0].users()
	const email, pw = "ann@acme.example", "a long test passphrase"
	_, link, err := users.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: email, Role: tollgate.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.SetPassword(ctx, link.Reveal(), pw); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	page := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page(c.Get(ms[0].URL + "/console/sign-in")))
	if csrf == nil {
		t.Fatal("no CSRF token on the sign-in page")
	}
	page(c.PostForm(ms[0].URL+"/console/sign-in", url.Values{"csrf": {csrf[1]}, "email": {email}, "password": {pw}}))
	body := page(c.Get(ms[0].URL + "/console/tokens?open=" + tok.ID))
	if !strings.Contains(body, `class="cap-pulls">2 of 5<`) {
		t.Fatalf("replica 1's card does not show the 2 pulls made through replica 2 against the cap of 5:\n%s", body)
	}
}
