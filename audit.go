package tollgate

import "time"

// Audit actions, one per lifecycle event.
const (
	ActionAccountCreated     = "account.created"
	ActionAccountSuspended   = "account.suspended"
	ActionAccountResumed     = "account.resumed"
	ActionPackagesRequested  = "account.packages_requested"
	ActionPackagesGranted    = "account.packages_granted"
	ActionPackagesDenied     = "account.packages_denied"
	ActionSubscriptionChange = "account.subscription_changed"
	ActionAccountKeyCreated  = "account.key_created"
	ActionTokenCreated       = "token.created"
	ActionTokenEdited        = "token.edited"
	ActionTokenExtended      = "token.extended"
	ActionTokenRevoked       = "token.revoked"
	ActionTokenRevealed      = "token.revealed"
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
