package tollgate

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Refused attempts: when the edge refuses a request made with a known
// token (paused, outside its networks, over its cap, restricted, …) it
// hands a TokenRefusal to a recorder (package usage), which writes them
// in batches; the token's card shows the last ones. A refusal holds the
// token's public id, never a secret.

// TokenRefusal is one refused attempt by a known token.
type TokenRefusal struct {
	TokenID   string
	At        time.Time
	Address   string // the client address (ops.trusted_proxies)
	UserAgent string
	Reason    string // the decision label: paused, address_not_allowed, …
}

// refusalReasons says in words what a refusal's reason label means.
var refusalReasons = map[string]string{
	"address_not_allowed": "outside its networks",
	"paused":              "paused",
	"revoked":             "revoked",
	"expired":             "expired",
	"suspended":           "account suspended",
	"not_yet_valid":       "before its valid-from date",
	"restricted":          "outside its restrictions",
	"not_entitled":        "not in the subscription",
	"wrong_scope":         "scope does not cover it",
	"cap_reached":         "monthly cap reached",
}

// RefusalReasonText says in words why a token was refused, for people
// (the console's card, the CLI); an unknown label comes back as it is.
func RefusalReasonText(reason string) string {
	if s, ok := refusalReasons[reason]; ok {
		return s
	}
	return reason
}

// RefusalsKept is how many refused attempts are kept per token: the most
// recent ones.
const RefusalsKept = 20

// Bounds of a refusal's text fields.
const (
	maxRefusalAddress = 64
	maxRefusalAgent   = 256
	maxRefusalReason  = 32
)

// PolicyTx is what the policy views read and write besides tokens: refused
// attempts and the distinct client addresses of tokens. The Tx values of
// store/sqlite and store/postgres implement it; Service reaches it with a
// type assertion, as it does UsageTx. Errors: EUNAVAILABLE when the
// database cannot be reached, EINTERNAL otherwise (a write inside View
// included).
type PolicyTx interface {
	// AddRefusals stores refused attempts, then keeps only the keep most
	// recent of each token it touched.
	AddRefusals(ctx context.Context, rs []TokenRefusal, keep int) error
	// TokenRefusals returns the refused attempts of the tokens, by token
	// then newest first, at most limit per token, in one query.
	TokenRefusals(ctx context.Context, tokenIDs []string, limit int) ([]TokenRefusal, error)
	// TokenAddressCounts returns, per token of the account, how many
	// distinct client addresses pulled with it on the days in [since,
	// until) (from the usage detail; tokens without any are absent).
	TokenAddressCounts(ctx context.Context, accountID string, since, until time.Time) (map[string]int, error)
}

func policyTx(tx Tx) (PolicyTx, error) {
	p, ok := tx.(PolicyTx)
	if !ok {
		return nil, Internal(fmt.Errorf("store %T does not keep refused attempts", tx))
	}
	return p, nil
}

// RecordRefusals writes a batch of refused attempts in one transaction,
// keeping RefusalsKept per token. Text is clipped and made valid UTF-8.
func (s *Service) RecordRefusals(ctx context.Context, rs []TokenRefusal) error {
	if len(rs) == 0 {
		return nil
	}
	clean := make([]TokenRefusal, len(rs))
	for i, r := range rs {
		r.At = r.At.UTC().Truncate(time.Microsecond)
		r.Address = clipValid(r.Address, maxRefusalAddress)
		r.UserAgent = clipValid(r.UserAgent, maxRefusalAgent)
		r.Reason = clipValid(r.Reason, maxRefusalReason)
		clean[i] = r
	}
	return s.Store.Update(ctx, func(tx Tx) error {
		p, err := policyTx(tx)
		if err != nil {
			return err
		}
		return p.AddRefusals(ctx, clean, RefusalsKept)
	})
}

// Refusals returns the token's refused attempts, newest first.
// ENOTFOUND for an unknown token.
func (s *Service) Refusals(ctx context.Context, tokenID string) ([]TokenRefusal, error) {
	var out []TokenRefusal
	err := s.Store.View(ctx, func(tx Tx) error {
		p, err := policyTx(tx)
		if err != nil {
			return err
		}
		if _, err := tx.TokenByID(ctx, tokenID); err != nil {
			return tokenNotFound(err, tokenID)
		}
		out, err = p.TokenRefusals(ctx, []string{tokenID}, RefusalsKept)
		return err
	})
	return out, err
}

// RefusalsOf returns the refused attempts of the tokens (ids of one
// account's tokens, as the console lists them), per token, newest first.
func (s *Service) RefusalsOf(ctx context.Context, tokenIDs []string) (map[string][]TokenRefusal, error) {
	out := map[string][]TokenRefusal{}
	if len(tokenIDs) == 0 {
		return out, nil
	}
	err := s.Store.View(ctx, func(tx Tx) error {
		p, err := policyTx(tx)
		if err != nil {
			return err
		}
		rs, err := p.TokenRefusals(ctx, tokenIDs, RefusalsKept)
		for _, r := range rs {
			out[r.TokenID] = append(out[r.TokenID], r)
		}
		return err
	})
	return out, err
}

// TokenAddressCounts returns, per token of the account, the distinct
// client addresses it pulled from in the last days days (today
// included): the stale-token report's "used from many addresses".
// ENOTFOUND for an unknown account.
func (s *Service) TokenAddressCounts(ctx context.Context, accountName string, days int) (map[string]int, error) {
	until := Day(s.now()).AddDate(0, 0, 1)
	var out map[string]int
	err := s.Store.View(ctx, func(tx Tx) error {
		p, err := policyTx(tx)
		if err != nil {
			return err
		}
		a, err := tx.AccountByName(ctx, accountName, false)
		if err != nil {
			return accountNotFound(err, accountName)
		}
		out, err = p.TokenAddressCounts(ctx, a.ID, until.AddDate(0, 0, -days), until)
		return err
	})
	return out, err
}

// clipValid makes s valid UTF-8 and at most n bytes long.
func clipValid(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
