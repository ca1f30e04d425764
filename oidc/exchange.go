package oidc

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bounded"
)

// Policies is what the exchange needs of the Service.
type Policies interface {
	TrustPoliciesForAudience(ctx context.Context, aud string) ([]*tollgate.TrustPolicy, error)
	IssueEphemeral(ctx context.Context, x tollgate.Exchange) (*tollgate.Token, tollgate.Secret, error)
}

// maxAudiences bounds the audiences of one token that are looked up.
const maxAudiences = 5

// Exchanger turns a verified OIDC token into an ephemeral credential.
type Exchanger struct {
	verifier *Verifier
	policies Policies
	log      *slog.Logger
	now      func() time.Time

	mu   sync.Mutex
	memo *bounded.Map[[32]byte, memoEntry]
}

type memoEntry struct {
	secret  tollgate.Secret
	expires time.Time
}

// NewExchanger returns an Exchanger; log may be nil.
func NewExchanger(v *Verifier, p Policies, log *slog.Logger) *Exchanger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Exchanger{verifier: v, policies: p, log: log, now: v.o.Now}
	e.memo = bounded.New(bounded.Options[[32]byte, memoEntry]{MaxEntries: 10_000, Now: e.now,
		Rank: func(now time.Time, _ [32]byte, m memoEntry) bounded.Rank {
			if !now.Before(m.expires) {
				return bounded.Expired
			}
			return bounded.Reclaimable
		}})
	return e
}

// refused is the one refusal of every exchange that fails on the token:
// the same as a wrong password.
func refused() error { return tollgate.Errorf(tollgate.EUNAUTHORIZED, "invalid credentials") }

// Exchange verifies raw and issues an ephemeral credential under the
// first of the audience's policies (oldest first) whose issuer is the
// token's and whose rules its claims match. client is the caller's
// address, for the audit log.
//
// Errors: EUNAUTHORIZED for any token that does not qualify (the reason
// is logged, never returned); the store's EUNAVAILABLE and EINTERNAL.
func (e *Exchanger) Exchange(ctx context.Context, raw, client string) (*tollgate.Token, tollgate.Secret, error) {
	un, err := Peek(raw)
	if err != nil {
		e.log.Debug("oidc token refused", "reason", "malformed", "err", err)
		return nil, "", refused()
	}
	var candidates []*tollgate.TrustPolicy
	for i, aud := range un.Audience {
		if i == maxAudiences {
			break
		}
		ps, err := e.policies.TrustPoliciesForAudience(ctx, aud)
		if err != nil {
			return nil, "", err
		}
		for _, p := range ps {
			if p.Issuer == un.Issuer {
				candidates = append(candidates, p)
			}
		}
	}
	if len(candidates) == 0 {
		e.log.Info("oidc token refused", "reason", "no_policy", "issuer", un.Issuer)
		return nil, "", refused()
	}
	for _, p := range candidates[1:] {
		if p.AccountID != candidates[0].AccountID {
			e.log.Warn("oidc token refused", "reason", "audiences_name_several_accounts", "issuer", un.Issuer)
			return nil, "", refused()
		}
	}
	verified := map[string]*Claims{} // by key source: a static JWKS, or "" for the issuer's
	var lastErr error
	for _, p := range candidates {
		c, ok := verified[p.JWKS]
		if !ok {
			c, lastErr = e.verifier.Verify(ctx, raw, p.Issuer, p.JWKS, p.Audience)
			if lastErr != nil {
				continue
			}
			verified[p.JWKS] = c
		}
		if c == nil || !slices.Contains(c.Audience, p.Audience) {
			continue
		}
		matched, ok := p.Match(c.All)
		if !ok {
			continue
		}
		// The credential ends with the workload's token, never later: the
		// leeway admits a clock's skew when exp is checked, it does not
		// lengthen the workload's authority.
		tok, secret, err := e.policies.IssueEphemeral(ctx, tollgate.Exchange{
			PolicyID: p.ID, Issuer: c.Issuer, Subject: c.Subject, Claims: matched,
			ExpiresAt: c.Expiry, Client: client,
		})
		switch tollgate.ErrorCode(err) {
		case "":
			e.log.Info("oidc token exchanged", "issuer", c.Issuer, "subject", c.Subject, "trust_policy", p.ID, "token", tok.ID)
			return tok, secret, nil
		case tollgate.ENOTFOUND, tollgate.EFORBIDDEN, tollgate.EINVALID:
			e.log.Info("oidc token refused", "reason", tollgate.ErrorMessage(err), "issuer", c.Issuer, "subject", c.Subject)
			return nil, "", refused()
		default:
			return nil, "", err
		}
	}
	if lastErr != nil && len(verified) == 0 {
		e.log.Info("oidc token refused", "reason", "verification", "issuer", un.Issuer, "err", lastErr)
	} else {
		e.log.Info("oidc token refused", "reason", "claims_match_no_policy", "issuer", un.Issuer)
	}
	return nil, "", refused()
}

// Credential is Exchange for a token presented as a password, again and
// again (docker keeps it for every pull): the credential issued for the
// same token is reused while it lives, unless fresh asks for a new one
// (the last one was revoked: its policy was edited).
func (e *Exchanger) Credential(ctx context.Context, raw, client string, fresh bool) (tollgate.Secret, error) {
	key := sha256.Sum256([]byte(raw))
	now := e.now()
	e.mu.Lock()
	m, ok := e.memo.Get(key)
	if fresh {
		e.memo.Delete(key)
	}
	e.mu.Unlock()
	if ok && !fresh && now.Before(m.expires) {
		return m.secret, nil
	}
	tok, secret, err := e.Exchange(ctx, raw, client)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	e.memo.Put(key, memoEntry{secret: secret, expires: *tok.ExpiresAt})
	e.mu.Unlock()
	return secret, nil
}

// IsOIDC reports whether a password is shaped like an OIDC token.
func (e *Exchanger) IsOIDC(password string) bool { return LooksLikeJWT(password) }
