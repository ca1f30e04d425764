package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tollgate/tollgate"
)

// The stale-token report's other two questions, next to unused_for:
// never_used=true (tokens not revoked that were never used) and
// min_addresses=N (tokens not revoked that pulled from at least N distinct
// client addresses in the last 30 days).

// addressWindow is the period min_addresses counts over, in days.
const addressWindow = 30

// staleFilter reads never_used and min_addresses and returns the test a
// token must pass (every token passes when neither is given).
func staleFilter(r *http.Request, svc *tollgate.Service, account string) (func(*tollgate.Token) bool, error) {
	q := r.URL.Query()
	never := false
	switch v := q.Get("never_used"); v {
	case "":
	case "true":
		never = true
	default:
		return nil, tollgate.FieldError("never_used", "must be true (or left out)")
	}
	var minAddrs int
	var counts map[string]int
	if v := q.Get("min_addresses"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return nil, tollgate.FieldError("min_addresses", "must be a number of addresses from 1 to 100000")
		}
		if counts, err = svc.TokenAddressCounts(r.Context(), account, addressWindow); err != nil {
			return nil, err
		}
		minAddrs = n
	}
	return func(t *tollgate.Token) bool {
		switch {
		case never && (t.RevokedAt != nil || t.LastUsedAt != nil):
			return false
		case minAddrs > 0 && (t.RevokedAt != nil || counts[t.ID] < minAddrs):
			return false
		}
		return true
	}, nil
}

// ListNeverUsedTokens lists the account's tokens that are not revoked and
// were never used.
func (c *Client) ListNeverUsedTokens(ctx context.Context, account string) (*TokenList, error) {
	return c.listTokens(ctx, account, url.Values{"never_used": {"true"}})
}

// ListTokensFromManyAddresses lists the account's tokens that are not
// revoked and pulled from at least min distinct client addresses in the
// last 30 days.
func (c *Client) ListTokensFromManyAddresses(ctx context.Context, account string, min int) (*TokenList, error) {
	return c.listTokens(ctx, account, url.Values{"min_addresses": {strconv.Itoa(min)}})
}
