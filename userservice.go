package tollgate

import (
	"context"
	"sync"
	"time"
)

// Users enforces the rules of console users and their sessions on top of
// a Store: who may be created, the one-time set-password links, the
// password policy, sign-in and session lifetimes. The console and the
// management API go through it.
type Users struct {
	Store  Store
	Keys   *Keys
	Hasher PasswordHasher
	// Now is the clock; tests set it.
	Now func() time.Time
	// LinkLifetime is how long a set-password link stays open
	// (DefaultLinkLifetime if zero).
	LinkLifetime time.Duration
	// SessionLifetime is the absolute length of a session, SessionIdle how
	// long it survives without a request (defaults if zero).
	SessionLifetime time.Duration
	SessionIdle     time.Duration

	dummyOnce sync.Once
	dummy     string // a hash to verify against when the email is unknown
}

// Defaults of Users.
const (
	DefaultLinkLifetime    = 72 * time.Hour
	DefaultSessionLifetime = 12 * time.Hour
	DefaultSessionIdle     = time.Hour
	// sessionTouchEvery bounds the writes a busy session makes: its last
	// seen time moves at most once a minute.
	sessionTouchEvery = time.Minute
)

func (u *Users) now() time.Time { return u.Now().UTC().Truncate(time.Microsecond) }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// UserCreate is the input of CreateUser.
type UserCreate struct {
	Account string // account name
	Email   string
	Role    Role
}

// CreateUser adds a console user to an account, without a password, and
// returns the secret of its one-time set-password link (see
// SetPasswordURL).
//
// Errors: EINVALID naming email or role; ENOTFOUND for the account;
// ECONFLICT (field email) if a user has that email, in any account.
func (u *Users) CreateUser(ctx context.Context, actor string, in UserCreate) (*User, Secret, error) {
	email, err := ValidateEmail(in.Email)
	if err != nil {
		return nil, "", err
	}
	role, err := ParseRole(string(in.Role))
	if err != nil {
		return nil, "", err
	}
	now := u.now()
	link := NewSecret(PasswordLinkPrefix)
	expires := now.Add(orDefault(u.LinkLifetime, DefaultLinkLifetime))
	usr := &User{ID: NewID("usr_"), Email: email, Role: role, LinkHash: u.Keys.Hash(link), LinkExpiresAt: &expires,
		CreatedAt: now, UpdatedAt: now}
	err = u.Store.Update(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, in.Account, true)
		if err != nil {
			return accountNotFound(err, in.Account)
		}
		usr.AccountID, usr.AccountName = a.ID, a.Name
		if err := tx.InsertUser(ctx, usr); err != nil {
			if ErrorCode(err) == ECONFLICT {
				return &Error{Code: ECONFLICT, Field: "email", Message: "a console user with this email already exists"}
			}
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: a.ID, Time: now, Actor: actor, Action: ActionUserCreated, Target: email,
			Changes: map[string]Change{"email": {To: email}, "role": {To: string(role)}}})
	})
	if err != nil {
		return nil, "", err
	}
	return usr, link, nil
}

// ListUsers returns the account's console users, by email.
func (u *Users) ListUsers(ctx context.Context, account string) ([]*User, error) {
	var out []*User
	err := u.Store.View(ctx, func(tx Tx) error {
		a, err := tx.AccountByName(ctx, account, false)
		if err != nil {
			return accountNotFound(err, account)
		}
		out, err = tx.ListUsers(ctx, a.ID)
		return err
	})
	return out, err
}

func userNotFound(err error) error {
	if ErrorCode(err) == ENOTFOUND {
		return Errorf(ENOTFOUND, "user not found")
	}
	return err
}

// IssuePasswordLink replaces the user's set-password link with a new one
// (an operator's answer to "I forgot my password"). The password, if any,
// keeps working until the link is used.
func (u *Users) IssuePasswordLink(ctx context.Context, actor, email string) (*User, Secret, error) {
	email, err := ValidateEmail(email)
	if err != nil {
		return nil, "", err
	}
	now := u.now()
	link := NewSecret(PasswordLinkPrefix)
	expires := now.Add(orDefault(u.LinkLifetime, DefaultLinkLifetime))
	var usr *User
	err = u.Store.Update(ctx, func(tx Tx) error {
		if usr, err = tx.UserByEmail(ctx, email); err != nil {
			return userNotFound(err)
		}
		usr.LinkHash, usr.LinkExpiresAt, usr.UpdatedAt = u.Keys.Hash(link), &expires, now
		if err := tx.UpdateUser(ctx, usr); err != nil {
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: usr.AccountID, Time: now, Actor: actor, Action: ActionUserLinkIssued, Target: email,
			Changes: map[string]Change{"password_link": {To: "issued"}}})
	})
	if err != nil {
		return nil, "", err
	}
	return usr, link, nil
}

// errBadLink is what every unusable link gets: unknown, used, expired
// and malformed look the same.
func errBadLink() error {
	return Errorf(EUNAUTHORIZED, "this set-password link is invalid, used or expired; ask your operator for a new one")
}

// PasswordLinkUser returns the user an open set-password link belongs to
// (EUNAUTHORIZED if the link is unknown, used or expired).
func (u *Users) PasswordLinkUser(ctx context.Context, link string) (*User, error) {
	var usr *User
	err := u.Store.View(ctx, func(tx Tx) (err error) {
		usr, err = u.linkUser(ctx, tx, link)
		return err
	})
	return usr, err
}

func (u *Users) linkUser(ctx context.Context, tx Tx, link string) (*User, error) {
	s, err := ParseSecret(PasswordLinkPrefix, link)
	if err != nil {
		return nil, errBadLink()
	}
	usr, err := tx.UserByLinkHash(ctx, u.Keys.Hash(s))
	if ErrorCode(err) == ENOTFOUND {
		return nil, errBadLink()
	}
	if err != nil {
		return nil, err
	}
	if usr.LinkExpiresAt == nil || !u.now().Before(*usr.LinkExpiresAt) {
		return nil, errBadLink()
	}
	return usr, nil
}

// SetPassword uses a set-password link: checks the policy, stores the new
// password's hash, closes the link and ends the user's other sessions.
func (u *Users) SetPassword(ctx context.Context, link, password string) (*User, error) {
	// Check the link before spending a hash on it.
	usr, err := u.PasswordLinkUser(ctx, link)
	if err != nil {
		return nil, err
	}
	if err := ValidatePassword(password, usr.Email); err != nil {
		return nil, err
	}
	hash, err := u.Hasher.Hash(password)
	if err != nil {
		return nil, Internal(err)
	}
	err = u.Store.Update(ctx, func(tx Tx) error {
		// Again under the write lock: two tabs may race for one link.
		if usr, err = u.linkUser(ctx, tx, link); err != nil {
			return err
		}
		now := u.now()
		usr.PasswordHash, usr.LinkHash, usr.LinkExpiresAt, usr.UpdatedAt = hash, nil, nil, now
		if err := tx.UpdateUser(ctx, usr); err != nil {
			return err
		}
		if err := tx.DeleteUserSessions(ctx, usr.ID); err != nil {
			return err
		}
		return insertAudit(ctx, tx, &AuditEvent{AccountID: usr.AccountID, Time: now, Actor: UserActor(usr.Email),
			Action: ActionUserPasswordSet, Target: usr.Email, Changes: map[string]Change{"password": {To: "set"}}})
	})
	if err != nil {
		return nil, err
	}
	return usr, nil
}

// SignIn checks an email and password and opens a session; the returned
// secret goes into the session cookie. Any mismatch (unknown email, no
// password set yet, wrong password) is the same EUNAUTHORIZED error.
func (u *Users) SignIn(ctx context.Context, email, password string) (*User, Secret, error) {
	bad := Errorf(EUNAUTHORIZED, "wrong email or password")
	email, err := ValidateEmail(email)
	if err != nil {
		return nil, "", bad
	}
	var usr *User
	err = u.Store.View(ctx, func(tx Tx) (err error) {
		usr, err = tx.UserByEmail(ctx, email)
		return err
	})
	if err != nil && ErrorCode(err) != ENOTFOUND {
		return nil, "", err
	}
	if usr == nil || usr.PasswordHash == "" {
		u.burnHash(password)
		return nil, "", bad
	}
	ok, err := u.Hasher.Verify(usr.PasswordHash, password)
	if err != nil {
		return nil, "", Internal(err)
	}
	if !ok {
		return nil, "", bad
	}
	now := u.now()
	secret := NewSecret(SessionPrefix)
	s := &Session{ID: NewID("ses_"), UserID: usr.ID, Hash: u.Keys.Hash(secret), CreatedAt: now,
		ExpiresAt: now.Add(orDefault(u.SessionLifetime, DefaultSessionLifetime)), LastSeenAt: now}
	err = u.Store.Update(ctx, func(tx Tx) error {
		// Sign-ins are when stale sessions are swept.
		if _, err := tx.DeleteExpiredSessions(ctx, now); err != nil {
			return err
		}
		if err := tx.InsertSession(ctx, s); err != nil {
			return err
		}
		// Failed attempts are not recorded (the limiter bounds them); a
		// session opened is, so an admin can see who signed in when.
		return insertAudit(ctx, tx, &AuditEvent{AccountID: usr.AccountID, Time: now, Actor: UserActor(usr.Email),
			Action: ActionUserSignedIn, Target: usr.Email})
	})
	if err != nil {
		return nil, "", err
	}
	return usr, secret, nil
}

// burnHash spends the time of one verification, so that an unknown email
// answers as slowly as a wrong password.
func (u *Users) burnHash(password string) {
	u.dummyOnce.Do(func() { u.dummy, _ = u.Hasher.Hash("tollgate-dummy-password") })
	u.Hasher.Verify(u.dummy, password)
}

// SessionUser returns the session whose cookie secret is v and its user,
// if the session has not ended: not past its absolute lifetime, nor idle
// longer than SessionIdle. Anything else is EUNAUTHORIZED. A live
// session's last-seen time moves forward (at most once a minute).
func (u *Users) SessionUser(ctx context.Context, v string) (*User, *Session, error) {
	bad := Errorf(EUNAUTHORIZED, "your session has ended; sign in again")
	secret, err := ParseSecret(SessionPrefix, v)
	if err != nil {
		return nil, nil, bad
	}
	var s *Session
	var usr *User
	err = u.Store.View(ctx, func(tx Tx) error {
		if s, err = tx.SessionByHash(ctx, u.Keys.Hash(secret)); err != nil {
			return err
		}
		usr, err = tx.UserByID(ctx, s.UserID)
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		return nil, nil, bad
	}
	if err != nil {
		return nil, nil, err
	}
	now := u.now()
	if !now.Before(s.ExpiresAt) || !now.Before(s.LastSeenAt.Add(orDefault(u.SessionIdle, DefaultSessionIdle))) {
		u.Store.Update(ctx, func(tx Tx) error { return tx.DeleteSession(ctx, s.ID) })
		return nil, nil, bad
	}
	if now.Sub(s.LastSeenAt) >= sessionTouchEvery {
		if err := u.Store.Update(ctx, func(tx Tx) error { return tx.TouchSession(ctx, s.ID, now) }); err != nil {
			return nil, nil, err
		}
		s.LastSeenAt = now
	}
	return usr, s, nil
}

// SignOut ends the session whose cookie secret is v. An unknown or
// malformed secret is not an error: the browser is signed out either way.
func (u *Users) SignOut(ctx context.Context, v string) error {
	secret, err := ParseSecret(SessionPrefix, v)
	if err != nil {
		return nil
	}
	return u.Store.Update(ctx, func(tx Tx) error {
		s, err := tx.SessionByHash(ctx, u.Keys.Hash(secret))
		if ErrorCode(err) == ENOTFOUND {
			return nil
		}
		if err != nil {
			return err
		}
		return tx.DeleteSession(ctx, s.ID)
	})
}
