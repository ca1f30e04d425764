// Package codec encodes the values both stores keep as JSON text
// (subscription lists, audit changes, token policies) the same way.
package codec

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

func NullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// MarshalSubscription stores a nil list as "[]".
func MarshalSubscription(s tollgate.Subscription) (images, packages string, err error) {
	if images, err = MarshalList(s.Images); err != nil {
		return "", "", err
	}
	packages, err = MarshalList(s.Packages)
	return images, packages, err
}

func MarshalList(l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// UnmarshalList reads an empty list as nil.
func UnmarshalList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

func MarshalChanges(c map[string]tollgate.Change) (string, error) {
	if len(c) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(c)
	return string(b), err
}

// UnmarshalChanges reads an empty object as nil.
func UnmarshalChanges(s string) (map[string]tollgate.Change, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var c map[string]tollgate.Change
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, err
	}
	if len(c) == 0 {
		return nil, nil
	}
	return c, nil
}

// policyJSON is how a token policy is stored.
type policyJSON struct {
	Images    []string   `json:"images,omitempty"`
	Packages  []string   `json:"packages,omitempty"`
	Networks  []string   `json:"networks,omitempty"`
	ValidFrom *time.Time `json:"valid_from,omitempty"`
	PausedAt  *time.Time `json:"paused_at,omitempty"`
	MaxPulls  int64      `json:"max_pulls,omitempty"`
	MaxBytes  int64      `json:"max_bytes,omitempty"`
}

// MarshalPolicy stores a token policy as JSON text; the zero policy is "{}".
func MarshalPolicy(p tollgate.TokenPolicy) (string, error) {
	b, err := json.Marshal(policyJSON{Images: p.Images, Packages: p.Packages, Networks: tollgate.FormatNetworks(p.Networks),
		ValidFrom: p.ValidFrom, PausedAt: p.PausedAt, MaxPulls: p.MaxPulls, MaxBytes: p.MaxBytes})
	return string(b), err
}

// UnmarshalPolicy reads what MarshalPolicy wrote. A network that no longer
// parses is an error, never dropped: dropping it would widen the token.
func UnmarshalPolicy(s string) (tollgate.TokenPolicy, error) {
	var pj policyJSON
	if strings.TrimSpace(s) != "" {
		if err := json.Unmarshal([]byte(s), &pj); err != nil {
			return tollgate.TokenPolicy{}, err
		}
	}
	p := tollgate.TokenPolicy{Images: pj.Images, Packages: pj.Packages, ValidFrom: utcPtr(pj.ValidFrom), PausedAt: utcPtr(pj.PausedAt),
		MaxPulls: pj.MaxPulls, MaxBytes: pj.MaxBytes}
	if len(pj.Networks) > 0 {
		ns, err := tollgate.ParseNetworks("policy.networks", pj.Networks)
		if err != nil {
			return tollgate.TokenPolicy{}, err
		}
		p.Networks = ns
	}
	return p, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// accountPolicyJSON is how an account policy is stored.
type accountPolicyJSON struct {
	MaxLifetime         int64    `json:"max_lifetime_s,omitempty"`
	Networks            []string `json:"networks,omitempty"`
	AutoPauseAfter      int64    `json:"auto_pause_after_s,omitempty"`
	RequireRestrictions bool     `json:"require_restrictions,omitempty"`
}

// MarshalAccountPolicy stores an account policy as JSON text.
func MarshalAccountPolicy(p tollgate.AccountPolicy) (string, error) {
	b, err := json.Marshal(accountPolicyJSON{MaxLifetime: int64(p.MaxLifetime / time.Second), Networks: tollgate.FormatNetworks(p.Networks),
		AutoPauseAfter: int64(p.AutoPauseAfter / time.Second), RequireRestrictions: p.RequireRestrictions})
	return string(b), err
}

// UnmarshalAccountPolicy reads what MarshalAccountPolicy wrote; a network
// that no longer parses is an error, never dropped.
func UnmarshalAccountPolicy(s string) (tollgate.AccountPolicy, error) {
	var pj accountPolicyJSON
	if strings.TrimSpace(s) != "" {
		if err := json.Unmarshal([]byte(s), &pj); err != nil {
			return tollgate.AccountPolicy{}, err
		}
	}
	p := tollgate.AccountPolicy{MaxLifetime: time.Duration(pj.MaxLifetime) * time.Second,
		AutoPauseAfter: time.Duration(pj.AutoPauseAfter) * time.Second, RequireRestrictions: pj.RequireRestrictions}
	if len(pj.Networks) > 0 {
		ns, err := tollgate.ParseNetworks("policy.networks", pj.Networks)
		if err != nil {
			return tollgate.AccountPolicy{}, err
		}
		p.Networks = ns
	}
	return p, nil
}
