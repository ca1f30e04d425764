package tollgate

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Service enforces the lifecycle rules of accounts and tokens on top of a
// Store. The management API, the CLI (through the API), the console and
// `tollgate dev` all go through it; nothing else writes to the store.
type Service struct {
	Store Store
	Keys  *Keys
	// Now is the clock; tests set it. Times are stored at microsecond
	// precision in UTC.
	Now func() time.Time
	// Changed, if set, is called after every committed write with what
	// changed, so that caches can drop it at once (see tokencache). It
	// only speeds things up: the same Invalidation was appended to the
	// store's invalidation log in the write's transaction, and caches
	// catch up on the log whatever happens to this call.
	Changed func(ctx context.Context, inv Invalidation)
	// ExpiryPage is how many tokens one transaction of SweepExpiry reads
	// (0: 500); it pages through all of them.
	ExpiryPage int
}

// Invalidation names what a committed write changed: an entry of the
// store's invalidation log (Tx.AppendInvalidation).
type Invalidation struct {
	// Seq is the entry's position in the log, set by AppendInvalidation;
	// 0 for an invalidation that was not logged.
	Seq       int64
	At        time.Time
	AccountID string
	TokenIDs  []string // empty: the account itself (status, subscription, access)
}

// Actors recorded in the audit log for writes that no person made.
const ActorSystem = "system"

// NewService returns a Service with the wall clock.
func NewService(store Store, keys *Keys) *Service {
	return &Service{Store: store, Keys: keys, Now: time.Now}
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// logChange appends what a write changed to the invalidation log, inside
// the write's transaction, as its last statement (the PostgreSQL store
// serializes appends until commit).
func logChange(ctx context.Context, tx Tx, now time.Time, accountID string, tokenIDs ...string) (*Invalidation, error) {
	inv := &Invalidation{At: now, AccountID: accountID, TokenIDs: tokenIDs}
	if err := tx.AppendInvalidation(ctx, inv); err != nil {
		return nil, err
	}
	return inv, nil
}

// changed tells Changed, after the commit, what a write logged; nil (the
// write changed nothing) tells nothing.
func (s *Service) changed(ctx context.Context, inv *Invalidation) {
	if s.Changed != nil && inv != nil {
		s.Changed(ctx, *inv)
	}
}

type beforeCommitKey struct{}

// BeforeCommit returns ctx with fn attached. The token writes of Service
// (CreateAccount, CreateToken, EditToken, ExtendToken, RevokeToken) call
// fn inside their transaction, last, with the token and its account as
// they are about to be committed; an error from fn rolls the whole write
// back and is what the write returns. The API renders its answer there,
// so that a write whose answer cannot be made leaves nothing behind.
func BeforeCommit(ctx context.Context, fn func(t *Token, a *Account) error) context.Context {
	return context.WithValue(ctx, beforeCommitKey{}, fn)
}

func beforeCommit(ctx context.Context, t *Token, a *Account) error {
	if fn, ok := ctx.Value(beforeCommitKey{}).(func(*Token, *Account) error); ok && fn != nil {
		return fn(t, a)
	}
	return nil
}

// DefaultTokenName is the name of the token sign-up creates.
const DefaultTokenName = "default"

// CreateAccount signs up a new account and creates its default token
// (scope images, no expiry). The secret of that token is returned once.
func (s *Service) CreateAccount(ctx context.Context, actor, name string) (*Account, *Token, Secret, error) {
	if err := ValidateAccountName(name); err != nil {
		return nil, nil, "", err
	}
	now := s.now()
	acct := &Account{
		ID:            NewID("acc_"),
		Name:          name,
		Status:        AccountActive,
		PackageAccess: PackageAccessNone,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	tok, secret := s.newToken(acct, DefaultTokenName, "", ScopeImages, nil, now)
	err := s.Store.Update(ctx, func(tx Tx) error {
		if err := tx.InsertAccount(ctx, acct); err != nil {
			if ErrorCode(err) == ECONFLICT {
				return &Error{Code: ECONFLICT, Field: "name", Message: fmt.Sprintf("account %s already exists", name)}
			}
			return err
		}
		if err := s.insertToken(ctx, tx, tok, secret); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx,
			&AuditEvent{AccountID: acct.ID, Time: now, Actor: actor, Action: ActionAccountCreated, Target: acct.Name,
				Changes: map[string]Change{"name": {To: acct.Name}, "status": {To: string(acct.Status)}}},
			tokenCreatedEvent(tok, actor)); err != nil {
			return err
		}
		return beforeCommit(ctx, tok, acct)
	})
	if err != nil {
		return nil, nil, "", err
	}
	return acct, tok, secret, nil
}

// Account returns the account with the given name (ENOTFOUND).
func (s *Service) Account(ctx context.Context, name string) (*Account, error) {
	var a *Account
	err := s.Store.View(ctx, func(tx Tx) (err error) {
		a, err = tx.AccountByName(ctx, name, false)
		return err
	})
	return a, accountNotFound(err, name)
}

// AccountByID returns the account with the given id (ENOTFOUND).
func (s *Service) AccountByID(ctx context.Context, id string) (*Account, error) {
	var a *Account
	err := s.Store.View(ctx, func(tx Tx) (err error) {
		a, err = tx.AccountByID(ctx, id, false)
		return err
	})
	return a, err
}

// ListAccounts returns every account, ordered by name.
func (s *Service) ListAccounts(ctx context.Context) ([]*Account, error) {
	var as []*Account
	err := s.Store.View(ctx, func(tx Tx) (err error) {
		as, err = tx.ListAccounts(ctx)
		return err
	})
	return as, err
}

func accountNotFound(err error, name string) error {
	if ErrorCode(err) == ENOTFOUND {
		return Errorf(ENOTFOUND, "account %s not found", name)
	}
	return err
}

// updateAccount locks the account by name, lets fn change it and say what
// it changed, writes it back with one audit event if anything changed.
func (s *Service) updateAccount(ctx context.Context, actor, name, action string,
	fn func(tx Tx, a *Account, now time.Time) (map[string]Change, []string, error)) (*Account, error) {
	var out *Account
	var inv *Invalidation
	err := s.Store.Update(ctx, func(tx Tx) error {
		inv = nil // fn may run again if the store retries
		a, err := tx.AccountByName(ctx, name, true)
		if err != nil {
			return accountNotFound(err, name)
		}
		now := s.now()
		changes, tokenIDs, err := fn(tx, a, now)
		if err != nil {
			return err
		}
		out = a
		if len(changes) == 0 {
			return nil
		}
		a.UpdatedAt = now
		if err := tx.UpdateAccount(ctx, a); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: actor, Action: action, Target: a.Name, Changes: changes}); err != nil {
			return err
		}
		if typ, ok := packageEventOf[action]; ok {
			if _, err := s.emitPayload(ctx, tx, a, nil, Payload{Type: typ, PackageAccess: string(a.PackageAccess)}, now, ""); err != nil {
				return err
			}
		}
		inv, err = logChange(ctx, tx, now, a.ID, tokenIDs...)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, inv)
	return out, nil
}

// SuspendAccount stops every token of the account until ResumeAccount.
func (s *Service) SuspendAccount(ctx context.Context, actor, name string) (*Account, error) {
	return s.setStatus(ctx, actor, name, AccountSuspended, ActionAccountSuspended)
}

// ResumeAccount makes a suspended account's tokens work again.
func (s *Service) ResumeAccount(ctx context.Context, actor, name string) (*Account, error) {
	return s.setStatus(ctx, actor, name, AccountActive, ActionAccountResumed)
}

func (s *Service) setStatus(ctx context.Context, actor, name string, st AccountStatus, action string) (*Account, error) {
	return s.updateAccount(ctx, actor, name, action, func(_ Tx, a *Account, _ time.Time) (map[string]Change, []string, error) {
		if a.Status == st {
			return nil, nil, nil
		}
		c := map[string]Change{"status": {From: string(a.Status), To: string(st)}}
		a.Status = st
		return c, nil, nil
	})
}

// RequestPackages records the account's request for package access.
func (s *Service) RequestPackages(ctx context.Context, actor, name string) (*Account, error) {
	return s.updateAccount(ctx, actor, name, ActionPackagesRequested, func(_ Tx, a *Account, _ time.Time) (map[string]Change, []string, error) {
		switch a.PackageAccess {
		case PackageAccessGranted:
			return nil, nil, Errorf(ECONFLICT, "account %s already has package access", a.Name)
		case PackageAccessRequested:
			return nil, nil, nil
		}
		c := map[string]Change{"package_access": {From: string(a.PackageAccess), To: string(PackageAccessRequested)}}
		a.PackageAccess = PackageAccessRequested
		return c, nil, nil
	})
}

// GrantPackages grants package access. The account's default token, if it
// is not revoked, gains the packages scope (sign-up's promise: images,
// plus packages once granted).
func (s *Service) GrantPackages(ctx context.Context, actor, name string) (*Account, error) {
	return s.updateAccount(ctx, actor, name, ActionPackagesGranted, func(tx Tx, a *Account, now time.Time) (map[string]Change, []string, error) {
		if a.PackageAccess == PackageAccessGranted {
			return nil, nil, nil
		}
		c := map[string]Change{"package_access": {From: string(a.PackageAccess), To: string(PackageAccessGranted)}}
		a.PackageAccess = PackageAccessGranted
		toks, err := tx.ListTokens(ctx, a.ID)
		if err != nil {
			return nil, nil, err
		}
		var ids []string
		for _, t := range toks {
			if t.Name != DefaultTokenName || t.RevokedAt != nil || t.Scope.Has(ScopePackages) {
				continue
			}
			old := t.Scope
			t.Scope |= ScopePackages
			t.UpdatedAt = now
			if err := tx.UpdateToken(ctx, t); err != nil {
				return nil, nil, err
			}
			ids = append(ids, t.ID)
			if err := insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: ActorSystem, Action: ActionTokenEdited, Target: t.ID,
				Changes: map[string]Change{"scope": {From: old.String(), To: t.Scope.String()}}}); err != nil {
				return nil, nil, err
			}
		}
		return c, ids, nil
	})
}

// DenyPackages denies (or withdraws) package access. Tokens keep their
// packages scope on record but it stops working (see authz).
func (s *Service) DenyPackages(ctx context.Context, actor, name string) (*Account, error) {
	return s.updateAccount(ctx, actor, name, ActionPackagesDenied, func(_ Tx, a *Account, _ time.Time) (map[string]Change, []string, error) {
		if a.PackageAccess == PackageAccessDenied {
			return nil, nil, nil
		}
		c := map[string]Change{"package_access": {From: string(a.PackageAccess), To: string(PackageAccessDenied)}}
		a.PackageAccess = PackageAccessDenied
		return c, nil, nil
	})
}

// SetSubscription replaces the account's entitlements.
func (s *Service) SetSubscription(ctx context.Context, actor, name string, sub Subscription) (*Account, error) {
	if err := sub.Validate(); err != nil {
		return nil, err
	}
	sub.Images = dedupe(sub.Images)
	sub.Packages = dedupe(sub.Packages)
	return s.updateAccount(ctx, actor, name, ActionSubscriptionChange, func(_ Tx, a *Account, _ time.Time) (map[string]Change, []string, error) {
		c := map[string]Change{}
		if !slices.Equal(a.Subscription.Images, sub.Images) {
			c["images"] = Change{From: strings.Join(a.Subscription.Images, ","), To: strings.Join(sub.Images, ",")}
		}
		if !slices.Equal(a.Subscription.Packages, sub.Packages) {
			c["packages"] = Change{From: strings.Join(a.Subscription.Packages, ","), To: strings.Join(sub.Packages, ",")}
		}
		a.Subscription = sub
		return c, nil, nil
	})
}

func dedupe(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	out := make([]string, 0, len(v))
	for _, x := range v {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// CreateAccountKey issues (or replaces) the account's management API key.
// The key is returned once; the store keeps only its hash.
func (s *Service) CreateAccountKey(ctx context.Context, actor, name string) (Secret, error) {
	key := NewSecret(AccountKeyPrefix)
	_, err := s.updateAccount(ctx, actor, name, ActionAccountKeyCreated, func(tx Tx, a *Account, _ time.Time) (map[string]Change, []string, error) {
		if err := tx.SetAccountKey(ctx, a.ID, s.Keys.Hash(key)); err != nil {
			return nil, nil, err
		}
		return map[string]Change{"api_key": {To: "issued"}}, nil, nil
	})
	if err != nil {
		return "", err
	}
	return key, nil
}

// AccountForKey returns the account whose API key is v (EUNAUTHORIZED).
func (s *Service) AccountForKey(ctx context.Context, v string) (*Account, error) {
	key, err := ParseSecret(AccountKeyPrefix, v)
	if err != nil {
		return nil, err
	}
	var a *Account
	err = s.Store.View(ctx, func(tx Tx) (err error) {
		a, err = tx.AccountByKeyHash(ctx, s.Keys.Hash(key))
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(EUNAUTHORIZED, "invalid credentials")
	}
	return a, err
}

// TokenCreate is the input of CreateToken.
type TokenCreate struct {
	Account     string // account name
	Name        string
	Description string
	Scope       Scope  // 0 means images
	Expiry      Expiry // zero value means never
	// Policy narrows the token (PausedAt is ignored: a new token is not
	// paused).
	Policy TokenPolicy
}

// CreateToken creates a token and returns its secret, the only time the
// secret leaves the service except RevealToken.
//
// Errors: EINVALID naming the field; ENOTFOUND for the account; ELIMIT if
// the account already holds MaxActiveTokens tokens that are not revoked.
func (s *Service) CreateToken(ctx context.Context, actor string, in TokenCreate) (*Token, Secret, error) {
	if err := ValidateTokenName(in.Name); err != nil {
		return nil, "", err
	}
	if err := ValidateTokenDescription(in.Description); err != nil {
		return nil, "", err
	}
	if in.Scope == 0 {
		in.Scope = ScopeImages
	}
	if in.Scope&^(ScopeImages|ScopePackages) != 0 {
		return nil, "", FieldError("scope", "unknown scope")
	}
	in.Policy.PausedAt = nil
	if err := in.Policy.Validate(); err != nil {
		return nil, "", err
	}
	in.Policy = normalizePolicy(in.Policy)
	now := s.now()
	var expires *time.Time
	switch {
	case in.Expiry.Now:
		return nil, "", FieldError("expires", "must be in the future")
	case in.Expiry.Never, in.Expiry.At.IsZero():
	default:
		at := in.Expiry.At.UTC().Truncate(time.Microsecond)
		if !at.After(now) {
			return nil, "", FieldError("expires", "must be in the future")
		}
		if at.After(MaxExpiry) {
			return nil, "", errExpiryBound()
		}
		expires = &at
	}
	var tok *Token
	var secret Secret
	err := s.Store.Update(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, in.Account, true)
		if err != nil {
			return accountNotFound(err, in.Account)
		}
		if err := checkSuspended(actor, a); err != nil {
			return err
		}
		if err := checkScope(a, in.Scope); err != nil {
			return err
		}
		n, err := tx.CountActiveTokens(ctx, a.ID)
		if err != nil {
			return err
		}
		if n >= MaxActiveTokens {
			return Errorf(ELIMIT, "account %s already holds %d active tokens", a.Name, MaxActiveTokens)
		}
		tok, secret = s.newToken(a, in.Name, in.Description, in.Scope, expires, now)
		tok.Policy = in.Policy
		if err := checkValidFrom(tok); err != nil {
			return err
		}
		if err := checkAccountPolicy(actor, a, tok, now); err != nil {
			return err
		}
		if err := s.insertToken(ctx, tx, tok, secret); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, tokenCreatedEvent(tok, actor)); err != nil {
			return err
		}
		if err := s.emitAction(ctx, tx, a, tok, ActionTokenCreated, now); err != nil {
			return err
		}
		return beforeCommit(ctx, tok, a)
	})
	if err != nil {
		return nil, "", err
	}
	return tok, secret, nil
}

// checkSuspended refuses a customer (IsCustomerActor) of a suspended
// account what would give a working secret: creating, revealing or
// extending a token. Reading, editing other fields and revoking stay
// allowed; the operator acts as always.
func checkSuspended(actor string, a *Account) error {
	if a.Status == AccountSuspended && IsCustomerActor(actor) {
		return Errorf(EFORBIDDEN, "account %s is suspended: tokens cannot be created, revealed or extended", a.Name)
	}
	return nil
}

// extends reports whether an expiry moving from old to next gives the
// token more time: later, or no expiry where there was one.
func extends(old, next *time.Time) bool {
	if old == nil {
		return false
	}
	return next == nil || next.After(*old)
}

func checkScope(a *Account, sc Scope) error {
	if sc.Has(ScopePackages) && a.PackageAccess != PackageAccessGranted {
		return FieldError("scope", "the packages scope needs package access granted to account %s (package access is %s)", a.Name, a.PackageAccess)
	}
	return nil
}

func (s *Service) newToken(a *Account, name, desc string, sc Scope, expires *time.Time, now time.Time) (*Token, Secret) {
	return &Token{
		ID:          NewID("tok_"),
		AccountID:   a.ID,
		AccountName: a.Name,
		Name:        name,
		Description: desc,
		Scope:       sc,
		ExpiresAt:   expires,
		CreatedAt:   now,
		UpdatedAt:   now,
	}, NewSecret(TokenPrefix)
}

func (s *Service) insertToken(ctx context.Context, tx Tx, t *Token, secret Secret) error {
	return tx.InsertToken(ctx, t, s.Keys.Hash(secret), s.Keys.Seal(secret, t.ID))
}

func tokenCreatedEvent(t *Token, actor string) *AuditEvent {
	c := map[string]Change{
		"name":        {To: t.Name},
		"description": {To: t.Description},
		"scope":       {To: t.Scope.String()},
		"expires_at":  {To: formatExpiry(t.ExpiresAt)},
	}
	policyChanges(TokenPolicy{}, t.Policy, c)
	return &AuditEvent{AccountID: t.AccountID, Time: t.CreatedAt, Actor: actor, Action: ActionTokenCreated, Target: t.ID, Changes: c}
}

// normalizePolicy drops duplicate patterns and truncates times as the
// stores keep them.
func normalizePolicy(p TokenPolicy) TokenPolicy {
	p.Images, p.Packages = dedupe(p.Images), dedupe(p.Packages)
	if p.ValidFrom != nil {
		v := p.ValidFrom.UTC().Truncate(time.Microsecond)
		p.ValidFrom = &v
	}
	return p
}

// checkValidFrom refuses a valid-from date at or after the expiry: such
// a token could never be used.
func checkValidFrom(t *Token) error {
	if t.Policy.ValidFrom != nil && t.ExpiresAt != nil && !t.Policy.ValidFrom.Before(*t.ExpiresAt) {
		return FieldError("valid_from", "must be before the token's expiry (%s)", t.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// policyChanges records in c what differs between two policies, for the
// audit log.
func policyChanges(from, to TokenPolicy, c map[string]Change) {
	list := func(key string, a, b []string) {
		if !slices.Equal(a, b) {
			c[key] = Change{From: strings.Join(a, ","), To: strings.Join(b, ",")}
		}
	}
	list("restrict_images", from.Images, to.Images)
	list("restrict_packages", from.Packages, to.Packages)
	list("networks", FormatNetworks(from.Networks), FormatNetworks(to.Networks))
	if !sameTime(from.ValidFrom, to.ValidFrom) {
		c["valid_from"] = Change{From: formatTimeOrNone(from.ValidFrom), To: formatTimeOrNone(to.ValidFrom)}
	}
	for key, v := range map[string][2]int64{"max_pulls": {from.MaxPulls, to.MaxPulls}, "max_bytes": {from.MaxBytes, to.MaxBytes}} {
		if v[0] != v[1] {
			c[key] = Change{From: strconv.FormatInt(v[0], 10), To: strconv.FormatInt(v[1], 10)}
		}
	}
}

func formatTimeOrNone(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

func formatExpiry(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func insertAudit(ctx context.Context, tx Tx, events ...*AuditEvent) error {
	for _, e := range events {
		if err := tx.InsertAudit(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// Token returns a token and its account (ENOTFOUND).
func (s *Service) Token(ctx context.Context, id string) (*Token, *Account, error) {
	var t *Token
	var a *Account
	err := s.Store.View(ctx, func(tx Tx) (err error) {
		if t, err = tx.TokenByID(ctx, id); err != nil {
			return tokenNotFound(err, id)
		}
		a, err = tx.AccountByID(ctx, t.AccountID, false)
		return err
	})
	return t, a, err
}

func tokenNotFound(err error, id string) error {
	if ErrorCode(err) == ENOTFOUND {
		return Errorf(ENOTFOUND, "token %s not found", id)
	}
	return err
}

// ListTokens returns the account's tokens, oldest first, optionally only
// those with the given status.
func (s *Service) ListTokens(ctx context.Context, accountName string, status TokenStatus) ([]*Token, *Account, error) {
	switch status {
	case "", TokenActive, TokenExpired, TokenRevoked, TokenSuspended, TokenPaused, TokenScheduled:
	default:
		return nil, nil, FieldError("status", "must be one of active, expired, revoked, suspended")
	}
	var toks []*Token
	var a *Account
	err := s.Store.View(ctx, func(tx Tx) (err error) {
		if a, err = tx.AccountByName(ctx, accountName, false); err != nil {
			return accountNotFound(err, accountName)
		}
		toks, err = tx.ListTokens(ctx, a.ID)
		return err
	})
	if err != nil || status == "" {
		return toks, a, err
	}
	now := s.now()
	out := toks[:0]
	for _, t := range toks {
		if t.Status(a, now) == status {
			out = append(out, t)
		}
	}
	return out, a, nil
}

// RevealToken opens the sealed secret of a token that is not revoked, for
// its owner. The reveal is audited.
func (s *Service) RevealToken(ctx context.Context, actor, id string) (Secret, error) {
	var secret Secret
	err := s.Store.Update(ctx, func(tx Tx) error {
		t, err := tx.TokenByID(ctx, id)
		if err != nil {
			return tokenNotFound(err, id)
		}
		if t.RevokedAt != nil {
			return Errorf(ECONFLICT, "token %s is revoked; its secret is gone for good", id)
		}
		if t.Ephemeral() {
			return errEphemeral(id, "revealed")
		}
		a, err := tx.AccountByID(ctx, t.AccountID, false)
		if err != nil {
			return err
		}
		if err := checkSuspended(actor, a); err != nil {
			return err
		}
		sealed, err := tx.SealedSecret(ctx, id)
		if err != nil {
			return err
		}
		if secret, err = s.Keys.Open(sealed, id); err != nil {
			return Internal(fmt.Errorf("token %s: %w", id, err))
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: t.AccountID, Time: s.now(), Actor: actor, Action: ActionTokenRevealed, Target: id})
	})
	return secret, err
}

// TokenEdit is the input of EditToken; nil fields stay as they are.
type TokenEdit struct {
	Name        *string
	Description *string
	Scope       *Scope
	Expiry      *Expiry // Now expires the token at once; a past time is refused
	// The policy's parts; nil leaves a part as it is, an empty list
	// removes a restriction, a zero ValidFrom removes the date.
	RestrictImages   *[]string
	RestrictPackages *[]string
	Networks         *[]netip.Prefix
	ValidFrom        *time.Time
	MaxPulls         *int64 // 0 removes the cap
	MaxBytes         *int64
}

// EditToken changes any field of a token that is not revoked. A new
// expiry in the future reactivates an expired token.
func (s *Service) EditToken(ctx context.Context, actor, id string, in TokenEdit) (*Token, error) {
	if in.Name != nil {
		if err := ValidateTokenName(*in.Name); err != nil {
			return nil, err
		}
	}
	if in.Description != nil {
		if err := ValidateTokenDescription(*in.Description); err != nil {
			return nil, err
		}
	}
	if in.Scope != nil && (*in.Scope == 0 || *in.Scope&^(ScopeImages|ScopePackages) != 0) {
		return nil, FieldError("scope", "must name at least one of images, packages")
	}
	action := ActionTokenEdited
	if in.Name == nil && in.Description == nil && in.Scope == nil && in.Expiry != nil &&
		in.RestrictImages == nil && in.RestrictPackages == nil && in.Networks == nil && in.ValidFrom == nil &&
		in.MaxPulls == nil && in.MaxBytes == nil {
		action = ActionTokenExtended
	}
	return s.editToken(ctx, actor, id, action, func(a *Account, t *Token, now time.Time, c map[string]Change) error {
		if in.Name != nil && *in.Name != t.Name {
			c["name"] = Change{From: t.Name, To: *in.Name}
			t.Name = *in.Name
		}
		if in.Description != nil && *in.Description != t.Description {
			c["description"] = Change{From: t.Description, To: *in.Description}
			t.Description = *in.Description
		}
		if in.Scope != nil && *in.Scope != t.Scope {
			if err := checkScope(a, *in.Scope); err != nil {
				return err
			}
			c["scope"] = Change{From: t.Scope.String(), To: in.Scope.String()}
			t.Scope = *in.Scope
		}
		if in.Expiry != nil {
			if err := applyExpiry(t, *in.Expiry, now, true, c); err != nil {
				return err
			}
		}
		return applyPolicyEdit(t, in, c)
	})
}

// applyPolicyEdit sets the policy parts in names and records the changes.
func applyPolicyEdit(t *Token, in TokenEdit, c map[string]Change) error {
	next := t.Policy
	if in.RestrictImages != nil {
		next.Images = *in.RestrictImages
	}
	if in.RestrictPackages != nil {
		next.Packages = *in.RestrictPackages
	}
	if in.Networks != nil {
		next.Networks = *in.Networks
	}
	if in.ValidFrom != nil {
		next.ValidFrom = nil
		if !in.ValidFrom.IsZero() {
			next.ValidFrom = in.ValidFrom
		}
	}
	if in.MaxPulls != nil {
		next.MaxPulls = *in.MaxPulls
	}
	if in.MaxBytes != nil {
		next.MaxBytes = *in.MaxBytes
	}
	if err := next.Validate(); err != nil {
		return err
	}
	next = normalizePolicy(next)
	policyChanges(t.Policy, next, c)
	t.Policy = next
	return checkValidFrom(t)
}

// PauseToken stops a token until ResumeToken: it is refused like a revoked
// one on every replica as fast as a revocation, but can be resumed.
// Pausing a paused token changes nothing.
func (s *Service) PauseToken(ctx context.Context, actor, id string) (*Token, error) {
	return s.editToken(ctx, actor, id, ActionTokenPaused, func(_ *Account, t *Token, now time.Time, c map[string]Change) error {
		if t.Policy.PausedAt == nil {
			t.Policy.PausedAt = &now
			c["paused_at"] = Change{To: now.Format(time.RFC3339)}
		}
		return nil
	})
}

// ResumeToken lets a paused token work again. A customer of a suspended
// account may not resume (it would give a working secret back).
func (s *Service) ResumeToken(ctx context.Context, actor, id string) (*Token, error) {
	return s.editToken(ctx, actor, id, ActionTokenResumed, func(a *Account, t *Token, _ time.Time, c map[string]Change) error {
		if t.Policy.PausedAt == nil {
			return nil
		}
		if err := checkSuspended(actor, a); err != nil {
			return err
		}
		c["paused_at"] = Change{From: t.Policy.PausedAt.Format(time.RFC3339)}
		t.Policy.PausedAt = nil
		return nil
	})
}

// ExtendToken sets a new expiry (a future time or never) on a token that is
// not revoked; an expired token becomes active again.
func (s *Service) ExtendToken(ctx context.Context, actor, id string, e Expiry) (*Token, error) {
	return s.editToken(ctx, actor, id, ActionTokenExtended, func(_ *Account, t *Token, now time.Time, c map[string]Change) error {
		return applyExpiry(t, e, now, false, c)
	})
}

func applyExpiry(t *Token, e Expiry, now time.Time, allowNow bool, c map[string]Change) error {
	var next *time.Time
	switch {
	case e.Now:
		if !allowNow {
			return FieldError("expires", "must be in the future or never")
		}
		next = &now
	case e.Never:
	default:
		at := e.At.UTC().Truncate(time.Microsecond)
		if !at.After(now) {
			if allowNow {
				return FieldError("expires", "must be in the future (use \"now\" to expire the token at once)")
			}
			return FieldError("expires", "must be in the future")
		}
		if at.After(MaxExpiry) {
			return errExpiryBound()
		}
		next = &at
	}
	if !sameTime(next, t.ExpiresAt) {
		c["expires_at"] = Change{From: formatExpiry(t.ExpiresAt), To: formatExpiry(next)}
	}
	t.ExpiresAt = next
	return nil
}

// RevokeToken revokes a token for good. Revoking a revoked token changes
// nothing and is not an error.
func (s *Service) RevokeToken(ctx context.Context, actor, id string) (*Token, error) {
	var out *Token
	var inv *Invalidation
	err := s.Store.Update(ctx, func(tx Tx) error {
		inv = nil
		t, err := s.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		a, err := tx.AccountByID(ctx, t.AccountID, false)
		if err != nil {
			return err
		}
		out = t
		if t.RevokedAt != nil {
			return beforeCommit(ctx, t, a)
		}
		now := s.now()
		t.RevokedAt, t.UpdatedAt = &now, now
		if err := tx.UpdateToken(ctx, t); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, &AuditEvent{AccountID: t.AccountID, Time: now, Actor: actor, Action: ActionTokenRevoked, Target: t.ID,
			Changes: map[string]Change{"revoked_at": {To: now.Format(time.RFC3339)}}}); err != nil {
			return err
		}
		if err := s.emitAction(ctx, tx, a, t, ActionTokenRevoked, now); err != nil {
			return err
		}
		if inv, err = logChange(ctx, tx, now, t.AccountID, t.ID); err != nil {
			return err
		}
		return beforeCommit(ctx, t, a)
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, inv)
	return out, nil
}

// lockToken reads the token and locks its account, so that edits of one
// account's tokens run one after the other.
func (s *Service) lockToken(ctx context.Context, tx Tx, id string) (*Token, error) {
	t, err := tx.TokenByID(ctx, id)
	if err != nil {
		return nil, tokenNotFound(err, id)
	}
	if _, err := tx.AccountByID(ctx, t.AccountID, true); err != nil {
		return nil, err
	}
	// Re-read under the lock: a concurrent revoke may have committed.
	return tx.TokenByID(ctx, id)
}

func (s *Service) editToken(ctx context.Context, actor, id, action string,
	fn func(a *Account, t *Token, now time.Time, c map[string]Change) error) (*Token, error) {
	var out *Token
	var inv *Invalidation
	err := s.Store.Update(ctx, func(tx Tx) error {
		inv = nil
		t, err := s.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.RevokedAt != nil {
			return Errorf(ECONFLICT, "token %s is revoked; revocation is final", id)
		}
		if t.Ephemeral() {
			return errEphemeral(id, "edited, paused or extended")
		}
		a, err := tx.AccountByID(ctx, t.AccountID, false)
		if err != nil {
			return err
		}
		now := s.now()
		c := map[string]Change{}
		oldExpiry := t.ExpiresAt
		if err := fn(a, t, now, c); err != nil {
			return err
		}
		if extends(oldExpiry, t.ExpiresAt) {
			if err := checkSuspended(actor, a); err != nil {
				return err
			}
		}
		for _, k := range []string{"expires_at", "restrict_images", "restrict_packages", "networks"} {
			if _, ok := c[k]; ok {
				if err := checkAccountPolicy(actor, a, t, now); err != nil {
					return err
				}
				break
			}
		}
		out = t
		if len(c) == 0 {
			return beforeCommit(ctx, t, a)
		}
		t.UpdatedAt = now
		if err := tx.UpdateToken(ctx, t); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, &AuditEvent{AccountID: t.AccountID, Time: now, Actor: actor, Action: action, Target: t.ID, Changes: c}); err != nil {
			return err
		}
		if err := s.emitAction(ctx, tx, a, t, action, now); err != nil {
			return err
		}
		if inv, err = logChange(ctx, tx, now, t.AccountID, t.ID); err != nil {
			return err
		}
		return beforeCommit(ctx, t, a)
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, inv)
	return out, nil
}

// MaxAuditPage is the largest page ListAudit returns.
const MaxAuditPage = 500

// ListAudit returns the account's audit events, newest first.
func (s *Service) ListAudit(ctx context.Context, accountName string, page AuditPage) ([]*AuditEvent, error) {
	if page.Limit <= 0 {
		page.Limit = 50
	}
	if page.Limit > MaxAuditPage {
		return nil, FieldError("limit", "must be at most %d", MaxAuditPage)
	}
	if page.Before < 0 {
		return nil, FieldError("before", "must not be negative")
	}
	var evs []*AuditEvent
	err := s.Store.View(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, accountName, false)
		if err != nil {
			return accountNotFound(err, accountName)
		}
		evs, err = tx.ListAudit(ctx, a.ID, page)
		return err
	})
	return evs, err
}
