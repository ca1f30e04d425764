// Package api owns tollgate's management JSON API: the HTTP server that
// exposes tollgate.Service under /api/v1/ (accounts, subscriptions, tokens,
// audit log), its Go client (what cmd/tollgate speaks), and the wire types
// both share. The server only authenticates, authorizes and translates;
// every lifecycle rule lives in tollgate.Service.
package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Prefix is where the API is mounted.
const Prefix = "/api/v1/"

// Info describes the tollgate instance: what a client needs to print
// ready-to-paste docker, kubectl, apt and apk commands.
type Info struct {
	PublicURL    string `json:"public_url"`
	Service      string `json:"service"`       // the registry service name in Bearer challenges
	RegistryHost string `json:"registry_host"` // host[:port] of PublicURL, as docker login wants it
	// PackageRepositories are the configured apt and apk repositories,
	// for the set-up commands (never their upstream URLs or credentials).
	PackageRepositories []PackageRepository `json:"package_repositories"`
	// SetupCommands are the set-up commands for a token with every scope
	// and every repository, with <TOKEN> in place of the secret: the same
	// text `token show` and the console print (tollgate.SetupCommands).
	SetupCommands []SetupCommand `json:"setup_commands"`
}

// SetupCommand is one ready-to-paste snippet.
type SetupCommand struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

// PackageRepository names one served package repository.
type PackageRepository struct {
	Name      string `json:"name"`
	Format    string `json:"format"`              // apt or apk
	Suite     string `json:"suite,omitempty"`     // apt
	Component string `json:"component,omitempty"` // apt
	// KeyURL is where tollgate publishes the repository's public signing
	// key (no authentication); absent when none is configured.
	KeyURL string `json:"key_url,omitempty"`
}

// Repo is r as tollgate.Setup names it.
func (r PackageRepository) Repo() tollgate.PackageRepo {
	p := tollgate.PackageRepo{Name: r.Name, Format: tollgate.PackageFormat(r.Format), Suite: r.Suite, Component: r.Component}
	if i := strings.LastIndex(r.KeyURL, "/"); i >= 0 {
		p.KeyFile = r.KeyURL[i+1:]
	}
	return p
}

// Subscription is what an account is entitled to pull. Both lists are
// always arrays on the wire, never null.
type Subscription struct {
	Images   []string `json:"images"`
	Packages []string `json:"packages"`
}

// Account is the wire form of tollgate.Account.
type Account struct {
	ID            string       `json:"id"`
	Name          string       `json:"name"`
	Status        string       `json:"status"`         // active, suspended
	PackageAccess string       `json:"package_access"` // none, requested, granted, denied
	Subscription  Subscription `json:"subscription"`
	// Policy is what every token of the account must meet.
	Policy    AccountPolicy `json:"policy"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
}

// AccountPolicy is the wire form of tollgate.AccountPolicy: durations as
// "90d" or a Go duration ("" for none), networks always an array.
type AccountPolicy struct {
	MaxLifetime         string   `json:"max_lifetime"`
	Networks            []string `json:"networks"`
	AutoPauseAfter      string   `json:"auto_pause_after"`
	RequireRestrictions bool     `json:"require_restrictions"`
}

func fromAccountPolicy(p tollgate.AccountPolicy) AccountPolicy {
	return AccountPolicy{MaxLifetime: fmtDuration(p.MaxLifetime), Networks: tollgate.FormatNetworks(p.Networks),
		AutoPauseAfter: fmtDuration(p.AutoPauseAfter), RequireRestrictions: p.RequireRestrictions}
}

// fmtDuration writes whole days as "90d", other durations as Go does, none as "".
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d%(24*time.Hour) == 0:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

// ToAccountPolicy parses the wire form; errors name the field.
func (p AccountPolicy) ToAccountPolicy() (tollgate.AccountPolicy, error) {
	var out tollgate.AccountPolicy
	var err error
	if out.MaxLifetime, err = parseDays("max_lifetime", p.MaxLifetime); err != nil {
		return out, err
	}
	if out.AutoPauseAfter, err = parseDays("auto_pause_after", p.AutoPauseAfter); err != nil {
		return out, err
	}
	if out.Networks, err = tollgate.ParseNetworks("networks", p.Networks); err != nil {
		return out, err
	}
	out.RequireRestrictions = p.RequireRestrictions
	return out, nil
}

func parseDays(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if d, ok := cutDays(v); ok {
		return d, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, tollgate.FieldError(field, "must be a number of days like 90d or a duration like 12h")
	}
	return d, nil
}

// Token is the wire form of a registry token. Secret is set only in the
// answer to a creation (of the token or of its account) and to an explicit
// reveal; it is the plaintext registry token, to be shown to its owner and
// never logged.
type Token struct {
	ID          string     `json:"id"`
	Account     string     `json:"account"` // the account's name
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Scope       []string   `json:"scope"`      // "images", "packages"
	ExpiresAt   *time.Time `json:"expires_at"` // null: no expiry
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	Status      string     `json:"status"` // active, expired, revoked, suspended, paused, scheduled
	// Restrictions narrow the account's subscription for this token
	// (empty lists: no restriction).
	Restrictions Restrictions `json:"restrictions"`
	ValidFrom    *time.Time   `json:"valid_from"` // null: valid from creation
	PausedAt     *time.Time   `json:"paused_at"`  // null: not paused
	// Monthly caps (calendar month, UTC); 0: no cap.
	MaxPulls int64  `json:"max_pulls"`
	MaxBytes int64  `json:"max_bytes"`
	Secret   string `json:"secret,omitempty"`
	// Previous is the secret before the last rotation (rotation.go).
	Previous *PreviousSecret `json:"previous_secret,omitempty"`
	// Ephemeral: a credential a workload obtained with its OIDC token
	// (trust.go); Identity says which. Never revealable, outside Limit.
	Ephemeral bool      `json:"ephemeral,omitempty"`
	Identity  *Identity `json:"identity,omitempty"`
}

// Restrictions are a token's own limits: image repository patterns,
// package repository names and client networks (CIDRs). Always arrays on
// the wire, never null.
type Restrictions struct {
	Images   []string `json:"images"`
	Packages []string `json:"packages"`
	Networks []string `json:"networks"`
}

// TokenList is an account's tokens. Active counts the tokens that are not
// revoked, which is what Limit bounds.
type TokenList struct {
	Tokens []Token `json:"tokens"`
	Active int     `json:"active"`
	Limit  int     `json:"limit"`
}

// Change is one field's old and new value, as text.
type Change struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// AuditEvent is one audit log entry.
type AuditEvent struct {
	ID      int64             `json:"id"`
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Target  string            `json:"target"`
	Changes map[string]Change `json:"changes"`
}

// AuditPage is a page of an account's audit log, newest first.
// NextBefore, when set, is the before= value that fetches the next page.
type AuditPage struct {
	Events     []AuditEvent `json:"events"`
	NextBefore *int64       `json:"next_before"`
}

// CreateAccountRequest is the body of POST /api/v1/accounts.
type CreateAccountRequest struct {
	Name string `json:"name"`
}

// CreateAccountResponse answers a sign-up: the account and its default
// token, with the token's secret.
type CreateAccountResponse struct {
	Account Account `json:"account"`
	Token   Token   `json:"token"`
}

// AccountKey answers POST /api/v1/accounts/{name}/keys. The key is shown
// once; the server keeps only its hash.
type AccountKey struct {
	Key string `json:"key"`
}

// CreateTokenRequest is the body of POST /api/v1/accounts/{name}/tokens.
// An empty Scope means images; an empty ExpiresAt means never. ExpiresAt
// takes an RFC 3339 time, a date (YYYY-MM-DD, valid to the end of that day
// UTC) or "never".
type CreateTokenRequest struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Scope       []string `json:"scope,omitempty"`
	ExpiresAt   string   `json:"expires_at,omitempty"`
	// The token's own policy (see Restrictions); ValidFrom takes an RFC
	// 3339 time or a date (from the start of that day, UTC).
	RestrictImages   []string `json:"restrict_images,omitempty"`
	RestrictPackages []string `json:"restrict_packages,omitempty"`
	Networks         []string `json:"networks,omitempty"`
	ValidFrom        string   `json:"valid_from,omitempty"`
	MaxPulls         int64    `json:"max_pulls,omitempty"`
	MaxBytes         int64    `json:"max_bytes,omitempty"`
}

// EditTokenRequest is the body of PATCH /api/v1/tokens/{id}. Nil fields
// (and an empty Scope) are left as they are. ExpiresAt also takes "now",
// which expires the token at once.
type EditTokenRequest struct {
	Name        *string  `json:"name,omitempty"`
	Description *string  `json:"description,omitempty"`
	Scope       []string `json:"scope,omitempty"`
	ExpiresAt   *string  `json:"expires_at,omitempty"`
	// Policy parts: nil leaves them, an empty list removes a restriction,
	// an empty ValidFrom removes the date.
	RestrictImages   *[]string `json:"restrict_images,omitempty"`
	RestrictPackages *[]string `json:"restrict_packages,omitempty"`
	Networks         *[]string `json:"networks,omitempty"`
	ValidFrom        *string   `json:"valid_from,omitempty"`
	MaxPulls         *int64    `json:"max_pulls,omitempty"`
	MaxBytes         *int64    `json:"max_bytes,omitempty"`
}

// ExtendTokenRequest is the body of POST /api/v1/tokens/{id}/extend:
// a future RFC 3339 time or date, or "never".
type ExtendTokenRequest struct {
	ExpiresAt string `json:"expires_at"`
}

// ErrorBody is the envelope of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries a tollgate.Error across the wire. Message is the
// client-safe text, prefixed with the field ("expires: must be in the
// future") when Field is set.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func fromAccount(a *tollgate.Account) Account {
	return Account{
		ID:            a.ID,
		Name:          a.Name,
		Status:        string(a.Status),
		PackageAccess: string(a.PackageAccess),
		Subscription: Subscription{
			Images:   nonNil(a.Subscription.Images),
			Packages: nonNil(a.Subscription.Packages),
		},
		Policy:    fromAccountPolicy(a.Policy),
		CreatedAt: wireTime(a.CreatedAt),
		UpdatedAt: wireTime(a.UpdatedAt),
	}
}

// fromToken converts t; its status is computed against its account at now.
// The secret is added by the caller, only where it must be shown.
func fromToken(t *tollgate.Token, a *tollgate.Account, now time.Time) Token {
	name := t.AccountName
	if name == "" && a != nil {
		name = a.Name
	}
	return Token{
		ID:          t.ID,
		Account:     name,
		Name:        t.Name,
		Description: t.Description,
		Scope:       t.Scope.Names(),
		ExpiresAt:   utcPtr(t.ExpiresAt),
		CreatedAt:   wireTime(t.CreatedAt),
		UpdatedAt:   wireTime(t.UpdatedAt),
		LastUsedAt:  utcPtr(t.LastUsedAt),
		RevokedAt:   utcPtr(t.RevokedAt),
		Status:      string(t.Status(a, now)),
		Restrictions: Restrictions{
			Images:   nonNil(t.Policy.Images),
			Packages: nonNil(t.Policy.Packages),
			Networks: tollgate.FormatNetworks(t.Policy.Networks),
		},
		ValidFrom: utcPtr(t.Policy.ValidFrom),
		PausedAt:  utcPtr(t.Policy.PausedAt),
		MaxPulls:  t.Policy.MaxPulls,
		MaxBytes:  t.Policy.MaxBytes,
		Previous:  fromPrevious(t, now),
		Ephemeral: t.Ephemeral(),
		Identity:  fromIdentity(t.Identity),
	}
}

// ParseValidFrom reads a valid-from date: an RFC 3339 time, or a date
// meaning the start of that day, UTC.
func ParseValidFrom(v string) (time.Time, error) { return tollgate.ParseValidFrom(v) }

func fromAuditEvent(e *tollgate.AuditEvent) AuditEvent {
	changes := make(map[string]Change, len(e.Changes))
	for k, c := range e.Changes {
		changes[k] = Change{From: c.From, To: c.To}
	}
	return AuditEvent{
		ID:      e.ID,
		Time:    wireTime(e.Time),
		Actor:   e.Actor,
		Action:  e.Action,
		Target:  e.Target,
		Changes: changes,
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := wireTime(*t)
	return &u
}

// Bounds of what JSON (RFC 3339) can carry: a time outside them fails
// to encode, which would turn reading a stored row into a 500.
var (
	minWireTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxWireTime = tollgate.MaxExpiry
)

// wireTime is t in UTC, clamped to what JSON can carry. Service keeps
// expiries within the bounds and a migration repaired older rows; this
// is the last guard, for any time of any stored row.
func wireTime(t time.Time) time.Time {
	t = t.UTC()
	switch {
	case t.Before(minWireTime):
		return minWireTime
	case t.After(maxWireTime):
		return maxWireTime
	}
	return t
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
