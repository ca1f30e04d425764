package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
)

// TestValidAPIKeyIsNeverRefusedForOthersFailures: the API asked the
// limiter before looking at a key, so wrong keys from an address (an
// office behind one NAT, say) locked every valid key from there out too.
// Only a key that fails is charged and refused.
func TestValidAPIKeyIsNeverRefusedForOthersFailures(t *testing.T) {
	keys, err := tollgate.NewKeys(randomKey(t), randomKey(t))
	if err != nil {
		t.Fatal(err)
	}
	svc := tollgate.NewService(newStore(t), keys)
	s := &api.Server{Service: svc, AdminKey: adminKey,
		Limiter: ratelimit.New(ratelimit.Options{Every: time.Hour, Burst: 3})}
	srv := httptest.NewServer((&obs.Observer{}).Wrap(s.Handler()))
	t.Cleanup(srv.Close)
	if _, _, _, err := svc.CreateAccount(context.Background(), "op", "acme"); err != nil {
		t.Fatal(err)
	}
	acmeKey, err := svc.CreateAccountKey(context.Background(), "op", "acme")
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/accounts/acme", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := range 3 {
		if st := get(tollgate.NewSecret(tollgate.AccountKeyPrefix).Reveal()).StatusCode; st != 401 {
			t.Fatalf("wrong key %d: %d, want 401", i, st)
		}
	}
	resp := get(tollgate.NewSecret(tollgate.AccountKeyPrefix).Reveal())
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("wrong key past the burst: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, key := range []string{acmeKey.Reveal(), adminKey} {
		if st := get(key).StatusCode; st != 200 {
			t.Fatalf("a valid key from the limited address: %d, want 200", st)
		}
	}
}
