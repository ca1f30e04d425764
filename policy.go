package tollgate

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// TokenPolicy is what a token is limited to beyond its account's
// subscription. Effective access is the subscription ∩ the policy: a
// policy can narrow what a token may do, never widen it. The zero value
// limits nothing (today's behaviour).
type TokenPolicy struct {
	// Images are repository patterns (see MatchPattern) the token is
	// limited to; empty: every image the subscription entitles.
	Images []string
	// Packages are package repository names (patterns allowed) the token
	// is limited to; empty: every repository the subscription entitles.
	Packages []string
	// Networks are the client networks the token may be used from (the
	// client address as ops.trusted_proxies defines it); empty: anywhere.
	Networks []netip.Prefix
	// ValidFrom: the token is not valid before it (status scheduled).
	ValidFrom *time.Time
	// PausedAt: the token is paused (refused like a revoked one) since
	// then, until it is resumed. nil: not paused.
	PausedAt *time.Time
	// MaxPulls and MaxBytes cap what the token may fetch per calendar
	// month (UTC): pulls (manifest GETs and package downloads) and bytes
	// sent. 0: no cap. Counted across replicas (see package quota), with
	// the bounded overshoot docs/operations.md states.
	MaxPulls int64
	MaxBytes int64
}

// Capped reports whether the policy caps usage at all.
func (p TokenPolicy) Capped() bool { return p.MaxPulls > 0 || p.MaxBytes > 0 }

// CapResetsAt is when the month of now ends and caps count from zero.
func CapResetsAt(now time.Time) time.Time {
	y, m, _ := now.UTC().Date()
	return time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
}

// Limits of a token policy.
const (
	MaxPolicyPatterns = 100
	MaxPolicyNetworks = 50
)

// IsZero reports whether p limits nothing.
func (p TokenPolicy) IsZero() bool {
	return len(p.Images) == 0 && len(p.Packages) == 0 && len(p.Networks) == 0 && p.ValidFrom == nil && p.PausedAt == nil && !p.Capped()
}

// AllowsImage reports whether the policy lets the token reach repository
// name (the subscription is checked separately).
func (p TokenPolicy) AllowsImage(name string) bool {
	return len(p.Images) == 0 || matchAny(p.Images, name)
}

// AllowsPackages reports whether the policy lets the token reach package
// repository repo.
func (p TokenPolicy) AllowsPackages(repo string) bool {
	return len(p.Packages) == 0 || matchAny(p.Packages, repo)
}

// AllowsAddress reports whether the token may be used from addr. An
// unknown (zero) address is allowed only when no network is listed: a
// rule fails closed.
func (p TokenPolicy) AllowsAddress(addr netip.Addr) bool {
	if len(p.Networks) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, n := range p.Networks {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, name string) bool {
	for _, pat := range patterns {
		if matchStored(pat, name) {
			return true
		}
	}
	return false
}

// ParseNetworks parses CIDRs ("10.0.0.0/8", "2001:db8::/32") or single
// addresses (taken as /32 or /128); field names the input in errors.
// The networks come back masked, deduplicated and sorted.
func ParseNetworks(field string, values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, v := range values {
		v = strings.TrimSpace(v)
		f := indexField(field, i)
		var pfx netip.Prefix
		var err error
		if strings.Contains(v, "/") {
			pfx, err = netip.ParsePrefix(v)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(v); err == nil {
				pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
		}
		if err != nil || strings.Contains(v, "%") {
			return nil, FieldError(f, "%q is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address", clipText(v, 60))
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		out = append(out, pfx.Masked())
	}
	if len(out) > MaxPolicyNetworks {
		return nil, FieldError(field, "at most %d networks", MaxPolicyNetworks)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out), nil
}

// FormatNetworks is the text form of networks, for the wire and audits.
func FormatNetworks(ns []netip.Prefix) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.String()
	}
	return out
}

// Validate checks the policy's lists; errors name the field path
// ("restrict_images[2]").
func (p TokenPolicy) Validate() error {
	if len(p.Images) > MaxPolicyPatterns {
		return FieldError("restrict_images", "at most %d patterns", MaxPolicyPatterns)
	}
	for i, pat := range p.Images {
		if err := ValidatePattern(pat); err != nil {
			return FieldError(indexField("restrict_images", i), "%s", err.(*Error).Message)
		}
	}
	if len(p.Packages) > MaxPolicyPatterns {
		return FieldError("restrict_packages", "at most %d repositories", MaxPolicyPatterns)
	}
	for i, name := range p.Packages {
		if err := ValidatePattern(name); err != nil {
			return FieldError(indexField("restrict_packages", i), "%s", err.(*Error).Message)
		}
	}
	if len(p.Networks) > MaxPolicyNetworks {
		return FieldError("networks", "at most %d networks", MaxPolicyNetworks)
	}
	if p.MaxPulls < 0 {
		return FieldError("max_pulls", "must be 0 (no cap) or more")
	}
	if p.MaxBytes < 0 {
		return FieldError("max_bytes", "must be 0 (no cap) or more")
	}
	if p.ValidFrom != nil && p.ValidFrom.After(MaxExpiry) {
		return FieldError("valid_from", "must be on or before 9999-12-31 UTC")
	}
	return nil
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RevokeAllTokens revokes every token of the account that is not revoked
// yet, in one transaction, and reaches every replica as one invalidation:
// the incident button. It returns how many it revoked.
func (s *Service) RevokeAllTokens(ctx context.Context, actor, account string) (int, error) {
	return s.allTokens(ctx, actor, account, ActionTokensRevokedAll, "tokens_revoked", func(t *Token, now time.Time) bool {
		if t.RevokedAt != nil {
			return false
		}
		t.RevokedAt = &now
		return true
	})
}

// PauseAllTokens pauses every token of the account that is neither
// revoked nor paused; each can be resumed on its own.
func (s *Service) PauseAllTokens(ctx context.Context, actor, account string) (int, error) {
	return s.allTokens(ctx, actor, account, ActionTokensPausedAll, "tokens_paused", func(t *Token, now time.Time) bool {
		if t.RevokedAt != nil || t.Policy.PausedAt != nil {
			return false
		}
		t.Policy.PausedAt = &now
		return true
	})
}

func (s *Service) allTokens(ctx context.Context, actor, account, action, key string, change func(t *Token, now time.Time) bool) (int, error) {
	n := 0
	_, err := s.updateAccount(ctx, actor, account, action, func(tx Tx, a *Account, now time.Time) (map[string]Change, []string, error) {
		n = 0
		toks, err := tx.ListTokens(ctx, a.ID)
		if err != nil {
			return nil, nil, err
		}
		var ids []string
		for _, t := range toks {
			if !change(t, now) {
				continue
			}
			t.UpdatedAt = now
			if err := tx.UpdateToken(ctx, t); err != nil {
				return nil, nil, err
			}
			ids = append(ids, t.ID)
		}
		n = len(ids)
		if n == 0 {
			return nil, nil, nil
		}
		return map[string]Change{key: {To: strings.Join(ids, ",")}}, ids, nil
	})
	return n, err
}

// UnusedFor reports whether a token that is not revoked has gone unused
// for at least d at now: never used and created at least d ago, or last
// used at least d ago (the stale-token report).
func (t *Token) UnusedFor(now time.Time, d time.Duration) bool {
	if t.RevokedAt != nil {
		return false
	}
	last := t.CreatedAt
	if t.LastUsedAt != nil {
		last = *t.LastUsedAt
	}
	return now.Sub(last) >= d
}
