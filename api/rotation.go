package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// PreviousSecret is the secret a token had before its last rotation:
// when it stops (or stopped) working and when, where from and by which
// client it was last used. Never the secret itself.
type PreviousSecret struct {
	Version    int        `json:"version"`
	RotatedAt  time.Time  `json:"rotated_at"`
	ValidUntil time.Time  `json:"valid_until"`
	Live       bool       `json:"live"`
	LastUsedAt *time.Time `json:"last_used_at"`
	LastUsedIP string     `json:"last_used_ip,omitempty"`
	LastUsedUA string     `json:"last_used_client,omitempty"`
}

func fromPrevious(t *tollgate.Token, now time.Time) *PreviousSecret {
	p := t.Previous
	if p == nil {
		return nil
	}
	return &PreviousSecret{Version: p.Version, RotatedAt: wireTime(p.RotatedAt), ValidUntil: wireTime(p.ValidUntil),
		Live: p.Live(now), LastUsedAt: utcPtr(p.LastUsedAt), LastUsedIP: p.LastUsedIP, LastUsedUA: p.LastUsedUA}
}

// rotateBody is what POST /tokens/{id}/rotate accepts: {"grace": "24h"},
// "7d", or "now"; absent means 24h.
type rotateBody struct {
	Grace string `json:"grace"`
}

func (s *Server) rotateToken(r *http.Request, who *actor) (int, any, error) {
	id := r.PathValue("id")
	var in rotateBody
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return 0, nil, err
		}
	}
	grace, err := tollgate.ParseGrace(in.Grace)
	if err != nil {
		return 0, nil, err
	}
	if _, _, err := s.token(r.Context(), who, id); err != nil {
		return 0, nil, err
	}
	ctx, out := s.tokenAnswer(r.Context())
	_, secret, err := s.Service.RotateToken(ctx, who.name, id, grace)
	if err != nil {
		return 0, nil, err
	}
	out.Secret = secret.Reveal() // shown once, to whoever rotated it
	return http.StatusOK, out, nil
}

// expiringFilter parses ?expiring=30d (tokens that expire within it and
// have not yet); "" means no filter.
func expiringFilter(r *http.Request) (time.Duration, error) { return durationParam(r, "expiring") }

// durationParam reads a query parameter given as days (30d) or a Go
// duration (12h); absent is 0.
func durationParam(r *http.Request, field string) (time.Duration, error) {
	v := r.URL.Query().Get(field)
	if v == "" {
		return 0, nil
	}
	if n, ok := cutDays(v); ok {
		return n, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, tollgate.FieldError(field, "must be a number of days like 30d or a duration like 12h")
	}
	return d, nil
}

func cutDays(v string) (time.Duration, bool) {
	if len(v) < 2 || v[len(v)-1] != 'd' {
		return 0, false
	}
	n, err := strconv.Atoi(v[:len(v)-1])
	if err != nil || n <= 0 || n > 3660 {
		return 0, false
	}
	return time.Duration(n) * 24 * time.Hour, true
}

// RotateToken gives the token a new secret (in the answer, once); the
// old one works for grace ("24h", "7d", "now"; "" means 24h).
func (c *Client) RotateToken(ctx context.Context, id, grace string) (*Token, error) {
	var body any
	if grace != "" {
		body = rotateBody{Grace: grace}
	}
	return c.token(ctx, "POST", id, "rotate", nil, body)
}

// ListExpiringTokens lists the account's tokens that expire within
// within ("30d", "12h") and have not yet.
func (c *Client) ListExpiringTokens(ctx context.Context, account, within string) (*TokenList, error) {
	q := url.Values{"expiring": {within}}
	var out TokenList
	if err := c.do(ctx, "GET", "accounts/"+url.PathEscape(account)+"/tokens", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
