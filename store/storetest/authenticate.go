package storetest

import (
	"context"

	"github.com/tollgate/tollgate"
)

// Authenticate finds the token whose secret is v, and its account, the way
// the edge's lookup does but straight from s's store: tests use it to prove
// a secret they were handed really is a live token. A malformed secret is
// refused before any lookup; unknown → EUNAUTHORIZED.
func Authenticate(ctx context.Context, s *tollgate.Service, v string) (*tollgate.Token, *tollgate.Account, error) {
	secret, err := tollgate.ParseCredential(v)
	if err != nil {
		return nil, nil, err
	}
	var t *tollgate.Token
	var a *tollgate.Account
	err = s.Store.View(ctx, func(tx tollgate.Tx) (err error) {
		if t, err = tx.TokenByHash(ctx, s.Keys.Hash(secret)); err != nil {
			return err
		}
		a, err = tx.AccountByID(ctx, t.AccountID, false)
		return err
	})
	if tollgate.ErrorCode(err) == tollgate.ENOTFOUND {
		return nil, nil, tollgate.Errorf(tollgate.EUNAUTHORIZED, "invalid credentials")
	}
	return t, a, err
}
