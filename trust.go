package tollgate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Keyless pulls (workload identity federation). An account trusts an OIDC
// issuer through a TrustPolicy: a token the issuer signed for the policy's
// audience, whose claims match the policy's rules, is exchanged for an
// ephemeral credential ("tge_…") that may do what the policy maps it to,
// for min(the OIDC token's remaining life, the policy's lifetime). The
// credential is a token row like any other (Decide judges it, the token
// cache carries it, revocation reaches every replica) with the workload
// Identity that obtained it; it never counts against MaxActiveTokens and
// is never sealed, so it cannot be revealed. Deleting or editing a policy
// revokes every credential it issued, in the same transaction.

// EphemeralPrefix starts an ephemeral credential's secret; it has the
// same shape and checksum as a registry token (see NewSecret).
const EphemeralPrefix = "tge_"

// ParseCredential parses a registry token or an ephemeral credential.
func ParseCredential(v string) (Secret, error) {
	if strings.HasPrefix(v, EphemeralPrefix) {
		return ParseSecret(EphemeralPrefix, v)
	}
	return ParseToken(v)
}

// Identity is the workload an ephemeral credential was issued to.
type Identity struct {
	PolicyID string
	Issuer   string
	Subject  string
	// Claims are the claims the policy's rules matched, as text.
	Claims map[string]string
}

// String is the identity as people read it: "subject (issuer)".
func (i *Identity) String() string {
	if i == nil {
		return ""
	}
	return i.Subject + " (" + i.Issuer + ")"
}

// Ephemeral reports whether t is an ephemeral credential.
func (t *Token) Ephemeral() bool { return t.Identity != nil }

// Trust policy bounds.
const (
	DefaultTrustLifetime = 15 * time.Minute
	MaxTrustLifetime     = 12 * time.Hour
	MinTrustLifetime     = time.Minute
	MaxClaimRules        = 20
	MaxStaticJWKS        = 64 << 10
)

// ClaimRule is one condition on a claim of the OIDC token: the claim's
// value (a string, or a number or boolean as JSON text) equals Value, or
// matches it as a glob when Glob is set ("*" any run of characters, "/"
// included; "?" one character).
type ClaimRule struct {
	Claim string
	Value string
	Glob  bool
}

// String is the rule as the CLI takes it: claim=value or claim~pattern.
func (r ClaimRule) String() string {
	if r.Glob {
		return r.Claim + "~" + r.Value
	}
	return r.Claim + "=" + r.Value
}

// ParseClaimRule parses "claim=value" (exact) or "claim~pattern" (glob).
func ParseClaimRule(field, v string) (ClaimRule, error) {
	i := strings.IndexAny(v, "=~")
	if i <= 0 {
		return ClaimRule{}, FieldError(field, "%q is not claim=value (exact) or claim~pattern (glob)", clipText(v, 60))
	}
	return ClaimRule{Claim: v[:i], Value: v[i+1:], Glob: v[i] == '~'}, nil
}

// Matches reports whether the claim value v satisfies the rule.
func (r ClaimRule) Matches(v string) bool {
	if !r.Glob {
		return v == r.Value
	}
	return globMatch(r.Value, v)
}

// globMatch: "*" matches any run of characters, "?" exactly one.
func globMatch(p, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && (p[px] == '?' || p[px] == s[sx]):
			px++
			sx++
		case px < len(p) && p[px] == '*':
			star, mark = px, sx
			px++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// TrustPolicy lets an account's workloads pull with their OIDC identity.
type TrustPolicy struct {
	ID          string // "tp_…"
	AccountID   string
	AccountName string // filled on reads
	Name        string
	// Issuer is the token's "iss"; its discovery document and JWKS are
	// fetched from it unless JWKS is set (a static key set, for issuers
	// tollgate cannot reach).
	Issuer string
	JWKS   string
	// Audience is the "aud" the token must carry; it also chooses the
	// account, so it is unique across accounts (default "tollgate:ACCOUNT").
	Audience string
	Rules    []ClaimRule // all must hold; at least one
	// What the credential may do: scope and the restrictions a token may
	// carry (images, packages, networks).
	Scope    Scope
	Restrict TokenPolicy
	Lifetime time.Duration
	// CreatedAt, UpdatedAt: set by the Service.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DefaultAudience is the audience a policy of account gets by default.
func DefaultAudience(account string) string { return "tollgate:" + account }

// Match returns the claims the policy's rules matched, or false if any
// rule does not hold. claims is the token's verified claim set.
func (p *TrustPolicy) Match(claims map[string]any) (map[string]string, bool) {
	out := make(map[string]string, len(p.Rules))
	for _, r := range p.Rules {
		v, ok := ClaimText(claimAt(claims, r.Claim))
		if !ok || !r.Matches(v) {
			return nil, false
		}
		out[r.Claim] = v
	}
	return out, len(p.Rules) > 0
}

// claimAt is the claim named name, or, when there is no such top-level
// claim, the one its "/"-separated path names inside nested objects:
// "kubernetes.io/namespace", "kubernetes.io/serviceaccount/name" in a
// Kubernetes service-account token.
func claimAt(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok || !strings.Contains(name, "/") {
		return v
	}
	var cur any = claims
	for _, part := range strings.Split(name, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// ClaimText is a claim's value as text: strings as they are, numbers and
// booleans as JSON; anything else (objects, lists, absent) does not match.
func ClaimText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool, float64, json.Number:
		return fmt.Sprint(x), true
	}
	return "", false
}

// Validate checks the policy; errors name the field.
func (p *TrustPolicy) Validate() error {
	if err := ValidateTokenName(p.Name); err != nil {
		return err
	}
	if err := ValidateIssuer(p.Issuer); err != nil {
		return err
	}
	if len(p.JWKS) > MaxStaticJWKS {
		return FieldError("jwks", "must be at most %d bytes", MaxStaticJWKS)
	}
	if p.JWKS != "" {
		var ks struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal([]byte(p.JWKS), &ks); err != nil || len(ks.Keys) == 0 {
			return FieldError("jwks", "must be a JSON Web Key Set ({\"keys\":[…]}) with at least one key")
		}
	}
	if p.Audience == "" || len(p.Audience) > 200 || !utf8.ValidString(p.Audience) {
		return FieldError("audience", "must be 1 to 200 characters")
	}
	if err := checkNoControl("audience", p.Audience); err != nil {
		return err
	}
	if len(p.Rules) == 0 {
		return FieldError("claims", "at least one claim rule is required (for example repository=acme/app): without one, every workload of the issuer would match")
	}
	if len(p.Rules) > MaxClaimRules {
		return FieldError("claims", "at most %d claim rules", MaxClaimRules)
	}
	for i, r := range p.Rules {
		f := indexField("claims", i)
		if r.Claim == "" || len(r.Claim) > 100 || checkNoControl(f, r.Claim) != nil {
			return FieldError(f, "claim name must be 1 to 100 printable characters")
		}
		if len(r.Value) > 500 || checkNoControl(f, r.Value) != nil {
			return FieldError(f, "value must be at most 500 printable characters")
		}
		if r.Glob && strings.Trim(r.Value, "*?") == "" {
			return FieldError(f, "pattern %q matches anything: name what must match", r.Value)
		}
	}
	if p.Scope == 0 || p.Scope&^(ScopeImages|ScopePackages) != 0 {
		return FieldError("scope", "must name at least one of images, packages")
	}
	r := p.Restrict
	if r.ValidFrom != nil || r.PausedAt != nil || r.Capped() {
		return FieldError("restrict", "only images, packages and networks restrictions apply to ephemeral credentials")
	}
	if err := r.Validate(); err != nil {
		return err
	}
	if p.Lifetime < MinTrustLifetime || p.Lifetime > MaxTrustLifetime {
		return FieldError("lifetime", "must be between %s and %s", MinTrustLifetime, MaxTrustLifetime)
	}
	return nil
}

// ValidateIssuer checks an issuer URL: absolute https (http only for a
// loopback host, which the edge accepts only when configured to), no
// user info, query or fragment.
func ValidateIssuer(v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || len(v) > 500 {
		return FieldError("issuer", "must be an https URL without credentials, query or fragment (for example https://token.actions.githubusercontent.com)")
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && IsLoopbackHost(u.Hostname())) {
		return FieldError("issuer", "must be an https URL (http only for a loopback issuer in development)")
	}
	return nil
}

// IsLoopbackHost reports whether host is localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	return strings.HasPrefix(host, "127.") || host == "::1"
}

// TrustTx is what the Service needs from a store for trust policies and
// their ephemeral credentials.
type TrustTx interface {
	// InsertTrustPolicy stores p. ENOTFOUND for an unknown account,
	// ECONFLICT if the id exists.
	InsertTrustPolicy(ctx context.Context, p *TrustPolicy) error
	// UpdateTrustPolicy writes every field but ID, AccountID, CreatedAt;
	// ENOTFOUND for an unknown id.
	UpdateTrustPolicy(ctx context.Context, p *TrustPolicy) error
	// DeleteTrustPolicy removes it; ENOTFOUND for an unknown id.
	DeleteTrustPolicy(ctx context.Context, id string) error
	// TrustPolicyByID: ENOTFOUND if there is none. Fills AccountName.
	TrustPolicyByID(ctx context.Context, id string) (*TrustPolicy, error)
	// ListTrustPolicies returns the account's policies, oldest first.
	ListTrustPolicies(ctx context.Context, accountID string) ([]*TrustPolicy, error)
	// TrustPoliciesByAudience returns every policy, of any account, whose
	// audience is aud, oldest first.
	TrustPoliciesByAudience(ctx context.Context, aud string) ([]*TrustPolicy, error)
	// RevokeIssuedTokens revokes (revoked_at = at) every ephemeral
	// credential the policy issued that is not revoked yet, and returns
	// their ids.
	RevokeIssuedTokens(ctx context.Context, policyID string, at time.Time) ([]string, error)
	// DeleteEndedEphemeral deletes ephemeral credentials that expired or
	// were revoked before before, and says how many.
	DeleteEndedEphemeral(ctx context.Context, before time.Time) (int, error)
}

// Audit actions of trust policies and exchanges.
const (
	ActionTrustCreated   = "trust.created"
	ActionTrustEdited    = "trust.edited"
	ActionTrustDeleted   = "trust.deleted"
	ActionTokenExchanged = "token.exchanged"
)

// normalizeTrust fills defaults and tidies lists before validation.
func normalizeTrust(p *TrustPolicy, account string) {
	if p.Audience == "" {
		p.Audience = DefaultAudience(account)
	}
	if p.Scope == 0 {
		p.Scope = ScopeImages
	}
	if p.Lifetime == 0 {
		p.Lifetime = DefaultTrustLifetime
	}
	p.Lifetime = p.Lifetime.Truncate(time.Second)
	p.Restrict = normalizePolicy(p.Restrict)
}

// trustChanges says what differs between two versions of a policy, for
// the audit log (a static JWKS is summarized, never copied).
func trustChanges(from, to *TrustPolicy) map[string]Change {
	c := map[string]Change{}
	set := func(k, a, b string) {
		if a != b {
			c[k] = Change{From: a, To: b}
		}
	}
	rules := func(rs []ClaimRule) string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = r.String()
		}
		return strings.Join(out, ",")
	}
	jwks := func(v string) string {
		if v == "" {
			return ""
		}
		return fmt.Sprintf("static (%d bytes)", len(v))
	}
	set("name", from.Name, to.Name)
	set("issuer", from.Issuer, to.Issuer)
	set("jwks", jwks(from.JWKS), jwks(to.JWKS))
	set("audience", from.Audience, to.Audience)
	set("claims", rules(from.Rules), rules(to.Rules))
	set("scope", from.Scope.String(), to.Scope.String())
	set("lifetime", durText(from.Lifetime), durText(to.Lifetime))
	policyChanges(from.Restrict, to.Restrict, c)
	return c
}

func durText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// CreateTrustPolicy adds a trust policy to the account.
//
// Errors: EINVALID naming the field; ENOTFOUND for the account; ECONFLICT
// if another account uses the audience.
func (s *Service) CreateTrustPolicy(ctx context.Context, actor, account string, p TrustPolicy) (*TrustPolicy, error) {
	normalizeTrust(&p, account)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := s.now()
	p.ID, p.CreatedAt, p.UpdatedAt = NewID("tp_"), now, now
	err := s.Store.Update(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, account, true)
		if err != nil {
			return accountNotFound(err, account)
		}
		if err := checkTrust(ctx, tx, a, &p); err != nil {
			return err
		}
		p.AccountID, p.AccountName = a.ID, a.Name
		if err := tx.InsertTrustPolicy(ctx, &p); err != nil {
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: actor, Action: ActionTrustCreated, Target: p.ID,
			Changes: trustChanges(&TrustPolicy{}, &p)})
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// checkTrust applies the account's rules to a policy about to be written:
// the scope needs package access for packages, and the audience must
// not choose another account.
func checkTrust(ctx context.Context, tx Tx, a *Account, p *TrustPolicy) error {
	if err := checkScope(a, p.Scope); err != nil {
		return err
	}
	others, err := tx.TrustPoliciesByAudience(ctx, p.Audience)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.AccountID != a.ID {
			return &Error{Code: ECONFLICT, Field: "audience", Message: fmt.Sprintf("audience %q belongs to another account; choose another", p.Audience)}
		}
	}
	return nil
}

// TrustPolicy returns a policy by id (ENOTFOUND).
func (s *Service) TrustPolicy(ctx context.Context, id string) (*TrustPolicy, error) {
	var p *TrustPolicy
	err := s.Store.View(ctx, func(tx Tx) (err error) {
		p, err = tx.TrustPolicyByID(ctx, id)
		return trustNotFound(err, id)
	})
	return p, err
}

func trustNotFound(err error, id string) error {
	if ErrorCode(err) == ENOTFOUND {
		return Errorf(ENOTFOUND, "trust policy %s not found", id)
	}
	return err
}

// ListTrustPolicies returns the account's policies, oldest first.
func (s *Service) ListTrustPolicies(ctx context.Context, account string) ([]*TrustPolicy, error) {
	var ps []*TrustPolicy
	err := s.Store.View(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, account, false)
		if err != nil {
			return accountNotFound(err, account)
		}
		ps, err = tx.ListTrustPolicies(ctx, a.ID)
		return err
	})
	return ps, err
}

// TrustPoliciesForAudience returns the policies an OIDC token with this
// audience may be judged by (the exchange's first step).
func (s *Service) TrustPoliciesForAudience(ctx context.Context, aud string) ([]*TrustPolicy, error) {
	var ps []*TrustPolicy
	err := s.Store.View(ctx, func(tx Tx) (err error) {
		ps, err = tx.TrustPoliciesByAudience(ctx, aud)
		return err
	})
	return ps, err
}

// EditTrustPolicy replaces a policy's fields with next's (ID, account and
// creation time stay). Every credential the policy issued is revoked on
// every replica in the same write: they were granted under the old rules.
func (s *Service) EditTrustPolicy(ctx context.Context, actor, id string, next TrustPolicy) (*TrustPolicy, error) {
	var out *TrustPolicy
	err := s.changeTrust(ctx, actor, id, ActionTrustEdited, func(tx Tx, a *Account, p *TrustPolicy, now time.Time) (map[string]Change, error) {
		n := next
		normalizeTrust(&n, a.Name)
		if err := n.Validate(); err != nil {
			return nil, err
		}
		if err := checkTrust(ctx, tx, a, &n); err != nil {
			return nil, err
		}
		n.ID, n.AccountID, n.AccountName, n.CreatedAt, n.UpdatedAt = p.ID, p.AccountID, p.AccountName, p.CreatedAt, now
		c := trustChanges(p, &n)
		out = &n
		if len(c) == 0 {
			return nil, nil
		}
		return c, tx.UpdateTrustPolicy(ctx, &n)
	})
	return out, err
}

// DeleteTrustPolicy removes a policy and revokes every credential it
// issued, on every replica, as fast as a revocation.
func (s *Service) DeleteTrustPolicy(ctx context.Context, actor, id string) error {
	return s.changeTrust(ctx, actor, id, ActionTrustDeleted, func(tx Tx, _ *Account, p *TrustPolicy, _ time.Time) (map[string]Change, error) {
		return map[string]Change{"name": {From: p.Name}, "issuer": {From: p.Issuer}}, tx.DeleteTrustPolicy(ctx, p.ID)
	})
}

// changeTrust locks the policy's account, lets fn change the policy and,
// if it changed anything, revokes what the policy issued, audits the
// change and logs the revocations for every replica's cache.
func (s *Service) changeTrust(ctx context.Context, actor, id, action string,
	fn func(tx Tx, a *Account, p *TrustPolicy, now time.Time) (map[string]Change, error)) error {
	var inv *Invalidation
	err := s.Store.Update(ctx, func(tx Tx) error {
		inv = nil
		p, err := tx.TrustPolicyByID(ctx, id)
		if err != nil {
			return trustNotFound(err, id)
		}
		a, err := tx.AccountByID(ctx, p.AccountID, true)
		if err != nil {
			return err
		}
		now := s.now()
		c, err := fn(tx, a, p, now)
		if err != nil || len(c) == 0 {
			return err
		}
		ids, err := tx.RevokeIssuedTokens(ctx, p.ID, now)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			c["credentials_revoked"] = Change{To: fmt.Sprint(len(ids))}
		}
		if err := insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: actor, Action: action, Target: p.ID, Changes: c}); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		inv, err = logChange(ctx, tx, now, a.ID, ids...)
		return err
	})
	if err != nil {
		return err
	}
	s.changed(ctx, inv)
	return nil
}

// Exchange is a verified OIDC token the edge asks to exchange: the
// policy whose rules it matched, who it is, and when it expires.
type Exchange struct {
	PolicyID  string
	Issuer    string
	Subject   string
	Claims    map[string]string // the claims the rules matched
	ExpiresAt time.Time         // the OIDC token's own expiry
	Client    string            // the client address, for the audit log
}

// IssueEphemeral mints the ephemeral credential of an exchange: a token of
// the policy's account with the policy's scope and restrictions, expiring
// at min(the OIDC token's expiry, now + the policy's lifetime). The
// policy is read again in the write, so a policy deleted meanwhile
// issues nothing. Audited with issuer, subject and matched claims.
//
// Errors: ENOTFOUND if the policy is gone; EFORBIDDEN for a suspended
// account; EINVALID if the OIDC token has already expired.
func (s *Service) IssueEphemeral(ctx context.Context, x Exchange) (*Token, Secret, error) {
	now := s.now()
	var tok *Token
	secret := NewSecret(EphemeralPrefix)
	err := s.Store.Update(ctx, func(tx Tx) error {
		p, err := tx.TrustPolicyByID(ctx, x.PolicyID)
		if err != nil {
			return trustNotFound(err, x.PolicyID)
		}
		a, err := tx.AccountByID(ctx, p.AccountID, false)
		if err != nil {
			return err
		}
		if a.Status == AccountSuspended {
			return Errorf(EFORBIDDEN, "account %s is suspended", a.Name)
		}
		exp := now.Add(p.Lifetime)
		if x.ExpiresAt.Before(exp) {
			exp = x.ExpiresAt.UTC().Truncate(time.Microsecond)
		}
		if !exp.After(now) {
			return FieldError("subject_token", "has expired")
		}
		tok = &Token{
			ID: NewID("tok_"), AccountID: a.ID, AccountName: a.Name,
			Name:        clipRunes("oidc: "+EscapeText(x.Subject), 100),
			Description: clipRunes("ephemeral, from "+EscapeText(x.Issuer)+" via trust policy "+p.Name, 500),
			Scope:       p.Scope, ExpiresAt: &exp, CreatedAt: now, UpdatedAt: now,
			Policy:   TokenPolicy{Images: p.Restrict.Images, Packages: p.Restrict.Packages, Networks: p.Restrict.Networks},
			Identity: &Identity{PolicyID: p.ID, Issuer: x.Issuer, Subject: x.Subject, Claims: x.Claims},
		}
		if err := tx.InsertToken(ctx, tok, s.Keys.Hash(secret), nil); err != nil {
			return err
		}
		c := map[string]Change{
			"issuer": {To: x.Issuer}, "subject": {To: x.Subject}, "trust_policy": {To: p.ID},
			"scope": {To: tok.Scope.String()}, "expires_at": {To: formatExpiry(tok.ExpiresAt)},
		}
		if x.Client != "" {
			c["client"] = Change{To: x.Client}
		}
		keys := make([]string, 0, len(x.Claims))
		for k := range x.Claims {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			c["claim."+k] = Change{To: x.Claims[k]}
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: "oidc:" + clipRunes(EscapeText(x.Subject), 200), Action: ActionTokenExchanged, Target: tok.ID, Changes: c})
	})
	if err != nil {
		return nil, "", err
	}
	return tok, secret, nil
}

// SweepEphemeral deletes ephemeral credentials that ended (expired or
// revoked) more than keep ago. Any caller may run it (the delete is
// idempotent); the server runs it on one replica per interval
// (ClaimJob with JobSweepEphemeral).
func (s *Service) SweepEphemeral(ctx context.Context, keep time.Duration) (int, error) {
	n := 0
	err := s.Store.Update(ctx, func(tx Tx) (err error) {
		n, err = tx.DeleteEndedEphemeral(ctx, s.now().Add(-keep))
		return err
	})
	return n, err
}

func clipRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// errEphemeral refuses what only a registry token can do.
func errEphemeral(id, what string) error {
	return Errorf(ECONFLICT, "token %s is an ephemeral credential: it cannot be %s (revoke it, or edit its trust policy)", id, what)
}
