package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpstreamValidation(t *testing.T) {
	tests := []struct {
		name string
		up   UpstreamConfig
		anon []string
		want string // "" = valid
	}{
		{"none", UpstreamConfig{}, nil, ""},
		{"plain", UpstreamConfig{URL: "https://r.internal:5000", Mappings: []string{"=images/", "team/=vendor/team/"}}, nil, ""},
		{"settings without url", UpstreamConfig{Username: "u"}, nil, "upstream.url: required"},
		{"not a url", UpstreamConfig{URL: "registry.internal"}, nil, "upstream.url: must be an absolute"},
		{"userinfo", UpstreamConfig{URL: "https://u:p@r.internal"}, nil, "upstream.url: must not contain credentials"},
		{"both passwords", UpstreamConfig{URL: "https://r", Username: "u", Password: "p", PasswordFile: "/f"}, nil, "upstream: set at most one"},
		{"password without user", UpstreamConfig{URL: "https://r", PasswordFile: "/f"}, nil, "upstream.username: required"},
		{"bad mapping", UpstreamConfig{URL: "https://r", Mappings: []string{"images/"}}, nil, "upstream.mappings[0]: must be"},
		{"bad anonymous pattern", UpstreamConfig{}, []string{"ok/*", "Bad"}, "anonymous.repositories[1]:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Upstream = tt.up
			c.Anonymous.Repositories = tt.anon
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if tt.up.Password != "" && strings.Contains(err.Error(), tt.up.Password.Reveal()+"\"") {
				t.Fatalf("error quotes the password: %v", err)
			}
		})
	}
}

func TestUpstreamPasswordFromFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(f, []byte("s3cret\n"), 0o600)
	c := Default()
	c.Upstream = UpstreamConfig{URL: "https://r", Username: "u", PasswordFile: f}
	if pw, err := c.UpstreamPassword(); err != nil || pw.Reveal() != "s3cret" {
		t.Fatalf("UpstreamPassword = %q, %v", pw, err)
	}
	if got := (UpstreamConfig{Mappings: []string{"=images/", "a/=b/c/"}}).ParsedMappings(); len(got) != 2 || got[0] != [2]string{"", "images/"} || got[1] != [2]string{"a/", "b/c/"} {
		t.Fatalf("ParsedMappings = %v", got)
	}
}
