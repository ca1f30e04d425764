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
