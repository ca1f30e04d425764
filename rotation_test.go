package tollgate

import (
	"strings"
	"testing"
	"time"
)

func TestGraceOutOfBoundsRefused(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 24 * time.Hour, "now": 0, "36h": 36 * time.Hour, "30d": 30 * 24 * time.Hour} {
		if got, err := ParseGrace(in); err != nil || got != want {
			t.Errorf("ParseGrace(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"31d", "721h", "-1h", "soon", "1.5d"} {
		if _, err := ParseGrace(in); ErrorField(err) != "grace" {
			t.Errorf("ParseGrace(%q) = %v; want a grace field error", in, err)
		}
	}
}

func TestExpiryWarningNamesTokenNeverSecret(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	exp := now.Add(3 * 24 * time.Hour)
	tok := &Token{Name: "ci", ExpiresAt: &exp, SecretVersion: 2,
		Previous: &PreviousSecret{Version: 1, ValidUntil: now.Add(time.Hour)}}
	if w := tok.ExpiryWarning(now, 7*24*time.Hour, 2); !strings.Contains(w, "registry token ci expires on 2026-12-01") {
		t.Errorf("expiring: %q", w)
	}
	if w := tok.ExpiryWarning(now, 24*time.Hour, 2); w != "" {
		t.Errorf("not within warn_before: %q", w)
	}
	if w := tok.ExpiryWarning(now, 0, 1); !strings.Contains(w, "was rotated") {
		t.Errorf("previous secret: %q", w)
	}
}
