package tollgate

import (
	"context"
	"fmt"
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

// ParseValidFrom reads a valid-from date: YYYY-MM-DD (the start of that
// day, UTC) or an RFC 3339 time. EINVALID (field valid_from) otherwise.
func ParseValidFrom(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, FieldError("valid_from", "%q is not a date (YYYY-MM-DD) or an RFC 3339 time", clipText(v, 40))
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
	return s.allTokens(ctx, actor, account, ActionTokensRevokedAll, "tokens_revoked", ActionTokenRevoked, func(t *Token, now time.Time) bool {
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
	return s.allTokens(ctx, actor, account, ActionTokensPausedAll, "tokens_paused", ActionTokenPaused, func(t *Token, now time.Time) bool {
		if t.RevokedAt != nil || t.Policy.PausedAt != nil {
			return false
		}
		t.Policy.PausedAt = &now
		return true
	})
}

// Each token changed is notified as if changed alone (tokenAction).
func (s *Service) allTokens(ctx context.Context, actor, account, action, key, tokenAction string, change func(t *Token, now time.Time) bool) (int, error) {
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
			if err := s.emitAction(ctx, tx, a, t, tokenAction, now); err != nil {
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

// AccountPolicy is what an operator requires of every token of an
// account. The zero value requires nothing.
type AccountPolicy struct {
	// MaxLifetime: tokens created, extended or edited must expire within
	// it ("never" is refused). 0: no maximum.
	MaxLifetime time.Duration
	// Networks every token of the account is limited to, whatever its own
	// networks (judged by Decide on every request). Empty: anywhere.
	Networks []netip.Prefix
	// AutoPauseAfter pauses tokens unused for that long (Service.AutoPause,
	// which the server runs on one replica per interval: JobAutoPause). 0:
	// never.
	AutoPauseAfter time.Duration
	// RequireRestrictions: the account's own keys and console users may
	// create only tokens limited by images, packages or networks.
	RequireRestrictions bool
}

// Validate checks the policy's bounds.
func (p AccountPolicy) Validate() error {
	switch {
	case p.MaxLifetime < 0 || p.MaxLifetime > 100*365*24*time.Hour:
		return FieldError("max_lifetime", "must be between 0 (none) and 100 years")
	case p.AutoPauseAfter < 0 || (p.AutoPauseAfter > 0 && p.AutoPauseAfter < 24*time.Hour):
		return FieldError("auto_pause_after", "must be 0 (never) or at least a day")
	case len(p.Networks) > MaxPolicyNetworks:
		return FieldError("networks", "at most %d networks", MaxPolicyNetworks)
	}
	return nil
}

// AllowsAddress reports whether the account's tokens may be used from
// addr (fails closed on an unknown address when networks are set).
func (p AccountPolicy) AllowsAddress(addr netip.Addr) bool {
	return TokenPolicy{Networks: p.Networks}.AllowsAddress(addr)
}

// checkAccountPolicy applies a's policy to a token about to be written by
// actor: its expiry within the maximum lifetime, and restrictions where
// customers must set them.
func checkAccountPolicy(actor string, a *Account, t *Token, now time.Time) error {
	p := a.Policy
	if p.MaxLifetime > 0 {
		limit := now.Add(p.MaxLifetime)
		if t.ExpiresAt == nil {
			return FieldError("expires", "account %s requires tokens to expire within %s: \"never\" is not allowed", a.Name, fmtDays(p.MaxLifetime))
		}
		if t.ExpiresAt.After(limit) {
			return FieldError("expires", "account %s requires tokens to expire within %s (by %s)", a.Name, fmtDays(p.MaxLifetime), limit.Format("2006-01-02"))
		}
	}
	if p.RequireRestrictions && IsCustomerActor(actor) &&
		len(t.Policy.Images) == 0 && len(t.Policy.Packages) == 0 && len(t.Policy.Networks) == 0 {
		return FieldError("restrict_images", "account %s requires every token to be limited to images, package repositories or networks", a.Name)
	}
	return nil
}

func fmtDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.String()
}

// SetAccountPolicy sets what every token of the account must meet. The
// networks bite at once on every replica; the lifetime and restriction
// rules apply to tokens created or changed from now on.
func (s *Service) SetAccountPolicy(ctx context.Context, actor, name string, p AccountPolicy) (*Account, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return s.updateAccount(ctx, actor, name, ActionAccountPolicyChanged, func(_ Tx, a *Account, _ time.Time) (map[string]Change, []string, error) {
		c := map[string]Change{}
		old := a.Policy
		if old.MaxLifetime != p.MaxLifetime {
			c["max_lifetime"] = Change{From: old.MaxLifetime.String(), To: p.MaxLifetime.String()}
		}
		if from, to := strings.Join(FormatNetworks(old.Networks), ","), strings.Join(FormatNetworks(p.Networks), ","); from != to {
			c["networks"] = Change{From: from, To: to}
		}
		if old.AutoPauseAfter != p.AutoPauseAfter {
			c["auto_pause_after"] = Change{From: old.AutoPauseAfter.String(), To: p.AutoPauseAfter.String()}
		}
		if old.RequireRestrictions != p.RequireRestrictions {
			c["require_restrictions"] = Change{From: fmt.Sprint(old.RequireRestrictions), To: fmt.Sprint(p.RequireRestrictions)}
		}
		a.Policy = p
		return c, nil, nil
	})
}

// AutoPause pauses, in every account whose policy says so, the tokens
// unused for longer than its AutoPauseAfter, and returns how many. The
// server runs it on one replica per interval (ClaimJob with JobAutoPause),
// so that one sweep does the work and its log line; should two runs still
// meet (a caller that does not claim), pausing a paused token changes
// nothing, so a token is paused, audited and notified once.
func (s *Service) AutoPause(ctx context.Context) (int, error) {
	accts, err := s.ListAccounts(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	now := s.now()
	for _, a := range accts {
		if a.Policy.AutoPauseAfter <= 0 {
			continue
		}
		toks, _, err := s.ListTokens(ctx, a.Name, "")
		if err != nil {
			return n, err
		}
		for _, t := range toks {
			if t.Ephemeral() || t.Policy.PausedAt != nil || !t.UnusedFor(now, a.Policy.AutoPauseAfter) {
				continue
			}
			if _, err := s.PauseToken(ctx, ActorSystem, t.ID); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
