package tollgate

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rotation gives a token a new secret while the one it replaces keeps
// working for a grace window, so that every system using the token can
// move over before the old secret stops. A token holds at most two live
// secrets: the current one (Token.SecretHash, version SecretVersion) and
// the previous one (Token.Previous, version SecretVersion-1) until
// Previous.ValidUntil. Older secrets are dead: the store no longer finds
// them, and a cache that still maps their hash to the token id is
// answered "rotated" by authz.Decide, which compares the presented secret
// with the token's two (see PresentedVersion). The end of the grace needs
// no invalidation: every replica judges it against the same ValidUntil.
//
// Revocation, expiry, suspension and pause are the token's, so they hold
// for both secrets at once.

// PreviousSecret is the secret a token had before its last rotation.
type PreviousSecret struct {
	Hash       []byte // lookup hash; never the secret
	Version    int
	RotatedAt  time.Time
	ValidUntil time.Time // the secret works strictly before this instant
	// ExpiredNoted is set once token.previous_secret_expired was recorded.
	ExpiredNoted bool
	// Last use of this secret (see TokenUsage.Previous).
	LastUsedAt *time.Time
	LastUsedIP string
	LastUsedUA string
}

// Live reports whether the previous secret still works at now.
func (p *PreviousSecret) Live(now time.Time) bool {
	return p != nil && now.Before(p.ValidUntil)
}

// Grace bounds of a rotation.
const (
	DefaultRotationGrace = 24 * time.Hour
	MaxRotationGrace     = 30 * 24 * time.Hour
)

// ParseGrace parses a rotation's grace window: "now" (the old secret stops
// at once), a Go duration ("36h", "90m") or whole days ("7d"); "" is the
// default (24h). At most 30 days.
func ParseGrace(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	switch v {
	case "":
		return DefaultRotationGrace, nil
	case "now", "0":
		return 0, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 30 {
			return 0, FieldError("grace", "must be \"now\", a duration like 24h or a number of days like 7d, at most 30d")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, FieldError("grace", "must be \"now\", a duration like 24h or a number of days like 7d, at most 30d")
		}
	}
	if d < 0 {
		return 0, FieldError("grace", "must not be negative")
	}
	if d > MaxRotationGrace {
		return 0, FieldError("grace", "must be at most 30 days (720h)")
	}
	return d, nil
}

// PresentedVersion says which of the token's secrets has the lookup hash
// hash: its version if it is the current or the previous one (whether or
// not the previous one is still live), 0 for any other.
func (t *Token) PresentedVersion(hash []byte) int {
	switch {
	case len(hash) == 0:
		return 0
	case len(t.SecretHash) > 0 && bytes.Equal(hash, t.SecretHash):
		return t.currentVersion()
	case t.Previous != nil && bytes.Equal(hash, t.Previous.Hash):
		return t.Previous.Version
	}
	return 0
}

func (t *Token) currentVersion() int { return max(t.SecretVersion, 1) }

// SecretLive reports whether the secret of the given version may be used
// at now, as far as rotation goes: the current one always, the previous
// one until its grace ends, any other never. Version 0 means "not said"
// (a caller that does not know which secret was used) and counts as the
// current one.
func (t *Token) SecretLive(version int, now time.Time) bool {
	switch {
	case version == 0 || version == t.currentVersion():
		return true
	case t.Previous != nil && version == t.Previous.Version:
		return t.Previous.Live(now)
	}
	return false
}

// IsPrevious reports whether version is the token's previous secret.
func (t *Token) IsPrevious(version int) bool {
	return version != 0 && t.Previous != nil && version == t.Previous.Version
}

// ExpiringWithin reports whether the token expires after now and at or
// before now+d.
func (t *Token) ExpiringWithin(now time.Time, d time.Duration) bool {
	return t.ExpiresAt != nil && t.ExpiresAt.After(now) && !t.ExpiresAt.After(now.Add(d))
}

// ExpiryWarning is the text of the Warning header (code 299) of a response
// served with the token's secret of the given version (0: not said), or
// "" when there is nothing to warn about: the token expires within
// within, or the secret used is the previous one (it always stops soon).
// The text carries the token's name, never its secret; the edge writes it
// as `Warning: 299 - "TEXT"` after quoting it (it may hold a '"').
func (t *Token) ExpiryWarning(now time.Time, within time.Duration, version int) string {
	if t.IsPrevious(version) && t.Previous.Live(now) {
		return fmt.Sprintf("registry token %s was rotated: this secret stops working on %s; use the new one",
			t.Name, t.Previous.ValidUntil.UTC().Format(time.RFC3339))
	}
	if t.ExpiringWithin(now, within) && !t.Ephemeral() { // short-lived by design: renewed by logging in again
		return fmt.Sprintf("registry token %s expires on %s", t.Name, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return ""
}

// RotationTx is what rotation needs of a transaction (embedded in Tx).
type RotationTx interface {
	// RotateTokenSecret makes (hash, sealed) the token's current secret:
	// the current one becomes the previous one (valid until validUntil,
	// with the token's last-use data as its own), the one before it is
	// forgotten, SecretVersion goes up by one and UpdatedAt becomes at.
	// ENOTFOUND for an unknown token, ECONFLICT if another token has the
	// hash.
	RotateTokenSecret(ctx context.Context, id string, hash, sealed []byte, at, validUntil time.Time) error
	// PreviousSecretsEnded returns tokens whose previous secret's grace
	// ended at or before now and is not yet noted, and notes them, so that
	// of concurrent callers only one gets each (rows are locked until the
	// transaction ends). At most limit of them.
	PreviousSecretsEnded(ctx context.Context, now time.Time, limit int) ([]*Token, error)
	// TokensExpiringBy returns the tokens, of every account, that are not
	// revoked and whose expiry is at or before by, in order of expiry then
	// ID (byte order, whatever the database's collation), at most limit
	// of them, starting after the token after names (the zero cursor:
	// from the first); since (if not zero) leaves out those that expired
	// before it.
	TokensExpiringBy(ctx context.Context, since, by time.Time, after ExpiryCursor, limit int) ([]*Token, error)
}

// RotateToken gives the token a new secret and returns it, once, as
// CreateToken does; the sealed copy that RevealToken opens is the new
// one. The previous secret keeps working for grace (0: stops at once; at
// most MaxRotationGrace); a secret rotated out before it stops at once.
//
// Errors: ENOTFOUND; ECONFLICT for a revoked token; EFORBIDDEN for a
// customer of a suspended account; EINVALID for a grace out of bounds.
func (s *Service) RotateToken(ctx context.Context, actor, id string, grace time.Duration) (*Token, Secret, error) {
	if grace < 0 || grace > MaxRotationGrace {
		return nil, "", FieldError("grace", "must be between 0 (now) and 30 days")
	}
	var out *Token
	var inv *Invalidation
	secret := NewSecret(TokenPrefix)
	err := s.Store.Update(ctx, func(tx Tx) error {
		t, err := s.lockToken(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.RevokedAt != nil {
			return Errorf(ECONFLICT, "token %s is revoked; revocation is final", id)
		}
		if t.Ephemeral() {
			return errEphemeral(id, "rotated")
		}
		a, err := tx.AccountByID(ctx, t.AccountID, false)
		if err != nil {
			return err
		}
		if err := checkSuspended(actor, a); err != nil {
			return err
		}
		now := s.now()
		until := now.Add(grace)
		if err := tx.RotateTokenSecret(ctx, id, s.Keys.Hash(secret), s.Keys.Seal(secret, id), now, until); err != nil {
			return err
		}
		if out, err = tx.TokenByID(ctx, id); err != nil {
			return err
		}
		ev := &AuditEvent{AccountID: t.AccountID, Time: now, Actor: actor, Action: ActionTokenRotated, Target: id,
			Changes: map[string]Change{
				"secret_version":       {From: strconv.Itoa(t.currentVersion()), To: strconv.Itoa(out.SecretVersion)},
				"previous_valid_until": {To: until.Format(time.RFC3339)},
			}}
		if err := insertAudit(ctx, tx, ev); err != nil {
			return err
		}
		if err := s.emit(ctx, tx, a, out, EventTokenRotated, now, ""); err != nil {
			return err
		}
		if grace == 0 {
			// Stopped at once: recorded now, not by the sweep.
			if err := s.notePreviousEnded(ctx, tx, a, out, now); err != nil {
				return err
			}
		}
		if inv, err = logChange(ctx, tx, now, t.AccountID, t.ID); err != nil {
			return err
		}
		return beforeCommit(ctx, out, a)
	})
	if err != nil {
		return nil, "", err
	}
	s.changed(ctx, inv)
	return out, secret, nil
}

// notePreviousEnded records that t's previous secret stopped working.
// RotateToken with no grace calls it itself; otherwise
// SweepPreviousSecrets does, once per rotation across replicas.
func (s *Service) notePreviousEnded(ctx context.Context, tx Tx, a *Account, t *Token, now time.Time) error {
	if t.Previous == nil {
		return nil
	}
	if err := insertAudit(ctx, tx, &AuditEvent{AccountID: t.AccountID, Time: now, Actor: ActorSystem,
		Action: ActionPreviousExpired, Target: t.ID,
		Changes: map[string]Change{"previous_valid_until": {From: t.Previous.ValidUntil.Format(time.RFC3339)}}}); err != nil {
		return err
	}
	return s.emit(ctx, tx, a, t, EventPreviousSecretExpired, now,
		fmt.Sprintf("%s:%s:v%d", EventPreviousSecretExpired, t.ID, t.Previous.Version))
}

// SweepPreviousSecrets records token.previous_secret_expired (audit and
// notification) for every previous secret whose grace has ended, once
// each however many replicas sweep. It says how many it recorded. The
// secrets themselves stopped at ValidUntil already, sweep or not.
func (s *Service) SweepPreviousSecrets(ctx context.Context) (int, error) {
	n := 0
	err := s.Store.Update(ctx, func(tx Tx) error {
		now := s.now()
		toks, err := tx.PreviousSecretsEnded(ctx, now, 100)
		if err != nil {
			return err
		}
		for _, t := range toks {
			// The rotation itself recorded a grace of "now"; the mark
			// set by PreviousSecretsEnded is all that was missing.
			if !t.Previous.ValidUntil.After(t.Previous.RotatedAt) {
				continue
			}
			a, err := tx.AccountByID(ctx, t.AccountID, false)
			if err != nil {
				return err
			}
			if err := s.notePreviousEnded(ctx, tx, a, t, now); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// ExpiryCursor is where a page of TokensExpiringBy starts: after the
// token with this expiry and ID. Many tokens share an expiry (all those
// created with --expires 2027-01-01), so the ID breaks the tie.
type ExpiryCursor struct {
	At time.Time
	ID string
}
