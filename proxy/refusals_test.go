package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/usage"
)

// withRefusals rebuilds e's edge with a refusal recorder, behind the
// observer every production request passes (it carries the request's
// Info, where the front names the token).
func withRefusals(t *testing.T, e *env) *usage.RefusalRecorder {
	t.Helper()
	rec := usage.NewRefusalRecorder(usage.RefusalOptions{Store: e.svc})
	e.opts.Refusals = rec
	edge, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = (&obs.Observer{Logger: slog.New(slog.DiscardHandler)}).Wrap(edge)
	return rec
}

// TestRefusedAttemptsOfAKnownTokenAreRecorded: a token used from outside
// its networks, then paused, leaves those refusals (time, address,
// client, reason) for its card; a wrong secret and a served pull leave
// none, and no secret is ever recorded.
func TestRefusedAttemptsOfAKnownTokenAreRecorded(t *testing.T) {
	e := newEnv(t)
	rec := withRefusals(t, e)
	nets, _ := tollgate.ParseNetworks("networks", []string{"127.0.0.2/32"})
	tok, secret := e.token(tollgate.TokenCreate{Policy: tollgate.TokenPolicy{Networks: nets}})
	get := func(c *http.Client, auth, agent string) int {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v2/demo/hello/manifests/latest", nil)
		req.Header.Set("Authorization", auth)
		req.Header.Set("User-Agent", agent)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	inside, outside := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	if st := get(inside, "Basic "+basicAuth("u", secret), "docker/27"); st != 200 {
		t.Fatalf("pull from inside = %d", st)
	}
	if st := get(outside, "Basic "+basicAuth("u", secret), "containerd/2.1"); st != http.StatusForbidden {
		t.Fatalf("pull from outside = %d, want 403", st)
	}
	wrong := secret[:len(secret)-1] + "x"
	get(outside, "Basic "+basicAuth("u", wrong), "guesser/1")
	if _, err := e.svc.PauseToken(context.Background(), "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	if st := get(inside, "Basic "+basicAuth("u", secret), "podman/5"); st != http.StatusUnauthorized {
		t.Fatalf("paused pull = %d, want 401", st)
	}
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs, err := e.svc.Refusals(context.Background(), tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("refusals = %+v, want the two refused attempts", rs)
	}
	if r := rs[1]; r.Reason != "address_not_allowed" || r.Address != "127.0.0.3" || r.UserAgent != "containerd/2.1" || r.At.IsZero() {
		t.Errorf("first refusal = %+v, want address_not_allowed from 127.0.0.3 by containerd/2.1", r)
	}
	if r := rs[0]; r.Reason != "paused" || r.Address != "127.0.0.2" || r.UserAgent != "podman/5" {
		t.Errorf("second refusal = %+v, want paused from 127.0.0.2 by podman/5", r)
	}
	for _, r := range rs {
		if strings.Contains(r.Address+r.UserAgent+r.Reason+r.TokenID, secret[3:20]) {
			t.Fatalf("a refusal holds the secret: %+v", r)
		}
	}
	if s := rec.Stats(); s.Written != 2 || s.Dropped != 0 {
		t.Errorf("recorder stats = %+v, want 2 written", s)
	}
}
