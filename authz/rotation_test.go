package authz_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
)

func TestRotatedSecretRefusedAfterGraceWhateverHowItIsPresented(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	acct := &tollgate.Account{ID: "acc_1", Status: tollgate.AccountActive}
	cur, prev, dead := []byte("current-hash-32-bytes-long......"), []byte("previous-hash-32-bytes-long....."), []byte("oldest-hash-32-bytes-long......")
	tok := &tollgate.Token{ID: "tok_1", AccountID: "acc_1", Scope: tollgate.ScopeImages, SecretVersion: 3, SecretHash: cur,
		Previous: &tollgate.PreviousSecret{Hash: prev, Version: 2, RotatedAt: now.Add(-time.Hour), ValidUntil: now.Add(time.Hour)}}
	tests := []struct {
		name string
		at   time.Time
		res  authz.Resource
		want authz.Reason
	}{
		{"current by hash", now, authz.Resource{SecretHash: cur}, authz.OK},
		{"previous by hash in grace", now, authz.Resource{SecretHash: prev}, authz.OK},
		{"previous by hash at grace end", now.Add(time.Hour), authz.Resource{SecretHash: prev}, authz.Rotated},
		{"previous by bearer version after grace", now.Add(time.Hour), authz.Resource{SecretVersion: 2}, authz.Rotated},
		{"previous by bearer version in grace", now, authz.Resource{SecretVersion: 2}, authz.OK},
		{"oldest by stale hash mapping", now, authz.Resource{SecretHash: dead}, authz.Rotated},
		{"oldest by bearer version", now, authz.Resource{SecretVersion: 1}, authz.Rotated},
		{"unsaid is current (edge not yet passing it)", now.Add(48 * time.Hour), authz.Resource{}, authz.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := authz.Decide(tok, acct, tc.at, tc.res); got != tc.want {
				t.Fatalf("Decide = %q, want %q", got, tc.want)
			}
		})
	}
	revoked := *tok
	revoked.RevokedAt = &now
	for _, h := range [][]byte{cur, prev} {
		if got := authz.Decide(&revoked, acct, now, authz.Resource{SecretHash: h}); got != authz.Revoked {
			t.Fatalf("revoked token, either secret: %q", got)
		}
	}
}
