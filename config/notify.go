package config

import (
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// NotifyConfig configures expiry warnings and notifications (webhooks and
// e-mail, delivered from the outbox by package notify on every replica).
type NotifyConfig struct {
	// WarnBefore: responses served with a token that expires within it
	// carry a Warning header (299), on /v2/ and /token.
	WarnBefore Duration `yaml:"warn_before"`
	// ExpiryWarnings are when token.expiring is sent before a token's
	// expiry, each once per token: whole days ("30d") or Go durations.
	ExpiryWarnings []string `yaml:"expiry_warnings"`
	// Interval is how often each replica sweeps for due events and
	// deliveries. 0 turns the deliverer off on this replica.
	Interval Duration `yaml:"interval"`
	// RetryFor is how long a failing delivery is retried, with back-off,
	// before it is given up.
	RetryFor Duration `yaml:"retry_for"`
	// Lease is how long a replica holds a delivery it claimed: a replica
	// that dies mid-delivery leaves it to another after this long. Keep
	// it above the webhook timeout (10 s) and the SMTP one (30 s).
	Lease Duration `yaml:"lease"`
	// AllowPrivateWebhooks lets webhooks reach loopback and private
	// addresses (tests, in-cluster receivers). Off: customers cannot aim
	// the deliverer at the internal network.
	AllowPrivateWebhooks bool `yaml:"allow_private_webhooks"`
	// ConsoleURL starts the link to a token's card in e-mails; empty
	// means public_url + "/console".
	ConsoleURL string     `yaml:"console_url"`
	SMTP       SMTPConfig `yaml:"smtp"`
}

// SMTPConfig is the mail server for expiry e-mails. Empty Addr: no e-mail.
type SMTPConfig struct {
	Addr string `yaml:"addr"` // host:port
	From string `yaml:"from"`
	// StartTLS is required unless Insecure is set (a local relay).
	Insecure     bool   `yaml:"insecure"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"` // read at start; never in the config itself
}

func defaultNotify() NotifyConfig {
	return NotifyConfig{
		WarnBefore:     Duration(7 * 24 * time.Hour),
		ExpiryWarnings: []string{"30d", "7d", "1d"},
		Interval:       Duration(30 * time.Second),
		RetryFor:       Duration(24 * time.Hour),
		Lease:          Duration(2 * time.Minute),
	}
}

// ParseWarning parses one of ExpiryWarnings: "7d" or a Go duration.
func ParseWarning(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 366 {
			return 0, false
		}
		return time.Duration(days) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(v)
	return d, err == nil && d > 0 && d <= 366*24*time.Hour
}

// Thresholds returns ExpiryWarnings parsed (invalid ones are left out;
// Validate reports them).
func (n NotifyConfig) Thresholds() []time.Duration {
	var out []time.Duration
	for _, v := range n.ExpiryWarnings {
		if d, ok := ParseWarning(v); ok {
			out = append(out, d)
		}
	}
	return out
}

func (n NotifyConfig) validate(p *problems) {
	if d := n.WarnBefore.Duration(); d < 0 || d > 366*24*time.Hour {
		p.add("notify.warn_before", "must be between 0s and 8784h (366 days)")
	}
	for i, v := range n.ExpiryWarnings {
		if _, ok := ParseWarning(v); !ok {
			p.add("notify.expiry_warnings["+strconv.Itoa(i)+"]", "must be a number of days like 7d or a duration like 12h, at most 366 days")
		}
	}
	if d := n.Interval.Duration(); d < 0 || d > time.Hour {
		p.add("notify.interval", "must be between 0s (off) and 1h")
	}
	if d := n.RetryFor.Duration(); d < time.Minute || d > 7*24*time.Hour {
		p.add("notify.retry_for", "must be between 1m and 168h")
	}
	if d := n.Lease.Duration(); d < time.Second || d > time.Hour {
		p.add("notify.lease", "must be between 1s and 1h")
	}
	if n.ConsoleURL != "" {
		if u, err := url.Parse(n.ConsoleURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("notify.console_url", "must be an absolute http or https URL")
		}
	}
	if s := n.SMTP; s.Addr != "" {
		if _, port, err := net.SplitHostPort(s.Addr); err != nil || !validPort(port) {
			p.add("notify.smtp.addr", "must be host:port")
		}
		if _, err := mail.ParseAddress(s.From); err != nil {
			p.add("notify.smtp.from", "must be an e-mail address")
		}
		if s.Username != "" && s.PasswordFile == "" {
			p.add("notify.smtp.password_file", "is required with a username")
		}
	}
}
