package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/tollgate/tollgate"
)

// TestPreviousSecretWorksUntilGraceThenStopsEverywhere: after a rotation
// the old secret keeps pulling (with a Warning saying so) until its grace
// ends — directly, at /token, and through a JWT minted from it — and then
// stops at once, while the new secret works throughout.
func TestPreviousSecretWorksUntilGraceThenStopsEverywhere(t *testing.T) {
	e := newEnv(t, func(_ *env, o *Options) {
		if o != nil {
			o.WarnBefore = 7 * 24 * time.Hour
		}
	})
	tok, old := e.token(tollgate.TokenCreate{})
	_, fresh, err := e.svc.RotateToken(context.Background(), "operator", tok.ID, 5*time.Minute) // shorter than a JWT lives (15 min)
	if err != nil {
		t.Fatal(err)
	}
	resp := e.do("GET", "/token?service="+e.host+"&scope=repository:demo/hello:pull", map[string]string{"Authorization": "Basic " + basicAuth("u", old)})
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Warning"), "was rotated") || strings.Contains(resp.Header.Get("Warning"), old) {
		t.Fatalf("old secret in grace at /token: %d Warning %q", resp.StatusCode, resp.Header.Get("Warning"))
	}
	oldJWT := e.bearer(old, "repository:demo/hello:pull")
	newJWT := e.bearer(fresh.Reveal(), "repository:demo/hello:pull")
	get := func(auth string) *http.Response {
		return e.do("GET", "/v2/demo/hello/tags/list", map[string]string{"Authorization": auth})
	}
	if r := get("Bearer " + oldJWT); r.StatusCode != 200 || r.Header.Get("Warning") == "" {
		t.Fatalf("JWT of the old secret in grace: %d %q", r.StatusCode, r.Header.Get("Warning"))
	}
	if r := get("Bearer " + newJWT); r.StatusCode != 200 || r.Header.Get("Warning") != "" {
		t.Fatalf("JWT of the new secret: %d %q", r.StatusCode, r.Header.Get("Warning"))
	}
	e.clock.Add(5*time.Minute + time.Second)
	if got := e.tokenStatus(old); got != http.StatusUnauthorized {
		t.Fatalf("old secret after its grace at /token: %d", got)
	}
	wantChallenge(t, get("Bearer "+oldJWT), "repository:demo/hello:pull", "invalid_token")
	wantChallenge(t, get("Basic "+basicAuth("u", old)), "repository:demo/hello:pull", "invalid_token")
	if r := get("Bearer " + newJWT); r.StatusCode != 200 {
		t.Fatalf("new secret's JWT after the grace: %d", r.StatusCode)
	}
	if got := e.tokenStatus(fresh.Reveal()); got != 200 {
		t.Fatalf("new secret after the grace: %d", got)
	}
}

// TestExpiryWarningOnTheWire: a token that expires within warn_before gets
// a Warning: 299 header on /token and on registry answers, naming the
// token and the date, never the secret.
func TestExpiryWarningOnTheWire(t *testing.T) {
	e := newEnv(t, func(_ *env, o *Options) {
		if o != nil {
			o.WarnBefore = 7 * 24 * time.Hour
		}
	})
	_, soon := e.token(tollgate.TokenCreate{Name: "ci-eu", Expiry: tollgate.Expiry{At: e.clock.Now().Add(72 * time.Hour)}})
	_, later := e.token(tollgate.TokenCreate{Name: "later", Expiry: tollgate.Expiry{At: e.clock.Now().Add(30 * 24 * time.Hour)}})
	resp := e.do("GET", "/token?service="+e.host, map[string]string{"Authorization": "Basic " + basicAuth("u", soon)})
	w := resp.Header.Get("Warning")
	if !strings.HasPrefix(w, `299 - "registry token ci-eu expires on `) || strings.Contains(w, soon) {
		t.Fatalf("Warning = %q", w)
	}
	jwt := e.bearer(soon, "repository:demo/hello:pull")
	if r := e.do("GET", "/v2/demo/hello/manifests/latest", map[string]string{"Authorization": "Bearer " + jwt}); !strings.Contains(r.Header.Get("Warning"), "ci-eu") {
		t.Fatalf("manifest answer Warning = %q", r.Header.Get("Warning"))
	}
	if r := e.do("GET", "/token?service="+e.host, map[string]string{"Authorization": "Basic " + basicAuth("u", later)}); r.Header.Get("Warning") != "" {
		t.Fatalf("a token a month from expiry warned: %q", r.Header.Get("Warning"))
	}
}

// TestCraneKeepsPullingWithTheOldSecretUntilTheGraceEnds: a real client
// (crane: /token, then manifests and blobs with the JWT) pulls with the
// rotated-out secret throughout its grace window and is refused the
// instant after; the new secret pulls throughout.
func TestCraneKeepsPullingWithTheOldSecretUntilTheGraceEnds(t *testing.T) {
	e := newEnv(t)
	tok, old := e.token(tollgate.TokenCreate{})
	_, fresh, err := e.svc.RotateToken(context.Background(), "operator", tok.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pull := func(secret string) error {
		img, err := crane.Pull(e.ref("demo/hello:latest"), append(craneOpts(secret), crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: "amd64"}))...)
		if err != nil {
			return err
		}
		ls, err := img.Layers() // the manifest
		if err != nil || len(ls) == 0 {
			return err
		}
		rc, err := ls[0].Compressed() // a blob
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	}
	for _, step := range []time.Duration{0, 12 * time.Hour, 12*time.Hour - time.Second} {
		e.clock.Add(step)
		at := e.clock.Now().Sub(tok.CreatedAt)
		if err := pull(old); err != nil {
			t.Fatalf("old secret %s into the grace: %v", at, err)
		}
		if err := pull(fresh.Reveal()); err != nil {
			t.Fatalf("new secret %s into the grace: %v", at, err)
		}
	}
	e.clock.Add(time.Second) // the grace's end
	err = pull(old)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old secret at the end of the grace: %v, want 401", err)
	}
	if err := pull(fresh.Reveal()); err != nil {
		t.Fatalf("new secret after the grace: %v", err)
	}
}
