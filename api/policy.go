package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

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

// Refusal is one refused attempt of a known token at the edge: when, from
// which client address (as ops.trusted_proxies defines it) and client
// (user agent), and why (the decision's label: address_not_allowed,
// paused, cap_reached, restricted, …). It never holds a secret.
type Refusal struct {
	At        time.Time `json:"at"`
	Address   string    `json:"address"`
	UserAgent string    `json:"user_agent"`
	Reason    string    `json:"reason"`
}

// RefusalList answers GET /api/v1/tokens/{id}/refusals: the token's last
// refused attempts (at most tollgate.RefusalsKept), newest first; what
// its card in the console shows.
type RefusalList struct {
	Token    string    `json:"token"`
	Refusals []Refusal `json:"refusals"` // always an array
}

// tokenRefusals: the operator may read any token's, an account its own
// tokens' (another account's token is not found, as everywhere).
func (s *Server) tokenRefusals(r *http.Request, who *actor) (int, any, error) {
	t, _, err := s.token(r.Context(), who, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	rs, err := s.Service.Refusals(r.Context(), t.ID)
	if err != nil {
		return 0, nil, err
	}
	out := RefusalList{Token: t.ID, Refusals: make([]Refusal, 0, len(rs))}
	for _, x := range rs {
		out.Refusals = append(out.Refusals, Refusal{At: x.At, Address: x.Address, UserAgent: x.UserAgent, Reason: x.Reason})
	}
	return http.StatusOK, out, nil
}

// TokenRefusals returns the token's last refused attempts, newest first.
func (c *Client) TokenRefusals(ctx context.Context, id string) (*RefusalList, error) {
	var out RefusalList
	if err := c.do(ctx, "GET", "tokens/"+url.PathEscape(id)+"/refusals", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
