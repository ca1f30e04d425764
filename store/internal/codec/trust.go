package codec

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// trustJSON is how a trust policy's body is stored (its id, account,
// audience and times are columns of their own).
type trustJSON struct {
	Name     string      `json:"name"`
	Issuer   string      `json:"issuer"`
	JWKS     string      `json:"jwks,omitempty"`
	Rules    []ruleJSON  `json:"rules"`
	Scope    int64       `json:"scope"`
	Restrict *policyJSON `json:"restrict,omitempty"`
	Lifetime int64       `json:"lifetime_s"`
}

type ruleJSON struct {
	Claim string `json:"claim"`
	Value string `json:"value"`
	Glob  bool   `json:"glob,omitempty"`
}

// MarshalTrust stores the body of a trust policy as JSON text.
func MarshalTrust(p *tollgate.TrustPolicy) (string, error) {
	tj := trustJSON{Name: p.Name, Issuer: p.Issuer, JWKS: p.JWKS, Scope: int64(p.Scope), Lifetime: int64(p.Lifetime / time.Second)}
	for _, r := range p.Rules {
		tj.Rules = append(tj.Rules, ruleJSON(r))
	}
	restrict, err := MarshalPolicy(p.Restrict)
	if err != nil {
		return "", err
	}
	if restrict != "{}" {
		tj.Restrict = &policyJSON{}
		if err := json.Unmarshal([]byte(restrict), tj.Restrict); err != nil {
			return "", err
		}
	}
	b, err := json.Marshal(tj)
	return string(b), err
}

// UnmarshalTrust fills p's body from what MarshalTrust wrote.
func UnmarshalTrust(s string, p *tollgate.TrustPolicy) error {
	var tj trustJSON
	if err := json.Unmarshal([]byte(s), &tj); err != nil {
		return err
	}
	p.Name, p.Issuer, p.JWKS = tj.Name, tj.Issuer, tj.JWKS
	p.Scope, p.Lifetime = tollgate.Scope(tj.Scope), time.Duration(tj.Lifetime)*time.Second
	p.Rules = nil
	for _, r := range tj.Rules {
		p.Rules = append(p.Rules, tollgate.ClaimRule(r))
	}
	p.Restrict = tollgate.TokenPolicy{}
	if tj.Restrict != nil {
		b, err := json.Marshal(tj.Restrict)
		if err != nil {
			return err
		}
		if p.Restrict, err = UnmarshalPolicy(string(b)); err != nil {
			return err
		}
	}
	return nil
}

// identityJSON is how an ephemeral credential's identity is stored.
type identityJSON struct {
	PolicyID string            `json:"policy_id"`
	Issuer   string            `json:"issuer"`
	Subject  string            `json:"subject"`
	Claims   map[string]string `json:"claims,omitempty"`
}

// MarshalIdentity stores an identity as JSON text, and its policy id as
// a column value; nil (a registry token) is "" and NULL.
func MarshalIdentity(id *tollgate.Identity) (doc string, policyID any, err error) {
	if id == nil {
		return "", nil, nil
	}
	b, err := json.Marshal(identityJSON(*id))
	return string(b), id.PolicyID, err
}

// UnmarshalIdentity reads what MarshalIdentity wrote ("" is nil).
func UnmarshalIdentity(s string) (*tollgate.Identity, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ij identityJSON
	if err := json.Unmarshal([]byte(s), &ij); err != nil {
		return nil, err
	}
	id := tollgate.Identity(ij)
	return &id, nil
}
