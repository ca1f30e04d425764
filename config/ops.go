package config

import (
	"net"
	"net/netip"
	"strconv"
	"time"
)

// OpsConfig configures what operators and their tools talk to.
type OpsConfig struct {
	// Listen is the admin listener: /metrics, /healthz, /readyz. Empty
	// disables it. Keep it off the public network.
	Listen string `yaml:"listen"`
	// PublicMetrics also serves /metrics on the public listener (off by
	// default: metrics tell an outsider about traffic).
	PublicMetrics bool `yaml:"public_metrics"`
	// ShutdownTimeout is how long SIGTERM waits for requests in flight
	// (large pulls) before closing them.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// TrustedProxies are the CIDRs of load balancers whose
	// X-Forwarded-For is believed; the client IP is the right-most address
	// in it that is not one of them. Empty: the peer address is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// ParsedTrustedProxies returns TrustedProxies as prefixes (a bare address
// is a /32 or /128).
func (o OpsConfig) ParsedTrustedProxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range o.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func (o OpsConfig) validate(p *problems) {
	if o.Listen != "" {
		if _, port, err := net.SplitHostPort(o.Listen); err != nil || !validPort(port) {
			p.add("ops.listen", "must be host:port, e.g. 0.0.0.0:9090, or empty")
		}
	}
	if d := o.ShutdownTimeout.Duration(); d < 0 || d > time.Hour {
		p.add("ops.shutdown_timeout", "must be between 0s and 1h")
	}
	for i, s := range o.TrustedProxies {
		_, perr := netip.ParsePrefix(s)
		_, aerr := netip.ParseAddr(s)
		if perr != nil && aerr != nil {
			p.add("ops.trusted_proxies["+strconv.Itoa(i)+"]", "must be an IP address or CIDR")
		}
	}
}

// LimitsConfig bounds abuse.
type LimitsConfig struct {
	// AuthFailuresPerMinute is the sustained rate of failed
	// authentications allowed per client IP, and AuthFailureBurst how many
	// may come at once; beyond them the IP gets 429 until the bucket
	// refills. Shared across replicas through Redis when configured.
	// 0 disables the limit.
	AuthFailuresPerMinute int `yaml:"auth_failures_per_minute"`
	AuthFailureBurst      int `yaml:"auth_failure_burst"`
	// HeaderTimeout is how long a client has to send a request's headers.
	// 0 means the default, 10s.
	HeaderTimeout Duration `yaml:"header_timeout"`
	// BodyTimeout is how long a client has to send a request's body, from
	// the moment its headers are read: a client that declares a body and
	// then withholds or trickles it is cut off. Downloads are not bounded
	// (they take as long as they take); the bodies tollgate reads are
	// small forms and JSON. 0 means the default, 30s.
	BodyTimeout Duration `yaml:"body_timeout"`
}

func (l LimitsConfig) validate(p *problems) {
	if l.AuthFailuresPerMinute < 0 || l.AuthFailuresPerMinute > 100000 {
		p.add("limits.auth_failures_per_minute", "must be between 0 and 100000")
	}
	if l.AuthFailureBurst < 0 || (l.AuthFailuresPerMinute > 0 && l.AuthFailureBurst < 1) {
		p.add("limits.auth_failure_burst", "must be at least 1 when the limit is on")
	}
	if d := l.HeaderTimeout.Duration(); d < 0 || d > 10*time.Minute {
		p.add("limits.header_timeout", "must be between 0s (the default) and 10m")
	}
	if d := l.BodyTimeout.Duration(); d < 0 || d > 10*time.Minute {
		p.add("limits.body_timeout", "must be between 0s (the default) and 10m")
	}
}
