package tollgate

import (
	"strings"
	"testing"
	"time"
)

func TestParseScope(t *testing.T) {
	tests := map[string]Scope{
		"images":          ScopeImages,
		"packages":        ScopePackages,
		"images,packages": ScopeImages | ScopePackages,
		"packages,images": ScopeImages | ScopePackages,
		" images ":        ScopeImages,
	}
	for in, want := range tests {
		got, err := ParseScope(in)
		if err != nil || got != want {
			t.Errorf("ParseScope(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ",", "image", "images,push", "all"} {
		if _, err := ParseScope(bad); ErrorField(err) != "scope" {
			t.Errorf("ParseScope(%q) = %v, want a scope error", bad, err)
		}
	}
	if got := (ScopeImages | ScopePackages).String(); got != "images,packages" {
		t.Errorf("String = %q", got)
	}
}

func TestParseExpiry(t *testing.T) {
	got, err := ParseExpiry("2027-01-31")
	if err != nil || !got.At.Equal(time.Date(2027, 1, 31, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("date: %+v, %v", got, err)
	}
	got, err = ParseExpiry("2027-01-31T10:00:00+02:00")
	if err != nil || !got.At.Equal(time.Date(2027, 1, 31, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("rfc3339: %+v, %v", got, err)
	}
	if got, _ := ParseExpiry("never"); !got.Never {
		t.Error("never")
	}
	if got, _ := ParseExpiry("now"); !got.Now {
		t.Error("now")
	}
	for _, bad := range []string{"", "tomorrow", "2027-13-01", "31/01/2027", "2027-01-31 10:00"} {
		if _, err := ParseExpiry(bad); ErrorField(err) != "expires" {
			t.Errorf("ParseExpiry(%q) = %v, want an expires error", bad, err)
		}
	}
}

func TestValidateTokenName(t *testing.T) {
	for _, ok := range []string{"ci", "prod pull — eu", strings.Repeat("é", 100)} {
		if err := ValidateTokenName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 101), "tab\there", "nl\n", "\xff"} {
		if err := ValidateTokenName(bad); ErrorField(err) != "name" {
			t.Errorf("%q: %v, want a name error", bad, err)
		}
	}
}

func TestTokenStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	active := &Account{Status: AccountActive}
	suspended := &Account{Status: AccountSuspended}
	tests := []struct {
		name string
		tok  Token
		acct *Account
		want TokenStatus
	}{
		{"active", Token{}, active, TokenActive},
		{"active until later", Token{ExpiresAt: &future}, active, TokenActive},
		{"expired", Token{ExpiresAt: &past}, active, TokenExpired},
		{"expired exactly now", Token{ExpiresAt: &now}, active, TokenExpired},
		{"suspended", Token{}, suspended, TokenSuspended},
		{"revoked wins", Token{RevokedAt: &past, ExpiresAt: &past}, suspended, TokenRevoked},
	}
	for _, tt := range tests {
		if got := tt.tok.Status(tt.acct, now); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
