package tollgate

import "testing"

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"nginx", "nginx", true},
		{"nginx", "nginx2", false},
		{"nginx", "library/nginx", false},
		{"python*", "python", true},
		{"python*", "python3", true},
		{"python*", "python-slim", true},
		{"python*", "python/tools", false},
		{"python*", "cpython", false},
		{"team-a/*", "team-a/app", true},
		{"team-a/*", "team-a/app/db", false},
		{"team-a/*", "team-a", false},
		{"team-a/*", "team-b/app", false},
		{"team-a/**", "team-a/app/db", true},
		{"team-a/**", "team-a/app", true},
		{"**", "a/b/c", true},
		{"*", "nginx", true},
		{"*", "team-a/app", false},
		{"*/nginx", "team-a/nginx", true},
		{"*/nginx", "a/b/nginx", false},
		{"**/nginx", "a/b/nginx", true},
		{"node?", "node2", true},
		{"node?", "node", false},
		{"node?", "node22", false},
		{"a?b", "a/b", false},
		{"Nginx", "nginx", false}, // invalid pattern (uppercase) matches nothing
		{"", "", false},
		{"a/***", "a/b", false},
	}
	for _, tt := range tests {
		if got := MatchPattern(tt.pattern, tt.name); got != tt.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestValidatePattern(t *testing.T) {
	for _, ok := range []string{"nginx", "python*", "team-a/*", "**", "a.b_c-d/e?"} {
		if err := ValidatePattern(ok); err != nil {
			t.Errorf("ValidatePattern(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "/nginx", "nginx/", "a//b", "a***", "UPPER", "sp ace", "semi;colon", string(make([]byte, 256))} {
		if err := ValidatePattern(bad); err == nil {
			t.Errorf("ValidatePattern(%q) = nil, want an error", bad)
		}
	}
}

func TestValidateAccountName(t *testing.T) {
	for _, ok := range []string{"a", "acme", "team-9", "0", "a23456789012345678901234567890123456789012345678901234567890123"} {
		if err := ValidateAccountName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "Acme", "a_b", "a.b", "a b", "a234567890123456789012345678901234567890123456789012345678901234"} {
		err := ValidateAccountName(bad)
		if ErrorCode(err) != EINVALID || ErrorField(err) != "name" {
			t.Errorf("%q: got %v, want an invalid name error", bad, err)
		}
	}
}

func TestSubscriptionEntitlement(t *testing.T) {
	s := Subscription{Images: []string{"nginx", "team-a/*"}, Packages: []string{"os"}}
	cases := map[string]bool{"nginx": true, "team-a/x": true, "redis": false, "team-a/x/y": false}
	for name, want := range cases {
		if got := s.EntitledImage(name); got != want {
			t.Errorf("EntitledImage(%q) = %v", name, got)
		}
	}
	if !s.EntitledPackages("os") || s.EntitledPackages("extras") {
		t.Error("package entitlement wrong")
	}
	if (Subscription{}).EntitledImage("nginx") {
		t.Error("empty subscription entitles an image")
	}
}
