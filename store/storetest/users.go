package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// Console users and sessions: the Tx primitives and the Users rules on
// top of them. Identifiers of this file start with "usr".

func testUsers(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tollgate.Store)
	}{
		{"TxUserInsertAndGet", usrTxInsertAndGet},
		{"TxUserDuplicateEmailIsConflict", usrTxDuplicate},
		{"TxUserUnknownAccountIsNotFound", usrTxUnknownAccount},
		{"TxUserMissingIsNotFound", usrTxMissing},
		{"TxUserUpdateRoundTrip", usrTxUpdate},
		{"TxUserListPerAccountByEmail", usrTxList},
		{"TxSessionLifecycle", usrTxSessions},
		{"TxUserWritesRejectedInView", usrTxViewReadOnly},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	t.Run("UsersService", func(t *testing.T) { usrService(t, newStore) })
}

func usrNewUser(a *tollgate.Account, email string) *tollgate.User {
	exp := txT0.Add(72 * time.Hour)
	return &tollgate.User{ID: tollgate.NewID("usr_"), AccountID: a.ID, AccountName: a.Name, Email: email,
		Role: tollgate.RoleOperator, LinkHash: txRandom(32), LinkExpiresAt: &exp, CreatedAt: txT0, UpdatedAt: txT0}
}

func usrInsert(t *testing.T, s tollgate.Store, a *tollgate.Account, email string) *tollgate.User {
	t.Helper()
	u := usrNewUser(a, email)
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertUser(t.Context(), u) })
	return u
}

func usrEqual(t *testing.T, what string, got, want *tollgate.User) {
	t.Helper()
	if got.ID != want.ID || got.AccountID != want.AccountID || got.AccountName != want.AccountName ||
		got.Email != want.Email || got.Role != want.Role || got.PasswordHash != want.PasswordHash ||
		!slices.Equal(got.LinkHash, want.LinkHash) || !sameTimePtr(got.LinkExpiresAt, want.LinkExpiresAt) ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Fatalf("%s: CreatedAt not in UTC", what)
	}
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func usrTxInsertAndGet(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	u := usrInsert(t, s, a, "ann@acme.example")
	ctx := t.Context()
	txView(t, s, func(tx tollgate.Tx) error {
		for what, get := range map[string]func() (*tollgate.User, error){
			"UserByID":       func() (*tollgate.User, error) { return tx.UserByID(ctx, u.ID) },
			"UserByEmail":    func() (*tollgate.User, error) { return tx.UserByEmail(ctx, u.Email) },
			"UserByLinkHash": func() (*tollgate.User, error) { return tx.UserByLinkHash(ctx, u.LinkHash) },
		} {
			got, err := get()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			usrEqual(t, what, got, u)
		}
		return nil
	})
}

func usrTxDuplicate(t *testing.T, s tollgate.Store) {
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "other")
	usrInsert(t, s, a, "ann@acme.example")
	err := s.Update(t.Context(), func(tx tollgate.Tx) error {
		return tx.InsertUser(t.Context(), usrNewUser(b, "ann@acme.example"))
	})
	txWantCode(t, "same email in another account", err, tollgate.ECONFLICT)
}

func usrTxUnknownAccount(t *testing.T, s tollgate.Store) {
	a := txNewAccount("ghost") // never inserted
	err := s.Update(t.Context(), func(tx tollgate.Tx) error {
		return tx.InsertUser(t.Context(), usrNewUser(a, "ann@acme.example"))
	})
	txWantCode(t, "InsertUser for an unknown account", err, tollgate.ENOTFOUND)
}

func usrTxMissing(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	txView(t, s, func(tx tollgate.Tx) error {
		_, err := tx.UserByID(ctx, "usr_missing")
		txWantCode(t, "UserByID", err, tollgate.ENOTFOUND)
		_, err = tx.UserByEmail(ctx, "nobody@acme.example")
		txWantCode(t, "UserByEmail", err, tollgate.ENOTFOUND)
		_, err = tx.UserByLinkHash(ctx, txRandom(32))
		txWantCode(t, "UserByLinkHash", err, tollgate.ENOTFOUND)
		_, err = tx.UserByLinkHash(ctx, nil)
		txWantCode(t, "UserByLinkHash(nil)", err, tollgate.ENOTFOUND)
		_, err = tx.SessionByHash(ctx, txRandom(32))
		txWantCode(t, "SessionByHash", err, tollgate.ENOTFOUND)
		return nil
	})
	err := s.Update(ctx, func(tx tollgate.Tx) error {
		return tx.UpdateUser(ctx, &tollgate.User{ID: "usr_missing", Role: tollgate.RoleViewer, UpdatedAt: txT0})
	})
	txWantCode(t, "UpdateUser", err, tollgate.ENOTFOUND)
	err = s.Update(ctx, func(tx tollgate.Tx) error { return tx.TouchSession(ctx, "ses_missing", txT0) })
	txWantCode(t, "TouchSession", err, tollgate.ENOTFOUND)
	// Deleting nothing is fine.
	txUpdate(t, s, func(tx tollgate.Tx) error {
		if err := tx.DeleteSession(ctx, "ses_missing"); err != nil {
			return err
		}
		return tx.DeleteUserSessions(ctx, "usr_missing")
	})
}

func usrTxUpdate(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	u := usrInsert(t, s, a, "ann@acme.example")
	other := usrInsert(t, s, a, "bob@acme.example")

	u.Role, u.PasswordHash, u.LinkHash, u.LinkExpiresAt = tollgate.RoleAdmin, "$argon2id$...'; DROP TABLE users; --", nil, nil
	u.UpdatedAt = txT0.Add(time.Hour)
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.UpdateUser(ctx, u) })
	var got *tollgate.User
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.UserByID(ctx, u.ID); return err })
	usrEqual(t, "after update", got, u)
	if got.LinkHash != nil || got.LinkExpiresAt != nil {
		t.Fatalf("cleared link reads back %x, %v", got.LinkHash, got.LinkExpiresAt)
	}
	// The old link no longer finds anyone; a link hash is unique.
	u.LinkHash = other.LinkHash
	err := s.Update(ctx, func(tx tollgate.Tx) error { return tx.UpdateUser(ctx, u) })
	txWantCode(t, "UpdateUser with another user's link hash", err, tollgate.ECONFLICT)
}

func usrTxList(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "other")
	for _, e := range []string{"zed@acme.example", "ann@acme.example", "Mia@acme.example"} {
		usrInsert(t, s, a, strings.ToLower(e))
	}
	usrInsert(t, s, b, "ann@other.example")
	var got []*tollgate.User
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListUsers(ctx, a.ID); return err })
	var emails []string
	for _, u := range got {
		emails = append(emails, u.Email)
		if u.AccountName != "acme" {
			t.Fatalf("AccountName = %q", u.AccountName)
		}
	}
	if want := []string{"ann@acme.example", "mia@acme.example", "zed@acme.example"}; !slices.Equal(emails, want) {
		t.Fatalf("ListUsers = %v, want %v", emails, want)
	}
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListUsers(ctx, "acct_none"); return err })
	if len(got) != 0 {
		t.Fatalf("ListUsers(unknown) = %v", got)
	}
}

func usrTxSessions(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	u := usrInsert(t, s, a, "ann@acme.example")
	v := usrInsert(t, s, a, "bob@acme.example")
	mk := func(user *tollgate.User, expires time.Duration) *tollgate.Session {
		return &tollgate.Session{ID: tollgate.NewID("ses_"), UserID: user.ID, Hash: txRandom(32),
			CreatedAt: txT0, ExpiresAt: txT0.Add(expires), LastSeenAt: txT0}
	}
	s1, s2, s3 := mk(u, time.Hour), mk(u, 2*time.Hour), mk(v, 3*time.Hour)
	txUpdate(t, s, func(tx tollgate.Tx) error {
		for _, ss := range []*tollgate.Session{s1, s2, s3} {
			if err := tx.InsertSession(ctx, ss); err != nil {
				return err
			}
		}
		return nil
	})
	dup := mk(u, time.Hour)
	dup.Hash = s1.Hash
	txWantCode(t, "InsertSession with a taken hash", s.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertSession(ctx, dup) }), tollgate.ECONFLICT)
	ghost := mk(&tollgate.User{ID: "usr_ghost"}, time.Hour)
	txWantCode(t, "InsertSession for an unknown user", s.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertSession(ctx, ghost) }), tollgate.ENOTFOUND)

	get := func(hash []byte) (*tollgate.Session, error) {
		var out *tollgate.Session
		err := s.View(ctx, func(tx tollgate.Tx) (err error) { out, err = tx.SessionByHash(ctx, hash); return err })
		return out, err
	}
	got, err := get(s1.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != s1.ID || got.UserID != u.ID || !slices.Equal(got.Hash, s1.Hash) || !got.CreatedAt.Equal(txT0) ||
		!got.ExpiresAt.Equal(s1.ExpiresAt) || !got.LastSeenAt.Equal(txT0) || got.ExpiresAt.Location() != time.UTC {
		t.Fatalf("SessionByHash = %+v, want %+v", got, s1)
	}
	seen := txT0.Add(10 * time.Minute)
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.TouchSession(ctx, s1.ID, seen) })
	if got, _ = get(s1.Hash); !got.LastSeenAt.Equal(seen) {
		t.Fatalf("LastSeenAt after touch = %v, want %v", got.LastSeenAt, seen)
	}

	// Expired: s1 (ends at T0+1h) at T0+1h exactly, not s2 nor s3.
	var n int
	txUpdate(t, s, func(tx tollgate.Tx) (err error) {
		n, err = tx.DeleteExpiredSessions(ctx, txT0.Add(time.Hour))
		return err
	})
	if n != 1 {
		t.Fatalf("DeleteExpiredSessions = %d, want 1", n)
	}
	if _, err := get(s1.Hash); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("expired session still there: %v", err)
	}
	// Signing out everywhere leaves the other user's session.
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.DeleteUserSessions(ctx, u.ID) })
	if _, err := get(s2.Hash); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("DeleteUserSessions left %v", err)
	}
	if _, err := get(s3.Hash); err != nil {
		t.Fatalf("other user's session: %v", err)
	}
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.DeleteSession(ctx, s3.ID) })
	if _, err := get(s3.Hash); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("DeleteSession left %v", err)
	}
}

func usrTxViewReadOnly(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	u := usrInsert(t, s, a, "ann@acme.example")
	err := s.View(ctx, func(tx tollgate.Tx) error {
		for what, err := range map[string]error{
			"InsertUser":         tx.InsertUser(ctx, usrNewUser(a, "bob@acme.example")),
			"UpdateUser":         tx.UpdateUser(ctx, u),
			"InsertSession":      tx.InsertSession(ctx, &tollgate.Session{ID: "ses_x", UserID: u.ID, Hash: txRandom(32), CreatedAt: txT0, ExpiresAt: txT0, LastSeenAt: txT0}),
			"TouchSession":       tx.TouchSession(ctx, "ses_x", txT0),
			"DeleteSession":      tx.DeleteSession(ctx, "ses_x"),
			"DeleteUserSessions": tx.DeleteUserSessions(ctx, u.ID),
		} {
			txWantCode(t, what+" inside View", err, tollgate.EINTERNAL)
		}
		_, err := tx.DeleteExpiredSessions(ctx, txT0)
		txWantCode(t, "DeleteExpiredSessions inside View", err, tollgate.EINTERNAL)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// usrHasher is a fast stand-in for the argon2id hasher: the suite tests
// the rules, not the hash.
type usrHasher struct{}

func (usrHasher) Hash(pw string) (string, error) {
	sum := sha256.Sum256([]byte("salt:" + pw))
	return "sha256$" + hex.EncodeToString(sum[:]), nil
}

func (h usrHasher) Verify(enc, pw string) (bool, error) {
	want, _ := h.Hash(pw)
	return enc == want, nil
}

func usrService(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	setup := func(t *testing.T) (*tollgate.Users, *tollgate.Service, *testenv.Clock) {
		svc, c := newService(t, newStore)
		if _, _, _, err := svc.CreateAccount(ctx, "operator", "acme"); err != nil {
			t.Fatal(err)
		}
		return &tollgate.Users{Store: svc.Store, Keys: svc.Keys, Hasher: usrHasher{}, Now: c.Now}, svc, c
	}
	const good = "a long enough passphrase"

	t.Run("LinkSetPasswordSignInSignOut", func(t *testing.T) {
		us, svc, _ := setup(t)
		u, link, err := us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: " Ann@Acme.Example ", Role: tollgate.RoleAdmin})
		if err != nil {
			t.Fatal(err)
		}
		if u.Email != "ann@acme.example" || u.Role != tollgate.RoleAdmin || u.AccountName != "acme" || u.PasswordHash != "" {
			t.Fatalf("CreateUser = %+v", u)
		}
		if !strings.HasPrefix(link.Reveal(), tollgate.PasswordLinkPrefix) {
			t.Fatalf("link = %q", link.Reveal())
		}
		url := tollgate.SetPasswordURL("https://tg.example/", link)
		if !strings.HasPrefix(url, "https://tg.example/console/set-password?t=tgp_") {
			t.Fatalf("SetPasswordURL = %q", url)
		}
		// No password yet: sign-in fails like a wrong password.
		_, _, err = us.SignIn(ctx, "ann@acme.example", "")
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")

		if got, err := us.PasswordLinkUser(ctx, link.Reveal()); err != nil || got.ID != u.ID {
			t.Fatalf("PasswordLinkUser = %v, %v", got, err)
		}
		_, err = us.SetPassword(ctx, link.Reveal(), "short")
		wantCode(t, err, tollgate.EINVALID, "password")
		_, err = us.SetPassword(ctx, link.Reveal(), "xx ann@acme.example xx")
		wantCode(t, err, tollgate.EINVALID, "password")
		if _, err := us.SetPassword(ctx, link.Reveal(), good); err != nil {
			t.Fatal(err)
		}
		// One time only.
		_, err = us.SetPassword(ctx, link.Reveal(), good+"!")
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		_, err = us.PasswordLinkUser(ctx, link.Reveal())
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")

		for _, bad := range [][2]string{{"ann@acme.example", good + "x"}, {"nobody@acme.example", good}, {"not an email", good}} {
			_, _, err = us.SignIn(ctx, bad[0], bad[1])
			wantCode(t, err, tollgate.EUNAUTHORIZED, "")
			if tollgate.ErrorMessage(err) != "wrong email or password" {
				t.Fatalf("message = %q", tollgate.ErrorMessage(err))
			}
		}
		got, secret, err := us.SignIn(ctx, "ANN@acme.example", good)
		if err != nil || got.ID != u.ID {
			t.Fatalf("SignIn = %v, %v", got, err)
		}
		su, sess, err := us.SessionUser(ctx, secret.Reveal())
		if err != nil || su.ID != u.ID || sess.UserID != u.ID {
			t.Fatalf("SessionUser = %v %v %v", su, sess, err)
		}
		if err := us.SignOut(ctx, secret.Reveal()); err != nil {
			t.Fatal(err)
		}
		_, _, err = us.SessionUser(ctx, secret.Reveal())
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		if err := us.SignOut(ctx, "garbage"); err != nil {
			t.Fatalf("SignOut(garbage) = %v", err)
		}

		evs, err := svc.ListAudit(ctx, "acme", tollgate.AuditPage{})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range evs {
			if strings.HasPrefix(e.Action, "user.") {
				actions = append(actions, e.Action+" "+e.Actor+" "+e.Target)
			}
		}
		want := []string{"user.signed_in user:ann@acme.example ann@acme.example", "user.password_set user:ann@acme.example ann@acme.example", "user.created operator ann@acme.example"}
		if !slices.Equal(actions, want) {
			t.Fatalf("audit = %q, want %q", actions, want)
		}
	})

	t.Run("CreateUserRules", func(t *testing.T) {
		us, svc, _ := setup(t)
		_, _, err := us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "nope", Role: tollgate.RoleViewer})
		wantCode(t, err, tollgate.EINVALID, "email")
		_, _, err = us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "a@acme.example", Role: "root"})
		wantCode(t, err, tollgate.EINVALID, "role")
		_, _, err = us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "ghost", Email: "a@acme.example", Role: tollgate.RoleViewer})
		wantCode(t, err, tollgate.ENOTFOUND, "")
		if _, _, err := us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "a@acme.example", Role: tollgate.RoleViewer}); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := svc.CreateAccount(ctx, "operator", "other"); err != nil {
			t.Fatal(err)
		}
		_, _, err = us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "other", Email: "A@acme.example", Role: tollgate.RoleViewer})
		wantCode(t, err, tollgate.ECONFLICT, "email")
		list, err := us.ListUsers(ctx, "acme")
		if err != nil || len(list) != 1 || list[0].Email != "a@acme.example" {
			t.Fatalf("ListUsers = %v, %v", list, err)
		}
	})

	t.Run("LinkExpiresAndIsReplaced", func(t *testing.T) {
		us, _, c := setup(t)
		_, link, err := us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "a@acme.example", Role: tollgate.RoleViewer})
		if err != nil {
			t.Fatal(err)
		}
		c.Add(tollgate.DefaultLinkLifetime)
		_, err = us.SetPassword(ctx, link.Reveal(), good)
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		_, fresh, err := us.IssuePasswordLink(ctx, "operator", "A@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		_, err = us.PasswordLinkUser(ctx, link.Reveal())
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		if _, err := us.SetPassword(ctx, fresh.Reveal(), good); err != nil {
			t.Fatal(err)
		}
		_, _, err = us.IssuePasswordLink(ctx, "operator", "nobody@acme.example")
		wantCode(t, err, tollgate.ENOTFOUND, "")
	})

	t.Run("SessionEndsWhenIdleOrOld", func(t *testing.T) {
		us, _, c := setup(t)
		_, link, _ := us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "a@acme.example", Role: tollgate.RoleViewer})
		if _, err := us.SetPassword(ctx, link.Reveal(), good); err != nil {
			t.Fatal(err)
		}
		_, idle, _ := us.SignIn(ctx, "a@acme.example", good)
		_, busy, _ := us.SignIn(ctx, "a@acme.example", good)
		// The busy one is used every 50 minutes: it lives to its absolute end.
		for elapsed := time.Duration(0); elapsed+50*time.Minute < tollgate.DefaultSessionLifetime; elapsed += 50 * time.Minute {
			c.Add(50 * time.Minute)
			if _, _, err := us.SessionUser(ctx, busy.Reveal()); err != nil {
				t.Fatalf("busy session ended after %v: %v", elapsed+50*time.Minute, err)
			}
		}
		_, _, err := us.SessionUser(ctx, idle.Reveal())
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		c.Add(50 * time.Minute) // past 12 hours
		_, _, err = us.SessionUser(ctx, busy.Reveal())
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
	})

	t.Run("NewPasswordEndsSessions", func(t *testing.T) {
		us, _, _ := setup(t)
		_, link, _ := us.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "a@acme.example", Role: tollgate.RoleViewer})
		if _, err := us.SetPassword(ctx, link.Reveal(), good); err != nil {
			t.Fatal(err)
		}
		_, sess, _ := us.SignIn(ctx, "a@acme.example", good)
		_, link, _ = us.IssuePasswordLink(ctx, "operator", "a@acme.example")
		if _, _, err := us.SessionUser(ctx, sess.Reveal()); err != nil {
			t.Fatalf("a new link alone must not end sessions: %v", err)
		}
		if _, err := us.SetPassword(ctx, link.Reveal(), good+" two"); err != nil {
			t.Fatal(err)
		}
		_, _, err := us.SessionUser(ctx, sess.Reveal())
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
		_, _, err = us.SignIn(ctx, "a@acme.example", good)
		wantCode(t, err, tollgate.EUNAUTHORIZED, "")
	})
}
