package tollgate

import (
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Role is what a console user may do within its account.
type Role string

const (
	// RoleViewer reads the account's tokens; it never sees a secret.
	RoleViewer Role = "viewer"
	// RoleOperator also creates, reveals, edits, extends and revokes
	// tokens and requests package access.
	RoleOperator Role = "operator"
	// RoleAdmin also reads the account's audit log.
	RoleAdmin Role = "admin"
)

// ParseRole checks a role name.
func ParseRole(v string) (Role, error) {
	switch r := Role(strings.TrimSpace(v)); r {
	case RoleViewer, RoleOperator, RoleAdmin:
		return r, nil
	}
	return "", FieldError("role", "must be one of admin, operator, viewer")
}

// CanManageTokens reports whether the role may change tokens and see
// their secrets.
func (r Role) CanManageTokens() bool { return r == RoleOperator || r == RoleAdmin }

// CanReadAudit reports whether the role may read the audit log.
func (r Role) CanReadAudit() bool { return r == RoleAdmin }

// User is a person who signs in to the web console. It belongs to one
// account; its email is unique across all accounts (it is what signs in).
type User struct {
	ID          string // public: "usr_..."
	AccountID   string
	AccountName string // filled by the store on reads
	Email       string // lower case
	Role        Role
	// PasswordHash is an encoded password hash (see PasswordHasher), empty
	// until the user sets a password through its link.
	PasswordHash string
	// LinkHash is the lookup hash of the one-time set-password link's
	// secret, nil when there is no open link; LinkExpiresAt its expiry.
	LinkHash      []byte
	LinkExpiresAt *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Session is one signed-in browser. The cookie holds a secret; the store
// keeps its lookup hash (Hash) only.
type Session struct {
	ID         string // public: "ses_..."
	UserID     string
	Hash       []byte
	CreatedAt  time.Time
	ExpiresAt  time.Time // absolute end, whatever the activity
	LastSeenAt time.Time // the idle timeout runs from here
}

// Secret prefixes of the console: the one-time set-password link and the
// session cookie. Same shape as registry tokens (see NewSecret).
const (
	PasswordLinkPrefix = "tgp_"
	SessionPrefix      = "tgs_"
)

// Audit actions of console users. Their target is the user's email.
const (
	ActionUserCreated     = "user.created"
	ActionUserLinkIssued  = "user.password_link_issued"
	ActionUserPasswordSet = "user.password_set"
	ActionUserSignedIn    = "user.signed_in"
)

// SetPasswordPath is where the console serves the set-password form.
const SetPasswordPath = "/console/set-password"

// SetPasswordURL is the one-time link a new user opens to choose a
// password. The secret rides in the query, which neither the API nor the
// console logs.
func SetPasswordURL(publicURL string, link Secret) string {
	return strings.TrimSuffix(publicURL, "/") + SetPasswordPath + "?t=" + url.QueryEscape(link.Reveal())
}

// ValidateEmail checks an email address (a bare address, at most 254
// characters) and returns it in lower case.
func ValidateEmail(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", FieldError("email", "must not be empty")
	}
	if len(v) > 254 {
		return "", FieldError("email", "must be at most 254 characters")
	}
	if err := checkNoControl("email", v); err != nil {
		return "", err
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" || !strings.Contains(v[strings.LastIndexByte(v, '@')+1:], ".") {
		return "", FieldError("email", "must be an address like name@example.com")
	}
	return strings.ToLower(v), nil
}

// Password policy: long enough to resist guessing, short enough to hash
// cheaply, not the email address.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// ValidatePassword checks the password policy for a user with the given
// email.
func ValidatePassword(password, email string) error {
	if !utf8.ValidString(password) {
		return FieldError("password", "must be valid UTF-8")
	}
	n := utf8.RuneCountInString(password)
	if n < MinPasswordLen {
		return FieldError("password", "must be at least %d characters", MinPasswordLen)
	}
	if n > MaxPasswordLen {
		return FieldError("password", "must be at most %d characters", MaxPasswordLen)
	}
	if strings.TrimSpace(password) == "" || strings.Count(password, string([]rune(password)[0])) == n {
		return FieldError("password", "must not be one character repeated")
	}
	if email != "" && strings.Contains(strings.ToLower(password), strings.ToLower(email)) {
		return FieldError("password", "must not contain your email address")
	}
	return nil
}

// PasswordHasher hashes and checks passwords. The root package stays on
// the standard library; the implementation (argon2id) lives in
// internal/password and is wired by cmd/tollgate.
type PasswordHasher interface {
	// Hash returns an encoded hash of password with a fresh salt.
	Hash(password string) (string, error)
	// Verify reports whether password matches the encoded hash.
	Verify(encoded, password string) (bool, error)
}
