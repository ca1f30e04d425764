package tollgate

import (
	"strings"
	"time"
)

// Audit actions, one per lifecycle event.
const (
	ActionAccountCreated       = "account.created"
	ActionAccountSuspended     = "account.suspended"
	ActionAccountResumed       = "account.resumed"
	ActionPackagesRequested    = "account.packages_requested"
	ActionPackagesGranted      = "account.packages_granted"
	ActionPackagesDenied       = "account.packages_denied"
	ActionSubscriptionChange   = "account.subscription_changed"
	ActionAccountKeyCreated    = "account.key_created"
	ActionTokenCreated         = "token.created"
	ActionTokenEdited          = "token.edited"
	ActionTokenExtended        = "token.extended"
	ActionTokenRevoked         = "token.revoked"
	ActionTokenRevealed        = "token.revealed"
	ActionTokenPaused          = "token.paused"
	ActionTokensRevokedAll     = "account.tokens_revoked"
	ActionAccountPolicyChanged = "account.policy_changed"
	ActionTokensPausedAll      = "account.tokens_paused"
	ActionTokenResumed         = "token.resumed"
	ActionTokenRotated         = "token.rotated"
	ActionPreviousExpired      = "token.previous_secret_expired"
)

// Change is one field's old and new value, rendered as text. Secrets are
// never a field of a change.
type Change struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// AuditEvent records who did what to which account or token, and when.
type AuditEvent struct {
	ID        int64 // assigned by the store, increasing
	AccountID string
	Time      time.Time
	Actor     string // "operator", "account:acme", "system", "user:a@b"
	Action    string
	Target    string // the account name or token id acted upon
	Changes   map[string]Change
}

// AuditPage asks for audit events of one account, newest first: at most
// Limit of them, all older than Before (an event ID; 0 means from the newest).
type AuditPage struct {
	Before int64
	Limit  int
}

// Customer actors: an account's API key and a console user. Service holds
// them to their account's state (a suspended account may read its tokens
// but not create, reveal or extend them); every other actor ("operator",
// "system", tollgate dev's) acts for the operator.
const (
	accountActorPrefix = "account:"
	userActorPrefix    = "user:"
)

// AccountActor is the actor of an account's API key.
func AccountActor(name string) string { return accountActorPrefix + name }

// UserActor is the actor of a console user.
func UserActor(email string) string { return userActorPrefix + email }

// IsCustomerActor reports whether actor is an account's key or a console
// user rather than the operator.
func IsCustomerActor(actor string) bool {
	return strings.HasPrefix(actor, accountActorPrefix) || strings.HasPrefix(actor, userActorPrefix)
}
