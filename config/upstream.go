package config

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate"
)

// UpstreamConfig is the upstream registry tollgate proxies image pulls to.
// Empty URL: no image routes (in `tollgate dev`, the embedded registry).
type UpstreamConfig struct {
	// URL is the upstream's base URL, e.g. https://registry.internal:5000.
	URL string `yaml:"url"`
	// CAFile is a PEM bundle trusted for the upstream's TLS certificate,
	// in addition to the system roots.
	CAFile string `yaml:"ca_file"`
	// Username and Password (or PasswordFile) are tollgate's own
	// credentials at the upstream: sent as Basic, or exchanged for bearer
	// tokens when the upstream challenges for them. Clients' credentials
	// never go upstream.
	Username     string          `yaml:"username"`
	Password     tollgate.Secret `yaml:"password"`
	PasswordFile string          `yaml:"password_file"`
	// Mappings rewrite public repository name prefixes to upstream ones,
	// "PUBLIC=UPSTREAM", first match wins: "=images/" serves upstream
	// images/nginx as nginx; "team-a/=vendor/team-a/" only that subtree.
	Mappings []string `yaml:"mappings"`
}

// ParsedMappings returns Mappings as (public, upstream) prefix pairs.
func (u UpstreamConfig) ParsedMappings() [][2]string {
	var out [][2]string
	for _, m := range u.Mappings {
		pub, up, _ := strings.Cut(m, "=")
		out = append(out, [2]string{pub, up})
	}
	return out
}

// UpstreamPassword returns the upstream password, inline or from its file.
func (c *Config) UpstreamPassword() (tollgate.Secret, error) {
	u := c.Upstream
	switch {
	case u.Password != "":
		return u.Password, nil
	case u.PasswordFile != "":
		return readSecretFile("upstream.password_file", u.PasswordFile)
	}
	return "", nil
}

func (u UpstreamConfig) validate(p *problems) {
	if u.URL == "" {
		if u.CAFile != "" || u.Username != "" || u.Password != "" || u.PasswordFile != "" || len(u.Mappings) > 0 {
			p.add("upstream.url", "required when other upstream settings are set")
		}
		return
	}
	pu, err := url.Parse(u.URL)
	switch {
	case err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "":
		p.add("upstream.url", "must be an absolute http or https URL")
	case pu.User != nil:
		p.add("upstream.url", "must not contain credentials (use upstream.username and upstream.password_file)")
	}
	if u.Password != "" && u.PasswordFile != "" {
		p.add("upstream", "set at most one of password and password_file")
	}
	if (u.Password != "" || u.PasswordFile != "") && u.Username == "" {
		p.add("upstream.username", "required with a password")
	}
	for i, m := range u.Mappings {
		pub, up, ok := strings.Cut(m, "=")
		if !ok || strings.ContainsAny(m, " \t") || strings.HasPrefix(pub, "/") || strings.HasPrefix(up, "/") {
			p.add("upstream.mappings["+strconv.Itoa(i)+"]", "must be PUBLIC_PREFIX=UPSTREAM_PREFIX, e.g. =images/")
		}
	}
}

// AnonymousConfig lists repositories anyone may pull without a token.
type AnonymousConfig struct {
	// Repositories are patterns as in subscriptions (nginx, public/**).
	// Empty (the default): no anonymous pulls.
	Repositories []string `yaml:"repositories"`
}
