package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/tollgate/tollgate"
)

// Trust policies (keyless pulls, docs/keyless.md): an account's workloads
// pull with their OIDC identity. Customers manage their own account's;
// the operator any account's.

// Identity is the workload an ephemeral credential was issued to.
type Identity struct {
	TrustPolicy string            `json:"trust_policy"`
	Issuer      string            `json:"issuer"`
	Subject     string            `json:"subject"`
	Claims      map[string]string `json:"claims"` // the claims the policy's rules matched
}

func fromIdentity(i *tollgate.Identity) *Identity {
	if i == nil {
		return nil
	}
	claims := i.Claims
	if claims == nil {
		claims = map[string]string{}
	}
	return &Identity{TrustPolicy: i.PolicyID, Issuer: i.Issuer, Subject: i.Subject, Claims: claims}
}

// ClaimRule is one condition on a claim: equal to value, or matching it
// as a glob ("*" any run of characters, "?" one) when glob is true.
type ClaimRule struct {
	Claim string `json:"claim"`
	Value string `json:"value"`
	Glob  bool   `json:"glob"`
}

// TrustPolicy is the wire form of a trust policy; the body of create and
// replace (PUT) too, where id, account and times are ignored.
type TrustPolicy struct {
	ID       string      `json:"id"`
	Account  string      `json:"account"`
	Name     string      `json:"name"`
	Issuer   string      `json:"issuer"`
	JWKS     string      `json:"jwks,omitempty"`     // static key set; empty: the issuer's discovery
	Audience string      `json:"audience,omitempty"` // default tollgate:ACCOUNT
	Claims   []ClaimRule `json:"claims"`
	Scope    []string    `json:"scope"`    // default images
	Lifetime string      `json:"lifetime"` // Go duration, default 15m, at most 12h
	// Restrictions the issued credentials carry (images, packages,
	// networks).
	Restrictions Restrictions `json:"restrictions"`
	CreatedAt    time.Time    `json:"created_at"`
	UpdatedAt    time.Time    `json:"updated_at"`
	// Credentials are the ephemeral credentials the policy issued that
	// are still listed (GET of one policy only).
	Credentials []Token `json:"credentials,omitempty"`
}

// TrustPolicyList answers GET /accounts/{name}/trust-policies.
type TrustPolicyList struct {
	TrustPolicies []TrustPolicy `json:"trust_policies"`
}

// FromTrustPolicy is the wire form of p.
func FromTrustPolicy(p *tollgate.TrustPolicy) TrustPolicy {
	out := TrustPolicy{ID: p.ID, Account: p.AccountName, Name: p.Name, Issuer: p.Issuer, JWKS: p.JWKS, Audience: p.Audience,
		Claims: []ClaimRule{}, Scope: p.Scope.Names(), Lifetime: p.Lifetime.String(),
		Restrictions: Restrictions{Images: nonNil(p.Restrict.Images), Packages: nonNil(p.Restrict.Packages), Networks: tollgate.FormatNetworks(p.Restrict.Networks)},
		CreatedAt:    wireTime(p.CreatedAt), UpdatedAt: wireTime(p.UpdatedAt)}
	for _, r := range p.Rules {
		out.Claims = append(out.Claims, ClaimRule(r))
	}
	return out
}

// toDomain reads a request body; errors name the field.
func (in TrustPolicy) toDomain() (tollgate.TrustPolicy, error) {
	p := tollgate.TrustPolicy{Name: in.Name, Issuer: in.Issuer, JWKS: in.JWKS, Audience: in.Audience}
	for _, r := range in.Claims {
		p.Rules = append(p.Rules, tollgate.ClaimRule(r))
	}
	if len(in.Scope) > 0 {
		sc, err := tollgate.ParseScopeNames(in.Scope)
		if err != nil {
			return p, err
		}
		p.Scope = sc
	}
	if in.Lifetime != "" {
		d, err := time.ParseDuration(in.Lifetime)
		if err != nil {
			return p, tollgate.FieldError("lifetime", "%q is not a duration (15m, 1h, 12h)", in.Lifetime)
		}
		p.Lifetime = d
	}
	p.Restrict.Images, p.Restrict.Packages = in.Restrictions.Images, in.Restrictions.Packages
	if len(in.Restrictions.Networks) > 0 {
		ns, err := tollgate.ParseNetworks("restrictions.networks", in.Restrictions.Networks)
		if err != nil {
			return p, err
		}
		p.Restrict.Networks = ns
	}
	return p, nil
}

func (s *Server) trustRoutes() []route {
	const p = "/api/v1"
	return []route{
		{"GET", p + "/accounts/{name}/trust-policies", false, s.listTrust},
		{"POST", p + "/accounts/{name}/trust-policies", false, s.createTrust},
		{"GET", p + "/trust-policies/{id}", false, s.getTrust},
		{"PUT", p + "/trust-policies/{id}", false, s.replaceTrust},
		{"DELETE", p + "/trust-policies/{id}", false, s.deleteTrust},
	}
}

func (s *Server) listTrust(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	ps, err := s.Service.ListTrustPolicies(r.Context(), name)
	if err != nil {
		return 0, nil, err
	}
	out := TrustPolicyList{TrustPolicies: []TrustPolicy{}}
	for _, p := range ps {
		out.TrustPolicies = append(out.TrustPolicies, FromTrustPolicy(p))
	}
	return http.StatusOK, out, nil
}

func (s *Server) createTrust(r *http.Request, who *actor) (int, any, error) {
	name, err := ownAccount(r, who)
	if err != nil {
		return 0, nil, err
	}
	var in TrustPolicy
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	p, err := in.toDomain()
	if err != nil {
		return 0, nil, err
	}
	created, err := s.Service.CreateTrustPolicy(r.Context(), who.name, name, p)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, FromTrustPolicy(created), nil
}

// trustPolicy loads a policy if who may see it; another account's answers
// like one that does not exist.
func (s *Server) trustPolicy(ctx context.Context, who *actor, id string) (*tollgate.TrustPolicy, error) {
	p, err := s.Service.TrustPolicy(ctx, id)
	if err != nil {
		return nil, err
	}
	if !who.operator() && p.AccountID != who.account.ID {
		return nil, tollgate.Errorf(tollgate.ENOTFOUND, "trust policy %s not found", id)
	}
	return p, nil
}

func (s *Server) getTrust(r *http.Request, who *actor) (int, any, error) {
	p, err := s.trustPolicy(r.Context(), who, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	toks, a, err := s.Service.ListTokens(r.Context(), p.AccountName, "")
	if err != nil {
		return 0, nil, err
	}
	out := FromTrustPolicy(p)
	now := s.now()
	for _, t := range toks {
		if t.Identity != nil && t.Identity.PolicyID == p.ID {
			out.Credentials = append(out.Credentials, fromToken(t, a, now))
		}
	}
	return http.StatusOK, out, nil
}

func (s *Server) replaceTrust(r *http.Request, who *actor) (int, any, error) {
	p, err := s.trustPolicy(r.Context(), who, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	var in TrustPolicy
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	next, err := in.toDomain()
	if err != nil {
		return 0, nil, err
	}
	out, err := s.Service.EditTrustPolicy(r.Context(), who.name, p.ID, next)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, FromTrustPolicy(out), nil
}

func (s *Server) deleteTrust(r *http.Request, who *actor) (int, any, error) {
	p, err := s.trustPolicy(r.Context(), who, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	if err := s.Service.DeleteTrustPolicy(r.Context(), who.name, p.ID); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct{}{}, nil
}

// ListTrustPolicies returns the account's trust policies.
func (c *Client) ListTrustPolicies(ctx context.Context, account string) (*TrustPolicyList, error) {
	var out TrustPolicyList
	return &out, c.do(ctx, "GET", accountPath(account, "trust-policies"), nil, nil, &out)
}

// CreateTrustPolicy adds a trust policy to the account.
func (c *Client) CreateTrustPolicy(ctx context.Context, account string, in TrustPolicy) (*TrustPolicy, error) {
	var out TrustPolicy
	return &out, c.do(ctx, "POST", accountPath(account, "trust-policies"), nil, in, &out)
}

// TrustPolicy returns one policy with the credentials it issued.
func (c *Client) TrustPolicy(ctx context.Context, id string) (*TrustPolicy, error) {
	var out TrustPolicy
	return &out, c.do(ctx, "GET", "trust-policies/"+url.PathEscape(id), nil, nil, &out)
}

// ReplaceTrustPolicy replaces every field of a policy; the credentials it
// issued are revoked.
func (c *Client) ReplaceTrustPolicy(ctx context.Context, id string, in TrustPolicy) (*TrustPolicy, error) {
	var out TrustPolicy
	return &out, c.do(ctx, "PUT", "trust-policies/"+url.PathEscape(id), nil, in, &out)
}

// DeleteTrustPolicy deletes a policy and revokes what it issued.
func (c *Client) DeleteTrustPolicy(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "trust-policies/"+url.PathEscape(id), nil, nil, nil)
}
