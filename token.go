package tollgate

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Scope is the set of things a token may fetch.
type Scope uint8

const (
	ScopeImages   Scope = 1 << iota // container images through /v2/
	ScopePackages                   // apt and apk repositories
)

// Has reports whether s includes every bit of o.
func (s Scope) Has(o Scope) bool { return s&o == o && o != 0 }

// Names returns the scope as a sorted list of names ("images", "packages").
func (s Scope) Names() []string {
	names := []string{}
	if s.Has(ScopeImages) {
		names = append(names, "images")
	}
	if s.Has(ScopePackages) {
		names = append(names, "packages")
	}
	return names
}

func (s Scope) String() string { return strings.Join(s.Names(), ",") }

// ParseScope parses "images", "packages" or both, comma separated.
func ParseScope(v string) (Scope, error) {
	return ParseScopeNames(strings.Split(v, ","))
}

// ParseScopeNames parses a list of scope names; it must not be empty.
func ParseScopeNames(names []string) (Scope, error) {
	var s Scope
	for _, n := range names {
		switch strings.TrimSpace(n) {
		case "images":
			s |= ScopeImages
		case "packages":
			s |= ScopePackages
		case "":
		default:
			return 0, FieldError("scope", "unknown scope %q (want images, packages or both)", strings.TrimSpace(n))
		}
	}
	if s == 0 {
		return 0, FieldError("scope", "must name at least one of images, packages")
	}
	return s, nil
}

// MaxActiveTokens is how many tokens that are not revoked an account may hold.
const MaxActiveTokens = 100

// Token is a registry token without its secret. Only the Service sees the
// secret, once at creation and on an explicit reveal.
type Token struct {
	ID          string // public: "tok_..."
	AccountID   string
	AccountName string // filled by the store on reads
	Name        string
	Description string
	Scope       Scope
	ExpiresAt   *time.Time // nil: valid while the account is active
	CreatedAt   time.Time
	UpdatedAt   time.Time
	LastUsedAt  *time.Time
	LastUsedIP  string
	LastUsedUA  string
	Pulls       int64 // requests served, as recorded by RecordUsage
	RevokedAt   *time.Time
	// Policy narrows what the token may do (restrictions, networks,
	// pause, valid-from); the zero value narrows nothing.
	Policy TokenPolicy
	// Rotation (see rotation.go): the current secret's version (1 at
	// creation, one more per rotation) and lookup hash, and the secret it
	// replaced, if any. Lookup hashes are keyed HMACs, not secrets.
	SecretVersion int
	SecretHash    []byte
	Previous      *PreviousSecret
	// Identity is the workload an ephemeral credential (see trust.go) was
	// issued to; nil for a registry token.
	Identity *Identity
}

// TokenStatus is what a user sees of a token's state.
type TokenStatus string

const (
	TokenActive    TokenStatus = "active"
	TokenExpired   TokenStatus = "expired"
	TokenRevoked   TokenStatus = "revoked"
	TokenSuspended TokenStatus = "suspended" // its account is suspended
	TokenPaused    TokenStatus = "paused"    // refused until resumed
	TokenScheduled TokenStatus = "scheduled" // not valid yet (Policy.ValidFrom)
)

// Status returns the token's state at now. Revocation wins over
// everything, then the account's suspension, the pause, expiry, and a
// valid-from date still ahead.
func (t *Token) Status(acct *Account, now time.Time) TokenStatus {
	switch {
	case t.RevokedAt != nil:
		return TokenRevoked
	case acct != nil && acct.Status == AccountSuspended:
		return TokenSuspended
	case t.Policy.PausedAt != nil:
		return TokenPaused
	case t.Expired(now):
		return TokenExpired
	case t.Policy.ValidFrom != nil && now.Before(*t.Policy.ValidFrom):
		return TokenScheduled
	}
	return TokenActive
}

// Expired reports whether the token's expiry is at or before now.
func (t *Token) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// ValidateTokenName: 1 to 100 printable characters, not only spaces, no
// control characters (see IsControl).
func ValidateTokenName(name string) error {
	if strings.TrimSpace(name) == "" {
		return FieldError("name", "must not be empty")
	}
	if !utf8.ValidString(name) {
		return FieldError("name", "must be valid UTF-8")
	}
	if utf8.RuneCountInString(name) > 100 {
		return FieldError("name", "must be at most 100 characters")
	}
	if err := checkNoControl("name", name); err != nil {
		return err
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return FieldError("name", "must contain only printable characters")
		}
	}
	return nil
}

// ValidateTokenDescription: optional, at most 500 printable characters
// on one line (no control characters, see IsControl).
func ValidateTokenDescription(d string) error {
	if !utf8.ValidString(d) {
		return FieldError("description", "must be valid UTF-8")
	}
	if utf8.RuneCountInString(d) > 500 {
		return FieldError("description", "must be at most 500 characters")
	}
	if err := checkNoControl("description", d); err != nil {
		return err
	}
	for _, r := range d {
		if !unicode.IsPrint(r) {
			return FieldError("description", "must contain only printable characters")
		}
	}
	return nil
}

// Expiry is a requested change of a token's expiry.
type Expiry struct {
	Never bool      // no expiry
	Now   bool      // expire right now (edit only)
	At    time.Time // otherwise: this instant
}

// ParseExpiry parses the user's forms: "never", "now", a date
// (YYYY-MM-DD, meaning the end of that day in UTC, so "2027-01-31" is
// still valid all of the 31st) or an RFC 3339 time.
func ParseExpiry(v string) (Expiry, error) {
	v = strings.TrimSpace(v)
	switch v {
	case "":
		return Expiry{}, FieldError("expires", "must be a date (YYYY-MM-DD), an RFC 3339 time, \"never\" or \"now\"")
	case "never":
		return Expiry{Never: true}, nil
	case "now":
		return Expiry{Now: true}, nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return boundedExpiry(t.Add(24*time.Hour - time.Second).UTC())
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return boundedExpiry(t.UTC())
	}
	return Expiry{}, FieldError("expires", "%q is not a date (YYYY-MM-DD), an RFC 3339 time, \"never\" or \"now\"", v)
}

// MaxExpiry is the latest expiry a token may have: the last second that
// RFC 3339, JSON and every store can all write. 9999-12-31T23:00:00-05:00
// is already past it.
var MaxExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// errExpiryBound is the field error of an expiry past MaxExpiry.
func errExpiryBound() error {
	return FieldError("expires", "must be on or before 9999-12-31 UTC")
}

func boundedExpiry(at time.Time) (Expiry, error) {
	if at.After(MaxExpiry) {
		return Expiry{}, errExpiryBound()
	}
	return Expiry{At: at}, nil
}
