package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// The Tx primitives, one fresh store per test. Every identifier of this
// file starts with "tx" so that it cannot collide with the Service suite.

// txT0 has microseconds, as every time a caller hands the store has.
var txT0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

func testTx(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tollgate.Store)
	}{
		{"AccountInsertAndGet", txAccountInsertAndGet},
		{"AccountDuplicateIsConflict", txAccountDuplicate},
		{"AccountMissingIsNotFound", txAccountNotFound},
		{"AccountUpdateRoundTrip", txAccountUpdate},
		{"AccountRenameToTakenNameIsConflict", txAccountRenameConflict},
		{"AccountEmptySubscriptionReadsNil", txAccountEmptySubscription},
		{"AccountListOrderedByName", txAccountList},
		{"AccountKeySetLookupReplace", txAccountKeys},
		{"TokenInsertAndGet", txTokenInsertAndGet},
		{"TokenSealedSecretRoundTrip", txTokenSealed},
		{"TokenDuplicateIsConflict", txTokenDuplicate},
		{"TokenUnknownAccountIsNotFound", txTokenUnknownAccount},
		{"TokenMissingIsNotFound", txTokenNotFound},
		{"TokenUpdateWritesMutableFieldsOnly", txTokenUpdate},
		{"TokenListOldestFirst", txTokenList},
		{"TokenCountSkipsRevoked", txTokenCount},
		{"TokenTimesRoundTrip", txTokenTimes},
		{"TokenSQLMetacharactersStoredLiterally", txTokenMetacharacters},
		{"AuditInsertAssignsIncreasingIDs", txAuditInsert},
		{"AuditListNewestFirstPaged", txAuditPages},
		{"AuditListPerAccount", txAuditIsolation},
		{"UpdateErrorRollsBack", txUpdateRollback},
		{"UpdatePanicRollsBack", txUpdatePanic},
		{"UpdateUsableAfterConflict", txUpdateAfterConflict},
		{"UpdateCanceledContextWritesNothing", txUpdateCanceled},
		{"ViewRejectsWrites", txViewReadOnly},
		{"RecordUsage", txRecordUsage},
		{"RecordUsageConcurrentPullsAddUp", txRecordUsageConcurrent},
		{"ConcurrentUpdatesRespectLimit", txConcurrentLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// --- helpers ---------------------------------------------------------------

func txUpdate(t *testing.T, s tollgate.Store, fn func(tx tollgate.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func txView(t *testing.T, s tollgate.Store, fn func(tx tollgate.Tx) error) {
	t.Helper()
	if err := s.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func txWantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := tollgate.ErrorCode(err); got != code {
		t.Fatalf("%s: error code %q (%v), want %q", what, got, err, code)
	}
}

func txRandom(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func txTime(d time.Duration) *time.Time { v := txT0.Add(d); return &v }

func txNewAccount(name string) *tollgate.Account {
	return &tollgate.Account{
		ID:            tollgate.NewID("acct_"),
		Name:          name,
		Status:        tollgate.AccountActive,
		PackageAccess: tollgate.PackageAccessNone,
		Subscription:  tollgate.Subscription{Images: []string{"**"}, Packages: []string{"os"}},
		CreatedAt:     txT0,
		UpdatedAt:     txT0,
	}
}

func txInsertAccount(t *testing.T, s tollgate.Store, name string) *tollgate.Account {
	t.Helper()
	a := txNewAccount(name)
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertAccount(t.Context(), a) })
	return a
}

// txStoredToken is a token as InsertToken takes it.
type txStoredToken struct {
	*tollgate.Token
	hash, sealed []byte
}

func txNewToken(a *tollgate.Account, name string, created time.Time) txStoredToken {
	return txStoredToken{
		Token: &tollgate.Token{
			ID:          tollgate.NewID("tok_"),
			AccountID:   a.ID,
			AccountName: a.Name,
			Name:        name,
			Scope:       tollgate.ScopeImages,
			CreatedAt:   created,
			UpdatedAt:   created,
		},
		hash:   txRandom(32),
		sealed: txRandom(60),
	}
}

func txInsertToken(t *testing.T, s tollgate.Store, a *tollgate.Account, name string, created time.Time) txStoredToken {
	t.Helper()
	st := txNewToken(a, name, created)
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(t.Context(), st.Token, st.hash, st.sealed) })
	return st
}

func txGetToken(t *testing.T, s tollgate.Store, id string) *tollgate.Token {
	t.Helper()
	var got *tollgate.Token
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.TokenByID(t.Context(), id); return err })
	return got
}

// txFmtTime shows an instant and its location, so that a time read back
// in another zone, or off by a microsecond, shows in a diff.
func txFmtTime(tm time.Time) string {
	return tm.Format("2006-01-02T15:04:05.000000000") + "@" + tm.Location().String()
}

func txFmtTimePtr(tm *time.Time) string {
	if tm == nil {
		return "nil"
	}
	return txFmtTime(*tm)
}

// txUTC is what the store should give back for tm: the same instant in UTC.
func txUTC(tm time.Time) time.Time { return tm.UTC() }

func txUTCPtr(tm *time.Time) *time.Time {
	if tm == nil {
		return nil
	}
	u := tm.UTC()
	return &u
}

func txFmtAccount(a *tollgate.Account) string {
	if a == nil {
		return "<nil>"
	}
	return fmt.Sprintf("id=%q name=%q status=%q packages=%q images=%#v pkgs=%#v created=%s updated=%s",
		a.ID, a.Name, a.Status, a.PackageAccess, a.Subscription.Images, a.Subscription.Packages,
		txFmtTime(a.CreatedAt), txFmtTime(a.UpdatedAt))
}

func txFmtToken(tok *tollgate.Token) string {
	if tok == nil {
		return "<nil>"
	}
	p := tok.Policy
	return fmt.Sprintf("id=%q account=%q/%q name=%q desc=%q scope=%d expires=%s created=%s updated=%s "+
		"used=%s ip=%q ua=%q pulls=%d revoked=%s policy=images%q packages%q networks%q from=%s paused=%s",
		tok.ID, tok.AccountID, tok.AccountName, tok.Name, tok.Description, tok.Scope, txFmtTimePtr(tok.ExpiresAt),
		txFmtTime(tok.CreatedAt), txFmtTime(tok.UpdatedAt), txFmtTimePtr(tok.LastUsedAt), tok.LastUsedIP, tok.LastUsedUA,
		tok.Pulls, txFmtTimePtr(tok.RevokedAt), p.Images, p.Packages, tollgate.FormatNetworks(p.Networks),
		txFmtTimePtr(p.ValidFrom), txFmtTimePtr(p.PausedAt))
}

// txWantAccount compares got with want, whose times are expected back in UTC.
func txWantAccount(t *testing.T, what string, got, want *tollgate.Account) {
	t.Helper()
	w := *want
	w.CreatedAt, w.UpdatedAt = txUTC(w.CreatedAt), txUTC(w.UpdatedAt)
	if g, ws := txFmtAccount(got), txFmtAccount(&w); g != ws {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, ws)
	}
}

func txWantToken(t *testing.T, what string, got, want *tollgate.Token) {
	t.Helper()
	w := *want
	w.CreatedAt, w.UpdatedAt = txUTC(w.CreatedAt), txUTC(w.UpdatedAt)
	w.ExpiresAt, w.LastUsedAt, w.RevokedAt = txUTCPtr(w.ExpiresAt), txUTCPtr(w.LastUsedAt), txUTCPtr(w.RevokedAt)
	if g, ws := txFmtToken(got), txFmtToken(&w); g != ws {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, ws)
	}
}

func txTokenIDs(toks []*tollgate.Token) []string {
	var ids []string
	for _, tok := range toks {
		ids = append(ids, tok.ID)
	}
	return ids
}

// --- accounts --------------------------------------------------------------

func txAccountInsertAndGet(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	a := &tollgate.Account{
		ID:            tollgate.NewID("acct_"),
		Name:          "acme",
		Status:        tollgate.AccountSuspended,
		PackageAccess: tollgate.PackageAccessRequested,
		Subscription: tollgate.Subscription{
			Images:   []string{"team-a/**", "nginx", "python*"},
			Packages: []string{"os", "extras"},
		},
		CreatedAt: txT0.In(zone),
		UpdatedAt: txT0.Add(90 * time.Minute),
	}
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertAccount(ctx, a) })
	txInsertAccount(t, s, "other") // lookups must not find the wrong row

	for _, forUpdate := range []bool{false, true} {
		txUpdate(t, s, func(tx tollgate.Tx) error {
			got, err := tx.AccountByID(ctx, a.ID, forUpdate)
			if err != nil {
				return err
			}
			txWantAccount(t, fmt.Sprintf("Update: AccountByID(forUpdate=%v)", forUpdate), got, a)
			got, err = tx.AccountByName(ctx, a.Name, forUpdate)
			if err != nil {
				return err
			}
			txWantAccount(t, fmt.Sprintf("Update: AccountByName(forUpdate=%v)", forUpdate), got, a)
			return nil
		})
		txView(t, s, func(tx tollgate.Tx) error {
			got, err := tx.AccountByID(ctx, a.ID, forUpdate)
			if err != nil {
				return err
			}
			txWantAccount(t, "View: AccountByID", got, a)
			got, err = tx.AccountByName(ctx, a.Name, forUpdate)
			if err != nil {
				return err
			}
			txWantAccount(t, "View: AccountByName", got, a)
			return nil
		})
	}
}

func txAccountDuplicate(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	tests := []struct {
		name string
		acct *tollgate.Account
	}{
		{"SameName", txNewAccount("acme")},
		{"SameID", func() *tollgate.Account { b := txNewAccount("other"); b.ID = a.ID; return b }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertAccount(ctx, tc.acct) })
			txWantCode(t, "InsertAccount", err, tollgate.ECONFLICT)
		})
	}
	var all []*tollgate.Account
	txView(t, s, func(tx tollgate.Tx) (err error) { all, err = tx.ListAccounts(ctx); return err })
	if len(all) != 1 {
		t.Fatalf("after conflicts: %d accounts, want 1", len(all))
	}
}

func txAccountNotFound(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	txInsertAccount(t, s, "acme")
	missing := txNewAccount("nobody")
	tests := []struct {
		name string
		fn   func(tx tollgate.Tx) error
	}{
		{"AccountByID", func(tx tollgate.Tx) error { _, err := tx.AccountByID(ctx, missing.ID, false); return err }},
		{"AccountByIDForUpdate", func(tx tollgate.Tx) error { _, err := tx.AccountByID(ctx, missing.ID, true); return err }},
		{"AccountByName", func(tx tollgate.Tx) error { _, err := tx.AccountByName(ctx, "nobody", false); return err }},
		{"AccountByNameForUpdate", func(tx tollgate.Tx) error { _, err := tx.AccountByName(ctx, "nobody", true); return err }},
		{"AccountByKeyHash", func(tx tollgate.Tx) error { _, err := tx.AccountByKeyHash(ctx, txRandom(32)); return err }},
		{"AccountByNilKeyHash", func(tx tollgate.Tx) error { _, err := tx.AccountByKeyHash(ctx, nil); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/View", func(t *testing.T) {
			txWantCode(t, tc.name, s.View(ctx, tc.fn), tollgate.ENOTFOUND)
		})
		t.Run(tc.name+"/Update", func(t *testing.T) {
			txWantCode(t, tc.name, s.Update(ctx, tc.fn), tollgate.ENOTFOUND)
		})
	}
	writes := []struct {
		name string
		fn   func(tx tollgate.Tx) error
	}{
		{"UpdateAccount", func(tx tollgate.Tx) error { return tx.UpdateAccount(ctx, missing) }},
		{"SetAccountKey", func(tx tollgate.Tx) error { return tx.SetAccountKey(ctx, missing.ID, txRandom(32)) }},
	}
	for _, tc := range writes {
		t.Run(tc.name, func(t *testing.T) {
			txWantCode(t, tc.name, s.Update(ctx, tc.fn), tollgate.ENOTFOUND)
		})
	}
}

func txAccountUpdate(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	txInsertAccount(t, s, "bystander")
	created := a.CreatedAt

	tests := []struct {
		name   string
		change func(a *tollgate.Account)
	}{
		{"Status", func(a *tollgate.Account) { a.Status = tollgate.AccountSuspended }},
		{"PackageAccess", func(a *tollgate.Account) { a.PackageAccess = tollgate.PackageAccessGranted }},
		{"Subscription", func(a *tollgate.Account) {
			a.Subscription = tollgate.Subscription{Images: []string{"team-a/*", "nginx"}, Packages: []string{"*"}}
		}},
		{"SubscriptionEmptied", func(a *tollgate.Account) { a.Subscription = tollgate.Subscription{} }},
		{"Name", func(a *tollgate.Account) { a.Name = "acme-renamed" }},
		{"CreatedAtIsNotWritten", func(a *tollgate.Account) { a.CreatedAt = txT0.Add(-24 * time.Hour) }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := *a
			tc.change(&want)
			want.UpdatedAt = txT0.Add(time.Duration(i+1) * time.Minute)
			txUpdate(t, s, func(tx tollgate.Tx) error {
				if _, err := tx.AccountByID(ctx, a.ID, true); err != nil {
					return err
				}
				return tx.UpdateAccount(ctx, &want)
			})
			want.CreatedAt = created
			var got *tollgate.Account
			txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.AccountByID(ctx, a.ID, false); return err })
			txWantAccount(t, "after UpdateAccount", got, &want)
			*a = want
		})
	}
	var other *tollgate.Account
	txView(t, s, func(tx tollgate.Tx) (err error) { other, err = tx.AccountByName(ctx, "bystander", false); return err })
	if other.Status != tollgate.AccountActive || other.UpdatedAt.Compare(txT0) != 0 {
		t.Fatalf("UpdateAccount changed another account: %s", txFmtAccount(other))
	}
}

func txAccountRenameConflict(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	txInsertAccount(t, s, "taken")
	renamed := *a
	renamed.Name = "taken"
	err := s.Update(ctx, func(tx tollgate.Tx) error { return tx.UpdateAccount(ctx, &renamed) })
	txWantCode(t, "UpdateAccount to a taken name", err, tollgate.ECONFLICT)
	var got *tollgate.Account
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.AccountByID(ctx, a.ID, false); return err })
	txWantAccount(t, "after failed rename", got, a)
}

func txAccountEmptySubscription(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	tests := []struct {
		name string
		sub  tollgate.Subscription
	}{
		{"nil", tollgate.Subscription{}},
		{"empty", tollgate.Subscription{Images: []string{}, Packages: []string{}}},
		{"images-only", tollgate.Subscription{Images: []string{"**"}}},
		{"packages-only", tollgate.Subscription{Packages: []string{}, Images: nil}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := txNewAccount(fmt.Sprintf("acct-%d", i))
			a.Subscription = tc.sub
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertAccount(ctx, a) })
			var got *tollgate.Account
			txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.AccountByID(ctx, a.ID, false); return err })
			// Documented choice of both stores: an empty list reads back nil.
			for _, l := range []struct {
				name      string
				got, sent []string
			}{{"Images", got.Subscription.Images, tc.sub.Images}, {"Packages", got.Subscription.Packages, tc.sub.Packages}} {
				if len(l.sent) == 0 && l.got != nil {
					t.Errorf("%s = %#v, want nil for an empty list", l.name, l.got)
				}
				if !slices.Equal(l.got, l.sent) {
					t.Errorf("%s = %#v, want %#v", l.name, l.got, l.sent)
				}
			}
		})
	}
}

func txAccountList(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	var got []*tollgate.Account
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListAccounts(ctx); return err })
	if len(got) != 0 {
		t.Fatalf("empty store: ListAccounts = %d accounts, want 0", len(got))
	}
	names := []string{"m", "b", "z9", "a-1", "a", "0day", "a1"}
	byName := map[string]*tollgate.Account{}
	for _, n := range names {
		byName[n] = txInsertAccount(t, s, n)
	}
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListAccounts(ctx); return err })
	want := slices.Clone(names)
	slices.Sort(want) // byte order
	var gotNames []string
	for _, a := range got {
		gotNames = append(gotNames, a.Name)
		txWantAccount(t, "ListAccounts entry", a, byName[a.Name])
	}
	if !slices.Equal(gotNames, want) {
		t.Fatalf("ListAccounts order = %q, want %q", gotNames, want)
	}
}

func txAccountKeys(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "beta")
	k1, k2, kb := txRandom(32), txRandom(32), txRandom(32)

	lookup := func(t *testing.T, key []byte) (*tollgate.Account, error) {
		t.Helper()
		var got *tollgate.Account
		err := s.View(ctx, func(tx tollgate.Tx) (err error) { got, err = tx.AccountByKeyHash(ctx, key); return err })
		return got, err
	}
	setKey := func(acct *tollgate.Account, key []byte) error {
		return s.Update(ctx, func(tx tollgate.Tx) error { return tx.SetAccountKey(ctx, acct.ID, key) })
	}
	wantOwner := func(t *testing.T, key []byte, want *tollgate.Account) {
		t.Helper()
		got, err := lookup(t, key)
		if err != nil {
			t.Fatalf("AccountByKeyHash: %v", err)
		}
		txWantAccount(t, "AccountByKeyHash", got, want)
	}

	if err := setKey(a, k1); err != nil {
		t.Fatal(err)
	}
	wantOwner(t, k1, a)
	if err := setKey(b, kb); err != nil {
		t.Fatal(err)
	}
	wantOwner(t, kb, b)
	wantOwner(t, k1, a)

	if err := setKey(a, k2); err != nil {
		t.Fatal(err)
	}
	_, err := lookup(t, k1)
	txWantCode(t, "old key after replace", err, tollgate.ENOTFOUND)
	wantOwner(t, k2, a)

	txWantCode(t, "SetAccountKey with another account's key", setKey(b, k2), tollgate.ECONFLICT)
	wantOwner(t, k2, a)
	wantOwner(t, kb, b)

	if err := setKey(a, nil); err != nil {
		t.Fatalf("clear key: %v", err)
	}
	_, err = lookup(t, k2)
	txWantCode(t, "key after clearing", err, tollgate.ENOTFOUND)
	_, err = lookup(t, nil)
	txWantCode(t, "nil key", err, tollgate.ENOTFOUND)

	var got *tollgate.Account
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.AccountByID(ctx, a.ID, false); return err })
	txWantAccount(t, "SetAccountKey leaves the account's fields alone", got, a)
}

// --- tokens ----------------------------------------------------------------

func txTokenInsertAndGet(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	other := txInsertAccount(t, s, "other")
	txInsertToken(t, s, other, "decoy", txT0)

	full := txNewToken(a, "ci", txT0.Add(time.Second))
	full.Description = "pulls for CI\nsecond line"
	full.Scope = tollgate.ScopeImages | tollgate.ScopePackages
	full.ExpiresAt = txTime(30 * 24 * time.Hour)
	full.UpdatedAt = txT0.Add(2 * time.Second)
	full.LastUsedAt = txTime(3 * time.Second)
	full.LastUsedIP = "2001:db8::1"
	full.LastUsedUA = "containerd/2.0"
	full.Pulls = 42
	bare := txNewToken(a, "bare", txT0.Add(2*time.Second))
	bare.Scope = tollgate.ScopePackages

	for _, st := range []txStoredToken{full, bare} {
		txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
	}
	for _, st := range []txStoredToken{full, bare} {
		t.Run(st.Name, func(t *testing.T) {
			// AccountName is filled from the account, whatever the caller
			// set: clear it in the input to prove it.
			want := *st.Token
			st.Token.AccountName = ""
			defer func() { st.Token.AccountName = want.AccountName }()
			txView(t, s, func(tx tollgate.Tx) error {
				got, err := tx.TokenByID(ctx, st.ID)
				if err != nil {
					return err
				}
				txWantToken(t, "TokenByID", got, &want)
				got, err = tx.TokenByHash(ctx, st.hash)
				if err != nil {
					return err
				}
				txWantToken(t, "TokenByHash", got, &want)
				return nil
			})
			txUpdate(t, s, func(tx tollgate.Tx) error {
				got, err := tx.TokenByHash(ctx, st.hash)
				if err != nil {
					return err
				}
				txWantToken(t, "TokenByHash in Update", got, &want)
				return nil
			})
		})
	}
	var list []*tollgate.Token
	txView(t, s, func(tx tollgate.Tx) (err error) { list, err = tx.ListTokens(ctx, a.ID); return err })
	if len(list) != 2 {
		t.Fatalf("ListTokens = %q, want 2 tokens", txTokenIDs(list))
	}
	txWantToken(t, "ListTokens[0]", list[0], full.Token)
	txWantToken(t, "ListTokens[1]", list[1], bare.Token)
}

func txTokenSealed(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	tests := []struct {
		name   string
		sealed []byte
	}{
		{"random", txRandom(60)},
		{"all-bytes", func() []byte {
			b := make([]byte, 256)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}()},
		{"zero-bytes", make([]byte, 40)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := txNewToken(a, tc.name, txT0)
			st.sealed = tc.sealed
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
			for _, run := range []func(context.Context, func(tollgate.Tx) error) error{s.View, s.Update} {
				var got []byte
				if err := run(ctx, func(tx tollgate.Tx) (err error) { got, err = tx.SealedSecret(ctx, st.ID); return err }); err != nil {
					t.Fatalf("SealedSecret: %v", err)
				}
				if !bytes.Equal(got, tc.sealed) {
					t.Fatalf("SealedSecret = %x, want %x", got, tc.sealed)
				}
			}
		})
	}
	t.Run("Keys", func(t *testing.T) {
		// What the Service does: seal under the token id, open what the
		// store gives back.
		keys, err := tollgate.NewKeys(txRandom(tollgate.KeySize), txRandom(tollgate.KeySize))
		if err != nil {
			t.Fatal(err)
		}
		secret := tollgate.NewSecret(tollgate.TokenPrefix)
		st := txNewToken(a, "sealed", txT0)
		st.hash, st.sealed = keys.Hash(secret), keys.Seal(secret, st.ID)
		txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
		var sealed []byte
		txView(t, s, func(tx tollgate.Tx) (err error) { sealed, err = tx.SealedSecret(ctx, st.ID); return err })
		opened, err := keys.Open(sealed, st.ID)
		if err != nil {
			t.Fatalf("Open(SealedSecret): %v", err)
		}
		if opened.Reveal() != secret.Reveal() {
			t.Fatal("opened secret differs from the one sealed")
		}
	})
}

func txTokenDuplicate(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	first := txInsertToken(t, s, a, "first", txT0)

	sameHash := txNewToken(a, "same-hash", txT0)
	sameHash.hash = first.hash
	sameID := txNewToken(a, "same-id", txT0)
	sameID.ID = first.ID
	for _, tc := range []struct {
		name string
		st   txStoredToken
	}{{"SameHash", sameHash}, {"SameID", sameID}} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, tc.st.Token, tc.st.hash, tc.st.sealed) })
			txWantCode(t, "InsertToken", err, tollgate.ECONFLICT)
			// Secrets (and their hashes) never show in errors: they are logged.
			for _, form := range []string{
				hex.EncodeToString(tc.st.hash), strings.ToUpper(hex.EncodeToString(tc.st.hash)),
				base64.StdEncoding.EncodeToString(tc.st.hash), string(tc.st.hash),
				hex.EncodeToString(tc.st.sealed), string(tc.st.sealed),
			} {
				if strings.Contains(err.Error(), form) {
					t.Fatalf("error %q contains the secret hash or sealed secret", err)
				}
			}
		})
	}
	var n int
	txView(t, s, func(tx tollgate.Tx) (err error) { n, err = tx.CountActiveTokens(ctx, a.ID); return err })
	if n != 1 {
		t.Fatalf("after conflicts: %d tokens, want 1", n)
	}
	txWantToken(t, "first token after conflicts", txGetToken(t, s, first.ID), first.Token)
}

func txTokenUnknownAccount(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	st := txNewToken(txNewAccount("ghost"), "orphan", txT0)
	err := s.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
	txWantCode(t, "InsertToken for a missing account", err, tollgate.ENOTFOUND)
}

func txTokenNotFound(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	txInsertToken(t, s, a, "present", txT0)
	missing := txNewToken(a, "missing", txT0)
	reads := []struct {
		name string
		fn   func(tx tollgate.Tx) error
	}{
		{"TokenByID", func(tx tollgate.Tx) error { _, err := tx.TokenByID(ctx, missing.ID); return err }},
		{"TokenByHash", func(tx tollgate.Tx) error { _, err := tx.TokenByHash(ctx, missing.hash); return err }},
		{"TokenByNilHash", func(tx tollgate.Tx) error { _, err := tx.TokenByHash(ctx, nil); return err }},
		{"SealedSecret", func(tx tollgate.Tx) error { _, err := tx.SealedSecret(ctx, missing.ID); return err }},
	}
	for _, tc := range reads {
		t.Run(tc.name+"/View", func(t *testing.T) { txWantCode(t, tc.name, s.View(ctx, tc.fn), tollgate.ENOTFOUND) })
		t.Run(tc.name+"/Update", func(t *testing.T) { txWantCode(t, tc.name, s.Update(ctx, tc.fn), tollgate.ENOTFOUND) })
	}
	t.Run("UpdateToken", func(t *testing.T) {
		err := s.Update(ctx, func(tx tollgate.Tx) error { return tx.UpdateToken(ctx, missing.Token) })
		txWantCode(t, "UpdateToken", err, tollgate.ENOTFOUND)
	})
}

func txTokenUpdate(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "beta")
	st := txNewToken(a, "original", txT0)
	st.LastUsedAt, st.LastUsedIP, st.LastUsedUA, st.Pulls = txTime(time.Minute), "192.0.2.1", "docker/27", 7
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
	bystander := txInsertToken(t, s, a, "bystander", txT0)

	tests := []struct {
		name   string
		change func(tok *tollgate.Token)
	}{
		{"Name", func(tok *tollgate.Token) { tok.Name = "renamed" }},
		{"Description", func(tok *tollgate.Token) { tok.Description = "now with a description" }},
		{"Scope", func(tok *tollgate.Token) { tok.Scope = tollgate.ScopeImages | tollgate.ScopePackages }},
		{"ExpirySet", func(tok *tollgate.Token) { tok.ExpiresAt = txTime(48 * time.Hour) }},
		{"ExpiryMoved", func(tok *tollgate.Token) { tok.ExpiresAt = txTime(72*time.Hour + time.Microsecond) }},
		{"ExpiryCleared", func(tok *tollgate.Token) { tok.ExpiresAt = nil }},
		{"DescriptionCleared", func(tok *tollgate.Token) { tok.Description = "" }},
		{"PolicySet", func(tok *tollgate.Token) {
			ns, _ := tollgate.ParseNetworks("networks", []string{"10.0.0.0/8", "2001:db8::/32"})
			tok.Policy = tollgate.TokenPolicy{Images: []string{"team-a/**", "nginx"}, Packages: []string{"os"}, Networks: ns,
				ValidFrom: txTime(2 * time.Hour), PausedAt: txTime(3*time.Hour + time.Microsecond)}
		}},
		{"PolicyCleared", func(tok *tollgate.Token) { tok.Policy = tollgate.TokenPolicy{} }},
		{"Revoked", func(tok *tollgate.Token) { tok.RevokedAt = txTime(time.Hour) }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := *st.Token
			tc.change(&want)
			want.UpdatedAt = txT0.Add(time.Duration(i+1) * time.Second)
			// Fields UpdateToken does not own: whatever the caller passes,
			// the stored values stay.
			in := want
			in.AccountID, in.AccountName = b.ID, b.Name
			in.CreatedAt = txT0.Add(-time.Hour)
			in.LastUsedAt, in.LastUsedIP, in.LastUsedUA, in.Pulls = nil, "", "", 0
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.UpdateToken(ctx, &in) })
			txWantToken(t, "after UpdateToken", txGetToken(t, s, st.ID), &want)
			*st.Token = want
		})
	}
	txWantToken(t, "other token", txGetToken(t, s, bystander.ID), bystander.Token)
	var sealed []byte
	txView(t, s, func(tx tollgate.Tx) (err error) { sealed, err = tx.SealedSecret(ctx, st.ID); return err })
	if !bytes.Equal(sealed, st.sealed) {
		t.Fatal("UpdateToken changed the sealed secret")
	}
	var byHash *tollgate.Token
	txView(t, s, func(tx tollgate.Tx) (err error) { byHash, err = tx.TokenByHash(ctx, st.hash); return err })
	txWantToken(t, "TokenByHash after updates", byHash, st.Token)
}

func txTokenList(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "beta")
	empty := txInsertAccount(t, s, "empty")

	// Inserted out of creation order; three share one instant and keep
	// their insertion order.
	late := txInsertToken(t, s, a, "late", txT0.Add(time.Hour))
	early := txInsertToken(t, s, a, "early", txT0.Add(-time.Hour))
	txInsertToken(t, s, b, "other-account", txT0)
	same1 := txInsertToken(t, s, a, "same-1", txT0)
	same2 := txInsertToken(t, s, a, "same-2", txT0)
	same3 := txInsertToken(t, s, a, "same-3", txT0)
	micro := txInsertToken(t, s, a, "one-microsecond-later", txT0.Add(time.Microsecond))
	revoked := txNewToken(a, "revoked", txT0.Add(30*time.Minute))
	revoked.RevokedAt = txTime(40 * time.Minute)
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, revoked.Token, revoked.hash, revoked.sealed) })

	var got []*tollgate.Token
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListTokens(ctx, a.ID); return err })
	want := []*tollgate.Token{early.Token, same1.Token, same2.Token, same3.Token, micro.Token, revoked.Token, late.Token}
	if !slices.Equal(txTokenIDs(got), txTokenIDs(want)) {
		var gotNames []string
		for _, tok := range got {
			gotNames = append(gotNames, tok.Name)
		}
		t.Fatalf("ListTokens order = %q, want early, same-1..3, one-microsecond-later, revoked, late", gotNames)
	}
	for i := range want {
		txWantToken(t, "ListTokens entry", got[i], want[i])
	}

	for _, acct := range []string{empty.ID, "acct_missing"} {
		txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListTokens(ctx, acct); return err })
		if len(got) != 0 {
			t.Fatalf("ListTokens(%s) = %q, want none", acct, txTokenIDs(got))
		}
	}
}

func txTokenCount(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "beta")
	var toks []txStoredToken
	for i := range 4 {
		toks = append(toks, txInsertToken(t, s, a, fmt.Sprintf("t%d", i), txT0))
	}
	txInsertToken(t, s, b, "b0", txT0)
	expired := txNewToken(a, "expired", txT0)
	expired.ExpiresAt = txTime(-time.Hour) // expired still counts: only revocation frees a slot
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, expired.Token, expired.hash, expired.sealed) })

	count := func(id string) int {
		t.Helper()
		var n int
		txView(t, s, func(tx tollgate.Tx) (err error) { n, err = tx.CountActiveTokens(ctx, id); return err })
		return n
	}
	revoke := func(st txStoredToken) {
		t.Helper()
		st.RevokedAt = txTime(time.Hour)
		txUpdate(t, s, func(tx tollgate.Tx) error { return tx.UpdateToken(ctx, st.Token) })
	}
	tests := []struct {
		name string
		do   func()
		a, b int
	}{
		{"Initial", func() {}, 5, 1},
		{"OneRevoked", func() { revoke(toks[0]) }, 4, 1},
		{"TwoRevoked", func() { revoke(toks[1]) }, 3, 1},
		{"Unrevoked", func() {
			toks[1].RevokedAt = nil
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.UpdateToken(ctx, toks[1].Token) })
		}, 4, 1},
		{"RevokedInsert", func() {
			st := txNewToken(a, "born-revoked", txT0)
			st.RevokedAt = txTime(0)
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
		}, 4, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			if n := count(a.ID); n != tc.a {
				t.Errorf("CountActiveTokens(acme) = %d, want %d", n, tc.a)
			}
			if n := count(b.ID); n != tc.b {
				t.Errorf("CountActiveTokens(beta) = %d, want %d", n, tc.b)
			}
		})
	}
	if n := count("acct_missing"); n != 0 {
		t.Fatalf("CountActiveTokens(missing) = %d, want 0", n)
	}
}

func txTokenTimes(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	east := time.FixedZone("east", 14*3600)
	west := time.FixedZone("west", -(9*3600 + 30*60))
	tests := []struct {
		name    string
		created time.Time
		expires *time.Time
	}{
		{"UTCWithMicroseconds", txT0, txTime(time.Hour)},
		{"NoExpiry", txT0, nil},
		{"OneMicrosecond", time.Date(2026, 1, 1, 0, 0, 0, 1000, time.UTC), txTime(time.Microsecond)},
		{"LastMicrosecondOfSecond", time.Date(2026, 1, 1, 0, 0, 0, 999999000, time.UTC), txTime(-time.Microsecond)},
		{"FixedZoneEast", txT0.In(east), func() *time.Time { v := txT0.Add(time.Hour).In(east); return &v }()},
		{"FixedZoneWest", txT0.In(west), func() *time.Time { v := txT0.Add(time.Hour).In(west); return &v }()},
		{"Local", txT0.Local(), func() *time.Time { v := txT0.Local(); return &v }()},
		{"UnixEpoch", time.Unix(0, 0).UTC(), func() *time.Time { v := time.Unix(0, 0).UTC(); return &v }()},
		{"BeforeEpoch", time.Date(1969, 7, 20, 20, 17, 40, 654321000, time.UTC), nil},
		{"FarFuture", txT0, func() *time.Time { v := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC); return &v }()},
		{"DateEndOfDay", txT0, func() *time.Time {
			e, err := tollgate.ParseExpiry("2027-01-31")
			if err != nil {
				panic(err)
			}
			return &e.At
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := txNewToken(a, tc.name, tc.created)
			st.UpdatedAt = tc.created.Add(time.Microsecond)
			st.ExpiresAt = tc.expires
			st.LastUsedAt = txUTCPtr(tc.expires)
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
			got := txGetToken(t, s, st.ID)
			txWantToken(t, "TokenByID", got, st.Token)
			for _, tm := range []*time.Time{&got.CreatedAt, &got.UpdatedAt, got.ExpiresAt, got.LastUsedAt} {
				if tm != nil && tm.Location() != time.UTC {
					t.Fatalf("time %v read back in %v, want UTC", tm, tm.Location())
				}
			}
			if (got.ExpiresAt == nil) != (tc.expires == nil) {
				t.Fatalf("ExpiresAt = %v, want %v", got.ExpiresAt, tc.expires)
			}
		})
	}
}

// txMetacharacters are strings that break SQL built by concatenation or
// matched with LIKE; they must come back byte for byte.
var txMetacharacters = []string{
	`it's`,
	`"double" quotes`,
	`'; DROP TABLE tokens; --`,
	`Robert'); DROP TABLE accounts;--`,
	`1' OR '1'='1`,
	`100% of _all_ pulls`,
	`%`,
	`_`,
	`back\slash \\ \' \"`,
	`$1 $$ ? ?1 :name @p`,
	"tab\tand\nnewline\r\n",
	`/* comment */ -- trailing`,
	"日本語のトークン 🚀 ünïcödé",
	`{"json": [1, 2]}`,
	` leading and trailing spaces `,
}

func txTokenMetacharacters(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	var ids []string
	for i, v := range txMetacharacters {
		t.Run(fmt.Sprintf("%02d", i), func(t *testing.T) {
			st := txNewToken(a, v, txT0.Add(time.Duration(i)*time.Second))
			st.Description = "description: " + v
			st.LastUsedUA = v
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, st.Token, st.hash, st.sealed) })
			ids = append(ids, st.ID)
			got := txGetToken(t, s, st.ID)
			if got.Name != v || got.Description != st.Description || got.LastUsedUA != v {
				t.Fatalf("round trip of %q: name %q, description %q, ua %q", v, got.Name, got.Description, got.LastUsedUA)
			}
			// The same string as an edit.
			st.Name, st.Description = "edited "+v, v
			txUpdate(t, s, func(tx tollgate.Tx) error { return tx.UpdateToken(ctx, st.Token) })
			got = txGetToken(t, s, st.ID)
			if got.Name != st.Name || got.Description != v {
				t.Fatalf("UpdateToken round trip of %q: name %q, description %q", v, got.Name, got.Description)
			}
		})
	}
	// Nothing was dropped and nothing leaked between rows.
	var list []*tollgate.Token
	var n int
	var accounts []*tollgate.Account
	txView(t, s, func(tx tollgate.Tx) (err error) {
		if list, err = tx.ListTokens(ctx, a.ID); err != nil {
			return err
		}
		if n, err = tx.CountActiveTokens(ctx, a.ID); err != nil {
			return err
		}
		accounts, err = tx.ListAccounts(ctx)
		return err
	})
	if !slices.Equal(txTokenIDs(list), ids) || n != len(txMetacharacters) || len(accounts) != 1 {
		t.Fatalf("after metacharacters: %d tokens listed, %d counted, %d accounts; want %d, %d, 1",
			len(list), n, len(accounts), len(txMetacharacters), len(txMetacharacters))
	}
	for i, tok := range list {
		if tok.Name != "edited "+txMetacharacters[i] || tok.Description != txMetacharacters[i] {
			t.Fatalf("ListTokens[%d]: name %q, description %q; want %q", i, tok.Name, tok.Description, txMetacharacters[i])
		}
	}

	// Audit text and account names go through parameters too.
	e := &tollgate.AuditEvent{AccountID: a.ID, Time: txT0, Actor: txMetacharacters[2], Action: txMetacharacters[5],
		Target: txMetacharacters[8], Changes: map[string]tollgate.Change{txMetacharacters[3]: {From: txMetacharacters[0], To: txMetacharacters[12]}}}
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertAudit(ctx, e) })
	var evs []*tollgate.AuditEvent
	txView(t, s, func(tx tollgate.Tx) (err error) { evs, err = tx.ListAudit(ctx, a.ID, tollgate.AuditPage{}); return err })
	if len(evs) != 1 || fmt.Sprint(*evs[0]) != fmt.Sprint(*e) {
		t.Fatalf("audit round trip:\n got  %+v\n want %+v", evs, e)
	}
	for _, name := range []string{`o'brien`, `a%`, `a_c`} {
		b := txInsertAccount(t, s, name)
		var got *tollgate.Account
		txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.AccountByName(ctx, name, false); return err })
		txWantAccount(t, "AccountByName("+name+")", got, b)
	}
	err := s.View(ctx, func(tx tollgate.Tx) error { _, err := tx.AccountByName(ctx, "abc", false); return err })
	txWantCode(t, `AccountByName("abc") with "a_c" and "a%" stored`, err, tollgate.ENOTFOUND)
}

// --- audit -----------------------------------------------------------------

func txAuditInsert(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	zone := time.FixedZone("x", -3*3600)
	events := []*tollgate.AuditEvent{
		{AccountID: a.ID, Time: txT0, Actor: "operator", Action: tollgate.ActionAccountCreated, Target: "acme"},
		{AccountID: a.ID, Time: txT0.Add(time.Microsecond).In(zone), Actor: "account:acme", Action: tollgate.ActionTokenEdited,
			Target: "tok_1", Changes: map[string]tollgate.Change{
				"name":    {From: "old", To: "new"},
				"expires": {From: "never", To: "2027-01-31T23:59:59Z"},
			}},
		{AccountID: a.ID, Time: txT0, Actor: "system", Action: tollgate.ActionTokenRevoked, Target: "tok_1",
			Changes: map[string]tollgate.Change{}},
		{AccountID: a.ID, Time: txT0.Add(time.Hour), Actor: "user:a@b", Action: tollgate.ActionTokenCreated, Target: "tok_2",
			Changes: map[string]tollgate.Change{"scope": {From: "", To: "images,packages"}}},
	}
	// One per transaction, then two in one transaction.
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertAudit(ctx, events[0]) })
	txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertAudit(ctx, events[1]) })
	txUpdate(t, s, func(tx tollgate.Tx) error {
		if err := tx.InsertAudit(ctx, events[2]); err != nil {
			return err
		}
		return tx.InsertAudit(ctx, events[3])
	})
	for i := 1; i < len(events); i++ {
		if events[i-1].ID <= 0 || events[i].ID <= events[i-1].ID {
			t.Fatalf("InsertAudit IDs in insertion order: %v; want positive and increasing", txAuditIDs(events))
		}
	}

	var got []*tollgate.AuditEvent
	txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListAudit(ctx, a.ID, tollgate.AuditPage{}); return err })
	if len(got) != len(events) {
		t.Fatalf("ListAudit = %d events, want %d", len(got), len(events))
	}
	for i, g := range got {
		w := *events[len(events)-1-i]
		w.Time = w.Time.UTC()
		if len(w.Changes) == 0 {
			w.Changes = nil // documented: no changes read back as nil
		}
		if g.Time.Location() != time.UTC {
			t.Errorf("event %d time in %v, want UTC", g.ID, g.Time.Location())
		}
		if gs, ws := fmt.Sprintf("%+v", *g), fmt.Sprintf("%+v", w); gs != ws {
			t.Errorf("ListAudit[%d]:\n got  %s\n want %s", i, gs, ws)
		}
	}
}

// txInsertAudits inserts n events for account, oldest first, each in its
// own transaction, and returns them.
func txInsertAudits(t *testing.T, s tollgate.Store, account string, n int) []*tollgate.AuditEvent {
	t.Helper()
	var evs []*tollgate.AuditEvent
	for i := range n {
		e := &tollgate.AuditEvent{AccountID: account, Time: txT0.Add(time.Duration(i) * time.Minute),
			Actor: "operator", Action: tollgate.ActionTokenCreated, Target: fmt.Sprintf("tok_%d", i)}
		txUpdate(t, s, func(tx tollgate.Tx) error { return tx.InsertAudit(t.Context(), e) })
		evs = append(evs, e)
	}
	return evs
}

func txAuditIDs(evs []*tollgate.AuditEvent) []int64 {
	var ids []int64
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

func txAuditPages(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "beta")
	// Interleave two accounts so that pages of one skip ids of the other.
	var evs []*tollgate.AuditEvent
	for range 5 {
		evs = append(evs, txInsertAudits(t, s, a.ID, 1)...)
		txInsertAudits(t, s, b.ID, 1)
	}
	e := func(i ...int) []int64 {
		var ids []int64
		for _, j := range i {
			ids = append(ids, evs[j].ID)
		}
		return ids
	}
	tests := []struct {
		name string
		page tollgate.AuditPage
		want []int64
	}{
		{"All", tollgate.AuditPage{}, e(4, 3, 2, 1, 0)},
		{"FirstPage", tollgate.AuditPage{Limit: 2}, e(4, 3)},
		{"SecondPage", tollgate.AuditPage{Before: evs[3].ID, Limit: 2}, e(2, 1)},
		{"LastPage", tollgate.AuditPage{Before: evs[1].ID, Limit: 2}, e(0)},
		{"PastTheEnd", tollgate.AuditPage{Before: evs[0].ID, Limit: 2}, nil},
		{"BeforeOnly", tollgate.AuditPage{Before: evs[2].ID}, e(1, 0)},
		{"LimitLargerThanAll", tollgate.AuditPage{Limit: 100}, e(4, 3, 2, 1, 0)},
		{"LimitOne", tollgate.AuditPage{Limit: 1}, e(4)},
		{"BeforeAnotherAccountsID", tollgate.AuditPage{Before: evs[3].ID + 1, Limit: 10}, e(3, 2, 1, 0)},
		{"BeforeBeyondNewest", tollgate.AuditPage{Before: evs[4].ID + 1000, Limit: 3}, e(4, 3, 2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []*tollgate.AuditEvent
			txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListAudit(ctx, a.ID, tc.page); return err })
			if !slices.Equal(txAuditIDs(got), tc.want) {
				t.Fatalf("ListAudit(%+v) = %v, want %v", tc.page, txAuditIDs(got), tc.want)
			}
			for _, g := range got {
				if g.AccountID != a.ID {
					t.Fatalf("ListAudit returned event %d of account %s", g.ID, g.AccountID)
				}
			}
		})
	}
	// Walking pages until an empty one visits every event once.
	var walked []int64
	page := tollgate.AuditPage{Limit: 2}
	for range 10 {
		var got []*tollgate.AuditEvent
		txView(t, s, func(tx tollgate.Tx) (err error) { got, err = tx.ListAudit(ctx, a.ID, page); return err })
		if len(got) == 0 {
			break
		}
		walked = append(walked, txAuditIDs(got)...)
		page.Before = got[len(got)-1].ID
	}
	if want := e(4, 3, 2, 1, 0); !slices.Equal(walked, want) {
		t.Fatalf("walking pages: %v, want %v", walked, want)
	}
}

func txAuditIsolation(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	b := txInsertAccount(t, s, "beta")
	ea := txInsertAudits(t, s, a.ID, 3)
	eb := txInsertAudits(t, s, b.ID, 2)
	for _, tc := range []struct {
		name    string
		account string
		want    []*tollgate.AuditEvent
	}{
		{"acme", a.ID, ea},
		{"beta", b.ID, eb},
		{"none", "acct_missing", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []*tollgate.AuditEvent
			txView(t, s, func(tx tollgate.Tx) (err error) {
				got, err = tx.ListAudit(ctx, tc.account, tollgate.AuditPage{Limit: 10})
				return err
			})
			want := slices.Clone(tc.want)
			slices.Reverse(want)
			if !slices.Equal(txAuditIDs(got), txAuditIDs(want)) {
				t.Fatalf("ListAudit(%s) = %v, want %v", tc.name, txAuditIDs(got), txAuditIDs(want))
			}
		})
	}
}

// --- transactions ----------------------------------------------------------

// txWriteEverything writes one of each kind of row, all named "doomed".
func txWriteEverything(ctx context.Context, tx tollgate.Tx, existing *tollgate.Account, existingTok *tollgate.Token) error {
	a := txNewAccount("doomed")
	if err := tx.InsertAccount(ctx, a); err != nil {
		return err
	}
	st := txNewToken(a, "doomed", txT0)
	if err := tx.InsertToken(ctx, st.Token, st.hash, st.sealed); err != nil {
		return err
	}
	if err := tx.InsertAudit(ctx, &tollgate.AuditEvent{AccountID: existing.ID, Time: txT0, Actor: "x", Action: "doomed", Target: "x"}); err != nil {
		return err
	}
	changed := *existing
	changed.Status, changed.Name = tollgate.AccountSuspended, "doomed-rename"
	if err := tx.UpdateAccount(ctx, &changed); err != nil {
		return err
	}
	if err := tx.SetAccountKey(ctx, existing.ID, []byte("doomed-key")); err != nil {
		return err
	}
	tok := *existingTok
	tok.Name, tok.RevokedAt = "doomed", txTime(0)
	return tx.UpdateToken(ctx, &tok)
}

// txWantNothingWritten checks that txWriteEverything left no trace.
func txWantNothingWritten(t *testing.T, s tollgate.Store, a *tollgate.Account, tok *tollgate.Token) {
	t.Helper()
	ctx := t.Context()
	txView(t, s, func(tx tollgate.Tx) error {
		if _, err := tx.AccountByName(ctx, "doomed", false); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
			t.Errorf("inserted account survived: %v", err)
		}
		got, err := tx.AccountByID(ctx, a.ID, false)
		if err != nil {
			return err
		}
		txWantAccount(t, "updated account", got, a)
		if _, err := tx.AccountByKeyHash(ctx, []byte("doomed-key")); tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
			t.Errorf("account key survived: %v", err)
		}
		gotTok, err := tx.TokenByID(ctx, tok.ID)
		if err != nil {
			return err
		}
		txWantToken(t, "updated token", gotTok, tok)
		if n, err := tx.CountActiveTokens(ctx, a.ID); err != nil || n != 1 {
			t.Errorf("CountActiveTokens = %d, %v; want 1", n, err)
		}
		evs, err := tx.ListAudit(ctx, a.ID, tollgate.AuditPage{})
		if err != nil {
			return err
		}
		if len(evs) != 0 {
			t.Errorf("audit events survived: %d", len(evs))
		}
		all, err := tx.ListAccounts(ctx)
		if err != nil {
			return err
		}
		if len(all) != 1 {
			t.Errorf("%d accounts, want 1", len(all))
		}
		return nil
	})
}

func txUpdateRollback(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "keep", txT0)
	sentinel := errors.New("boom")
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"PlainError", sentinel, tollgate.EINTERNAL},
		{"WrappedError", fmt.Errorf("step 3: %w", sentinel), tollgate.EINTERNAL},
		{"LimitError", tollgate.Errorf(tollgate.ELIMIT, "too many tokens"), tollgate.ELIMIT},
		{"FieldError", tollgate.FieldError("name", "bad"), tollgate.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Update(ctx, func(tx tollgate.Tx) error {
				if err := txWriteEverything(ctx, tx, a, tok.Token); err != nil {
					t.Fatalf("writes before the error: %v", err)
				}
				return tc.err
			})
			if !errors.Is(err, tc.err) {
				t.Fatalf("Update returned %v, want fn's error %v", err, tc.err)
			}
			txWantCode(t, "Update", err, tc.code)
			if tollgate.ErrorField(err) != tollgate.ErrorField(tc.err) {
				t.Fatalf("Update lost the error's field: %v", err)
			}
			txWantNothingWritten(t, s, a, tok.Token)
		})
	}
}

func txUpdatePanic(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "keep", txT0)
	func() {
		defer func() {
			if p := recover(); p != "kaboom" {
				t.Fatalf("recovered %v, want the panic of fn", p)
			}
		}()
		s.Update(ctx, func(tx tollgate.Tx) error {
			if err := txWriteEverything(ctx, tx, a, tok.Token); err != nil {
				t.Fatalf("writes before the panic: %v", err)
			}
			panic("kaboom")
		})
	}()
	txWantNothingWritten(t, s, a, tok.Token)
	// The store is still usable: a panic must not keep a connection or a
	// lock (SQLite's single writer would otherwise wait forever).
	done := make(chan error, 1)
	go func() {
		done <- s.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertAccount(ctx, txNewAccount("after-panic")) })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Update after a panic: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Update after a panic did not return within 30s: lock or connection leaked")
	}
}

func txUpdateAfterConflict(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	first := txInsertToken(t, s, a, "first", txT0)
	// A Service may meet ECONFLICT and carry on in the same transaction
	// (e.g. retry with a new id); the failed statement alone is undone.
	var b *tollgate.Account
	txUpdate(t, s, func(tx tollgate.Tx) error {
		txWantCode(t, "InsertAccount duplicate", tx.InsertAccount(ctx, txNewAccount("acme")), tollgate.ECONFLICT)
		b = txNewAccount("beta")
		if err := tx.InsertAccount(ctx, b); err != nil {
			return fmt.Errorf("insert after conflict: %w", err)
		}
		dup := txNewToken(b, "dup", txT0)
		dup.hash = first.hash
		txWantCode(t, "InsertToken duplicate hash", tx.InsertToken(ctx, dup.Token, dup.hash, dup.sealed), tollgate.ECONFLICT)
		renamed := *b
		renamed.Name = "acme"
		txWantCode(t, "UpdateAccount to taken name", tx.UpdateAccount(ctx, &renamed), tollgate.ECONFLICT)
		txWantCode(t, "SetAccountKey missing", tx.SetAccountKey(ctx, "acct_missing", txRandom(32)), tollgate.ENOTFOUND)
		orphan := txNewToken(txNewAccount("ghost"), "orphan", txT0)
		txWantCode(t, "InsertToken orphan", tx.InsertToken(ctx, orphan.Token, orphan.hash, orphan.sealed), tollgate.ENOTFOUND)
		ok := txNewToken(b, "ok", txT0)
		if err := tx.InsertToken(ctx, ok.Token, ok.hash, ok.sealed); err != nil {
			return fmt.Errorf("insert token after conflicts: %w", err)
		}
		return tx.InsertAudit(ctx, &tollgate.AuditEvent{AccountID: b.ID, Time: txT0, Actor: "x", Action: "y", Target: "z"})
	})
	txView(t, s, func(tx tollgate.Tx) error {
		got, err := tx.AccountByName(ctx, "beta", false)
		if err != nil {
			return err
		}
		txWantAccount(t, "account inserted after a conflict", got, b)
		toks, err := tx.ListTokens(ctx, b.ID)
		if err != nil {
			return err
		}
		if len(toks) != 1 || toks[0].Name != "ok" {
			t.Errorf("tokens of beta = %q, want [ok]", txTokenIDs(toks))
		}
		evs, err := tx.ListAudit(ctx, b.ID, tollgate.AuditPage{})
		if len(evs) != 1 {
			t.Errorf("audit of beta: %d events, want 1", len(evs))
		}
		return err
	})
}

func txUpdateCanceled(t *testing.T, s tollgate.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	err := s.Update(ctx, func(tx tollgate.Tx) error {
		called = true
		return tx.InsertAccount(ctx, txNewAccount("canceled"))
	})
	if err == nil {
		t.Fatalf("Update with a canceled context succeeded (fn called: %v)", called)
	}
	err = s.View(t.Context(), func(tx tollgate.Tx) error { _, err := tx.AccountByName(t.Context(), "canceled", false); return err })
	txWantCode(t, "account written under a canceled context", err, tollgate.ENOTFOUND)

	// Canceled midway, after a write: nothing stays.
	ctx, cancel = context.WithCancel(t.Context())
	err = s.Update(ctx, func(tx tollgate.Tx) error {
		if err := tx.InsertAccount(ctx, txNewAccount("midway")); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if err == nil {
		// A store may commit if it got there first; then the row is there.
		txView(t, s, func(tx tollgate.Tx) error { _, err := tx.AccountByName(t.Context(), "midway", false); return err })
	} else {
		err = s.View(t.Context(), func(tx tollgate.Tx) error { _, err := tx.AccountByName(t.Context(), "midway", false); return err })
		txWantCode(t, "account of a failed Update", err, tollgate.ENOTFOUND)
	}
	// And the store works afterwards.
	txInsertAccount(t, s, "after")
}

func txViewReadOnly(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	tok := txInsertToken(t, s, a, "keep", txT0)
	err := s.View(ctx, func(tx tollgate.Tx) error { return txWriteEverything(ctx, tx, a, tok.Token) })
	if err == nil {
		t.Fatal("View allowed writes")
	}
	txWantNothingWritten(t, s, a, tok.Token)
}

// --- usage -----------------------------------------------------------------

func txRecordUsage(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	t1 := txInsertToken(t, s, a, "one", txT0)
	t2 := txInsertToken(t, s, a, "two", txT0)
	idle := txInsertToken(t, s, a, "idle", txT0)

	at := func(d time.Duration) time.Time { return txT0.Add(d) }
	tests := []struct {
		name  string
		usage []tollgate.TokenUsage
		// want after the call, for t1 and t2
		want1, want2 tollgate.Token
	}{
		{"First", []tollgate.TokenUsage{
			{TokenID: t1.ID, At: at(time.Minute), IP: "192.0.2.1", UA: "docker/27", Pulls: 3},
		}, tollgate.Token{LastUsedAt: txTime(time.Minute), LastUsedIP: "192.0.2.1", LastUsedUA: "docker/27", Pulls: 3},
			tollgate.Token{}},
		{"AddsPulls", []tollgate.TokenUsage{
			{TokenID: t1.ID, At: at(2 * time.Minute), IP: "192.0.2.2", UA: "containerd/2", Pulls: 2},
			{TokenID: t2.ID, At: at(time.Minute).In(time.FixedZone("z", 3600)), IP: "2001:db8::2", UA: "apk", Pulls: 1},
		}, tollgate.Token{LastUsedAt: txTime(2 * time.Minute), LastUsedIP: "192.0.2.2", LastUsedUA: "containerd/2", Pulls: 5},
			tollgate.Token{LastUsedAt: txTime(time.Minute), LastUsedIP: "2001:db8::2", LastUsedUA: "apk", Pulls: 1}},
		{"UnknownIDsIgnored", []tollgate.TokenUsage{
			{TokenID: "tok_missing", At: at(time.Hour), IP: "x", UA: "x", Pulls: 100},
			{TokenID: t2.ID, At: at(3 * time.Minute), IP: "198.51.100.1", UA: "apt", Pulls: 4},
		}, tollgate.Token{LastUsedAt: txTime(2 * time.Minute), LastUsedIP: "192.0.2.2", LastUsedUA: "containerd/2", Pulls: 5},
			tollgate.Token{LastUsedAt: txTime(3 * time.Minute), LastUsedIP: "198.51.100.1", LastUsedUA: "apt", Pulls: 5}},
		{"SameTokenTwiceInOneBatch", []tollgate.TokenUsage{
			{TokenID: t1.ID, At: at(5 * time.Minute), IP: "203.0.113.5", UA: "late", Pulls: 10},
			{TokenID: t1.ID, At: at(4 * time.Minute), IP: "203.0.113.4", UA: "early", Pulls: 20},
		}, tollgate.Token{LastUsedAt: txTime(5 * time.Minute), LastUsedIP: "203.0.113.5", LastUsedUA: "late", Pulls: 35},
			tollgate.Token{LastUsedAt: txTime(3 * time.Minute), LastUsedIP: "198.51.100.1", LastUsedUA: "apt", Pulls: 5}},
		{"OlderUseAddsPullsButKeepsLastUsed", []tollgate.TokenUsage{
			{TokenID: t1.ID, At: at(time.Second), IP: "192.0.2.99", UA: "stale", Pulls: 1},
		}, tollgate.Token{LastUsedAt: txTime(5 * time.Minute), LastUsedIP: "203.0.113.5", LastUsedUA: "late", Pulls: 36},
			tollgate.Token{LastUsedAt: txTime(3 * time.Minute), LastUsedIP: "198.51.100.1", LastUsedUA: "apt", Pulls: 5}},
		{"Empty", nil,
			tollgate.Token{LastUsedAt: txTime(5 * time.Minute), LastUsedIP: "203.0.113.5", LastUsedUA: "late", Pulls: 36},
			tollgate.Token{LastUsedAt: txTime(3 * time.Minute), LastUsedIP: "198.51.100.1", LastUsedUA: "apt", Pulls: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.RecordUsage(ctx, tc.usage); err != nil {
				t.Fatalf("RecordUsage: %v", err)
			}
			for _, c := range []struct {
				st   txStoredToken
				want tollgate.Token
			}{{t1, tc.want1}, {t2, tc.want2}} {
				want := *c.st.Token
				want.LastUsedAt, want.LastUsedIP, want.LastUsedUA, want.Pulls = c.want.LastUsedAt, c.want.LastUsedIP, c.want.LastUsedUA, c.want.Pulls
				txWantToken(t, "token "+c.st.Name, txGetToken(t, s, c.st.ID), &want)
			}
		})
	}
	txWantToken(t, "unused token", txGetToken(t, s, idle.ID), idle.Token)
}

func txRecordUsageConcurrent(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	var toks []txStoredToken
	for i := range 3 {
		toks = append(toks, txInsertToken(t, s, a, fmt.Sprintf("t%d", i), txT0))
	}
	const writers, rounds = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				// Each writer lists the tokens in a different order.
				var batch []tollgate.TokenUsage
				for i := range toks {
					st := toks[(i+w)%len(toks)]
					batch = append(batch, tollgate.TokenUsage{TokenID: st.ID, At: txT0.Add(time.Duration(w*rounds+r) * time.Second), IP: "ip", UA: "ua", Pulls: 1})
				}
				if err := s.RecordUsage(ctx, batch); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent RecordUsage: %v", err)
	}
	for _, st := range toks {
		got := txGetToken(t, s, st.ID)
		if got.Pulls != writers*rounds {
			t.Errorf("%s: pulls = %d, want %d (lost updates)", st.Name, got.Pulls, writers*rounds)
		}
		if want := txT0.Add(time.Duration(writers*rounds-1) * time.Second); got.LastUsedAt == nil || !got.LastUsedAt.Equal(want) {
			t.Errorf("%s: last used %v, want the latest, %v", st.Name, got.LastUsedAt, want)
		}
	}
}

// txConcurrentLimit is the check-then-insert race the Service runs for
// every new token: with the account locked, 150 Updates that each count
// and insert below a limit of 100 end with exactly 100 tokens.
func txConcurrentLimit(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	a := txInsertAccount(t, s, "acme")
	const workers, limit = 150, tollgate.MaxActiveTokens
	errLimit := tollgate.Errorf(tollgate.ELIMIT, "token limit reached")

	var wg sync.WaitGroup
	errs := make([]error, workers)
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			errs[i] = s.Update(ctx, func(tx tollgate.Tx) error {
				if _, err := tx.AccountByID(ctx, a.ID, true); err != nil {
					return err
				}
				n, err := tx.CountActiveTokens(ctx, a.ID)
				if err != nil {
					return err
				}
				if n >= limit {
					return errLimit
				}
				st := txNewToken(a, fmt.Sprintf("worker-%d", i), txT0)
				return tx.InsertToken(ctx, st.Token, st.hash, st.sealed)
			})
		})
	}
	close(start)
	wg.Wait()

	var ok, limited int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, errLimit):
			limited++
		default:
			t.Errorf("Update: %v (code %s)", err, tollgate.ErrorCode(err))
		}
	}
	var n int
	var list []*tollgate.Token
	txView(t, s, func(tx tollgate.Tx) (err error) {
		if n, err = tx.CountActiveTokens(ctx, a.ID); err != nil {
			return err
		}
		list, err = tx.ListTokens(ctx, a.ID)
		return err
	})
	if ok != limit || limited != workers-limit || n != limit || len(list) != limit {
		t.Fatalf("%d succeeded, %d hit the limit, %d tokens counted, %d listed; want %d, %d, %d, %d",
			ok, limited, n, len(list), limit, workers-limit, limit, limit)
	}
}
