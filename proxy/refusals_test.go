package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/obs"
)

type refusalLog struct {
	mu  sync.Mutex
	got []string
}

func (l *refusalLog) Refused(tokenID, reason, client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, tokenID+" "+reason+" "+client)
}

// TestRefusalOfAKnownTokenReachesTheSinkAndAGuessDoesNot: the edge tells
// the notification sink when a known token is refused (paused, revoked;
// directly, at /token, or through its JWT), naming the token, the reason
// and the address, never the secret; an unknown credential is a guess,
// not a token's refusal, and tells it nothing.
func TestRefusalOfAKnownTokenReachesTheSinkAndAGuessDoesNot(t *testing.T) {
	log := &refusalLog{}
	e := newEnv(t, func(_ *env, o *Options) {
		if o != nil {
			o.Refusals = log
		}
	})
	// Production wraps the edge in the observer, which carries the
	// token's id from the front to the responder.
	srv := httptest.NewServer((&obs.Observer{}).Wrap(e.edge))
	t.Cleanup(srv.Close)
	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok, secret := e.token(tollgate.TokenCreate{})
	jwt := e.bearer(secret, "repository:demo/hello:pull")
	if code := get("/v2/demo/hello/tags/list", "Bearer "+jwt); code != 200 {
		t.Fatalf("before the pause: %d", code)
	}
	if _, err := e.svc.PauseToken(context.Background(), "operator", tok.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, auth string }{
		{"/v2/demo/hello/tags/list", "Bearer " + jwt},
		{"/token?service=" + e.host + "&scope=repository:demo/hello:pull", "Basic " + basicAuth("u", secret)},
		{"/v2/demo/hello/tags/list", "Basic " + basicAuth("u", secret)},
	} {
		if code := get(c.path, c.auth); code != http.StatusUnauthorized {
			t.Fatalf("paused token at %s: %d", c.path, code)
		}
	}
	if code := get("/token?service="+e.host, "Basic "+basicAuth("u", "tg_not_a_real_token_at_all_000000000")); code != http.StatusUnauthorized {
		t.Fatalf("a guess: %d", code)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.got) != 3 {
		t.Fatalf("sink heard %q, want the three refusals of the paused token", log.got)
	}
	for _, g := range log.got {
		if g != tok.ID+" paused 127.0.0.1" || strings.Contains(g, secret) {
			t.Errorf("sink heard %q", g)
		}
	}
}
