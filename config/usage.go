package config

import "time"

// UsageConfig configures pull insight (package usage): what every
// replica records about authorized pulls, how long the store keeps it,
// and the optional raw event stream (docs/usage.md).
type UsageConfig struct {
	// Enabled records pull events (default true). Off, the edge hands
	// nothing over and the Usage pages stay empty.
	Enabled bool `yaml:"enabled"`
	// DetailRetention is how long per-address and per-user-agent detail
	// is kept (default 720h, 30 days).
	DetailRetention Duration `yaml:"detail_retention"`
	// AggregateRetention is how long daily aggregates are kept (default
	// 9504h, 13 months of 396 days).
	AggregateRetention Duration `yaml:"aggregate_retention"`
	// FlushInterval is how often each replica writes its aggregates
	// (default 10s).
	FlushInterval Duration `yaml:"flush_interval"`
	// Buffer is how many events may wait between the edge and the
	// recorder; beyond it events are dropped and counted (default 65536).
	Buffer int `yaml:"buffer"`
	// Stream writes every event as a JSON line (format v1, see
	// docs/usage.md): "" off, "-" standard output, else a file appended
	// to (created 0600).
	Stream string `yaml:"stream"`
}

func defaultUsage() UsageConfig {
	return UsageConfig{
		Enabled:            true,
		DetailRetention:    Duration(30 * 24 * time.Hour),
		AggregateRetention: Duration(396 * 24 * time.Hour),
		FlushInterval:      Duration(10 * time.Second),
		Buffer:             65536,
	}
}

func (u UsageConfig) validate(p *problems) {
	if d := u.DetailRetention.Duration(); d < 24*time.Hour {
		p.add("usage.detail_retention", "must be at least 24h")
	}
	if d := u.AggregateRetention.Duration(); d < u.DetailRetention.Duration() {
		p.add("usage.aggregate_retention", "must be at least usage.detail_retention")
	}
	if d := u.FlushInterval.Duration(); d < 100*time.Millisecond || d > time.Hour {
		p.add("usage.flush_interval", "must be between 100ms and 1h")
	}
	if u.Buffer < 1 || u.Buffer > 1<<24 {
		p.add("usage.buffer", "must be between 1 and 16777216")
	}
}
