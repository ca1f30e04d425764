package main

import (
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
)

// TestAPIKeyGuessingIsLimitedPerClient: failed registry-token checks are
// limited per client address, but the management API looked up every
// presented account key (a store query each) without any limit.
func TestAPIKeyGuessingIsLimitedPerClient(t *testing.T) {
	e := newOpsEnv(t, func(c *config.Config) {
		c.Ops.TrustedProxies = []string{"127.0.0.1"}
		c.Limits = config.LimitsConfig{AuthFailuresPerMinute: 6, AuthFailureBurst: 5}
	})
	info := "http://" + e.host + "/api/v1/info"
	limited := 0
	for i := range 20 {
		guess := tollgate.NewSecret(tollgate.AccountKeyPrefix).Reveal()
		code, body, hdr := get(t, info, map[string]string{"Authorization": "Bearer " + guess, "X-Forwarded-For": "10.0.0.1"})
		switch code {
		case 401:
			if limited > 0 {
				t.Fatalf("guess %d: 401 after being limited", i)
			}
		case 429:
			limited++
			if hdr.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %s", body)
			}
		default:
			t.Fatalf("guess %d: status %d %s", i, code, body)
		}
	}
	if limited < 10 {
		t.Fatalf("only %d of 20 wrong API keys were limited (burst 5)", limited)
	}
	// Another address with the right key is not slowed.
	if code, body, _ := get(t, info, map[string]string{"Authorization": "Bearer " + e.m.AdminKey.Reveal(), "X-Forwarded-For": "10.0.0.2"}); code != 200 {
		t.Fatalf("operator from another address: %d %s", code, body)
	}
}
