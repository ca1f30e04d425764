// Package authz decides whether a registry token may fetch a thing now.
// Decide is the one place where revocation, expiry, suspension, scope and
// entitlement are judged; the proxy's image and package routes, the token
// endpoint and the cache all call it.
package authz

import (
	"net/netip"
	"time"

	"github.com/tollgate/tollgate"
)

// Kind is what is being fetched.
type Kind uint8

const (
	// Any asks only whether the token is usable at all (docker login).
	Any Kind = iota
	// Image is a repository of the upstream registry, by name.
	Image
	// Package is a package repository (apt or apk), by name.
	Package
)

// Resource is the thing a request wants, and where it is asked from.
type Resource struct {
	Kind Kind
	Name string // repository name for Image, repository name for Package
	// Client is the client's address (behind trusted proxies). The zero
	// value is an unknown address: refused by any network rule.
	Client netip.Addr
	// Which of the token's secrets the request presented (rotation.go):
	// SecretHash, the lookup hash of the secret (Basic and /token), or
	// SecretVersion, the version the bearer JWT was minted from. Neither
	// set means the current one.
	SecretHash    []byte
	SecretVersion int
	// Usage this calendar month (UTC), for a token whose policy caps it:
	// pulls and bytes so far. Pull says the request is a pull (a manifest
	// GET, a package download), which the pulls cap refuses once reached;
	// the bytes cap refuses any fetch once reached.
	MonthPulls, MonthBytes int64
	Pull                   bool
}

// Reason says why a decision denies; "" means allowed. The values double
// as metric label values and log fields.
type Reason string

const (
	OK          Reason = ""
	Revoked     Reason = "revoked"
	Expired     Reason = "expired"
	Suspended   Reason = "suspended"
	WrongScope  Reason = "wrong_scope"
	NotEntitled Reason = "not_entitled"
	// The token's own policy (tollgate.TokenPolicy).
	Paused            Reason = "paused"
	NotYetValid       Reason = "not_yet_valid"
	AddressNotAllowed Reason = "address_not_allowed"
	Restricted        Reason = "restricted"
	CapReached        Reason = "cap_reached"
	// Rotated: the secret presented was rotated out (the previous one
	// after its grace, or an older one).
	Rotated Reason = "rotated"
)

// Allowed reports whether r is OK.
func (r Reason) Allowed() bool { return r == OK }

// Decide judges tok (of account acct) for res at now. The order is fixed:
// revoked, rotated (the secret presented), suspended, paused, expired, not yet valid, client address,
// scope, entitlement (the subscription), restriction (the token's policy);
// the first failing rule is the reason. The policy only ever narrows: a
// resource must pass both the subscription and the restriction. A nil
// token or account is never allowed.
func Decide(tok *tollgate.Token, acct *tollgate.Account, now time.Time, res Resource) Reason {
	if tok == nil || acct == nil || tok.AccountID != acct.ID {
		return Revoked
	}
	status := tok.Status(acct, now)
	if status == tollgate.TokenRevoked {
		return Revoked
	}
	if !tok.SecretLive(presentedVersion(tok, res), now) {
		return Rotated
	}
	switch status {
	case tollgate.TokenSuspended:
		return Suspended
	case tollgate.TokenPaused:
		return Paused
	case tollgate.TokenExpired:
		return Expired
	case tollgate.TokenScheduled:
		return NotYetValid
	}
	if !tok.Policy.AllowsAddress(res.Client) || !acct.Policy.AllowsAddress(res.Client) {
		return AddressNotAllowed
	}
	switch res.Kind {
	case Any:
		return OK
	case Image:
		if !tok.Scope.Has(tollgate.ScopeImages) {
			return WrongScope
		}
		if !acct.Subscription.EntitledImage(res.Name) {
			return NotEntitled
		}
		if !tok.Policy.AllowsImage(res.Name) {
			return Restricted
		}
		return capped(tok, res)
	case Package:
		if !tok.Scope.Has(tollgate.ScopePackages) {
			return WrongScope
		}
		// The scope bit stays on a token when access is later denied;
		// access must be granted now.
		if acct.PackageAccess != tollgate.PackageAccessGranted || !acct.Subscription.EntitledPackages(res.Name) {
			return NotEntitled
		}
		if !tok.Policy.AllowsPackages(res.Name) {
			return Restricted
		}
		return capped(tok, res)
	}
	return NotEntitled
}

// capped applies the token's monthly caps to a fetch.
func capped(tok *tollgate.Token, res Resource) Reason {
	p := tok.Policy
	switch {
	case p.MaxBytes > 0 && res.MonthBytes >= p.MaxBytes:
		return CapReached
	case res.Pull && p.MaxPulls > 0 && res.MonthPulls >= p.MaxPulls:
		return CapReached
	}
	return OK
}

// presentedVersion is the version of the secret res presented: by hash if
// it has one (a hash that is neither secret's is version -1, never live),
// else the version it says (0: not said, the current one).
func presentedVersion(tok *tollgate.Token, res Resource) int {
	if len(res.SecretHash) > 0 {
		if v := tok.PresentedVersion(res.SecretHash); v != 0 {
			return v
		}
		return -1
	}
	return res.SecretVersion
}
