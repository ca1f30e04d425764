package console

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Rotation on the card (templates/card-rotation.html): the Rotate form
// with its grace choice, the "previous secret valid until …, last used …
// from ADDRESS by CLIENT" line, the one-time page of the new secret, and
// the banner of tokens expiring soon on the tokens page.

// DefaultWarnBefore is how soon an expiry makes the banner when
// Console.WarnBefore is 0 (the edge's notify.warn_before default).
const DefaultWarnBefore = 7 * 24 * time.Hour

// previousView is a token's previous secret on its card.
type previousView struct {
	Live       bool
	ValidUntil string
	LastUsed   string // "never" if it was not used since the rotation began
	LastUsedIP string
	LastUsedUA string
}

func previousOf(t *tollgate.Token, now time.Time) *previousView {
	p := t.Previous
	if p == nil || t.RevokedAt != nil {
		return nil
	}
	v := &previousView{Live: p.Live(now), ValidUntil: fmtTime(p.ValidUntil), LastUsed: "never",
		LastUsedIP: tollgate.EscapeText(p.LastUsedIP), LastUsedUA: tollgate.EscapeText(p.LastUsedUA)}
	if p.LastUsedAt != nil {
		v.LastUsed = fmtTime(*p.LastUsedAt)
	}
	return v
}

// expiringView is one token of the expiry banner.
type expiringView struct {
	ID, Name, In string
}

// expiringSoon lists the account's usable tokens that expire within
// within, soonest first.
func expiringSoon(toks []*tollgate.Token, a *tollgate.Account, now time.Time, within time.Duration) []expiringView {
	var soon []*tollgate.Token
	for _, t := range toks {
		if t.RevokedAt == nil && t.ExpiringWithin(now, within) {
			soon = append(soon, t)
		}
	}
	slices.SortFunc(soon, func(x, y *tollgate.Token) int { return x.ExpiresAt.Compare(*y.ExpiresAt) })
	out := make([]expiringView, 0, len(soon))
	for _, t := range soon {
		out = append(out, expiringView{ID: t.ID, Name: tollgate.EscapeText(t.Name), In: expiresIn(t.ExpiresAt.Sub(now))})
	}
	return out
}

func expiresIn(left time.Duration) string {
	days := int(left / (24 * time.Hour))
	switch {
	case left < 24*time.Hour:
		return "today"
	case days == 1:
		return "in 1 day"
	}
	return "in " + strconv.Itoa(days) + " days"
}

func (c *Console) warnBefore() time.Duration {
	if c.WarnBefore > 0 {
		return c.WarnBefore
	}
	return DefaultWarnBefore
}

// graceOf reads the Rotate form: grace=24h (the default), now, or custom
// with a duration or days in grace_custom (at most 30 days).
func graceOf(r *http.Request) (time.Duration, string, error) {
	choice := r.PostFormValue("grace")
	switch choice {
	case "", "24h":
		return tollgate.DefaultRotationGrace, "24h", nil
	case "now":
		return 0, "now", nil
	case "custom":
		v := strings.TrimSpace(r.PostFormValue("grace_custom"))
		if v == "" {
			return 0, v, tollgate.FieldError("grace", "enter how long the old secret keeps working, like 36h or 7d (at most 30d)")
		}
		if _, err := strconv.Atoi(v); err == nil {
			v += "d" // a bare number in the days box
		}
		d, err := tollgate.ParseGrace(v)
		return d, v, err
	}
	return 0, choice, tollgate.FieldError("grace", "choose 24 hours, a custom window or now")
}

// rotateToken gives the token a new secret and shows it once.
func (c *Console) rotateToken(w http.ResponseWriter, r *http.Request, s *session) {
	t, _, err := c.ownToken(r, s)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	grace, _, err := graceOf(r)
	if err != nil {
		c.renderTokensWithCardError(w, r, s, t.ID, err)
		return
	}
	out, secret, err := c.Service.RotateToken(r.Context(), s.actor(), t.ID, grace)
	if err != nil {
		c.renderTokensWithCardError(w, r, s, t.ID, err)
		return
	}
	a, err := c.Service.AccountByID(r.Context(), out.AccountID)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	v := c.base(s, "Token rotated")
	v.Created = c.tokenView(out, a, c.now(), secret.Reveal()) // shown once, to whoever rotated it
	c.render(w, r, http.StatusOK, "rotated", v)
}
