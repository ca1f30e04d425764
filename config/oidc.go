package config

import "time"

// OIDCConfig configures keyless pulls (docs/keyless.md): OIDC tokens
// accepted as passwords and exchanged at POST /oauth2/token under the
// accounts' trust policies.
type OIDCConfig struct {
	// Enabled accepts OIDC tokens (default true). Off, an OIDC token is
	// a wrong password and /oauth2/token is not served.
	Enabled bool `yaml:"enabled"`
	// AllowLoopbackIssuers lets issuers (and their JWKS) live on a
	// loopback address, over http too: development and tests only
	// (tollgate dev sets it). Otherwise only https issuers on public
	// addresses are fetched.
	AllowLoopbackIssuers bool `yaml:"allow_loopback_issuers"`
	// FetchTimeout bounds one discovery or JWKS fetch (default 5s).
	FetchTimeout Duration `yaml:"fetch_timeout"`
	// MinRefetch is the least time between two fetches of one issuer
	// URL, however many unknown key ids arrive, and how long a fetched
	// key set is trusted before it is fetched again (default 30s).
	MinRefetch Duration `yaml:"min_refetch"`
	// EphemeralRetention is how long ended (expired or revoked) ephemeral
	// credentials stay listed before the sweep deletes them (default 24h).
	EphemeralRetention Duration `yaml:"ephemeral_retention"`
}

func defaultOIDC() OIDCConfig {
	return OIDCConfig{Enabled: true, FetchTimeout: Duration(5 * time.Second), MinRefetch: Duration(30 * time.Second),
		EphemeralRetention: Duration(24 * time.Hour)}
}

func (o OIDCConfig) validate(p *problems) {
	if d := o.FetchTimeout.Duration(); d < 100*time.Millisecond || d > time.Minute {
		p.add("oidc.fetch_timeout", "must be between 100ms and 1m")
	}
	if d := o.MinRefetch.Duration(); d < time.Second || d > time.Hour {
		p.add("oidc.min_refetch", "must be between 1s and 1h")
	}
	if d := o.EphemeralRetention.Duration(); d < 0 || d > 90*24*time.Hour {
		p.add("oidc.ephemeral_retention", "must be between 0 and 2160h (90 days)")
	}
}
