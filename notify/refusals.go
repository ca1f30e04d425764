package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
)

// Refusals turns the edge's refusals of known tokens into token.refused
// events (proxy.RefusalSink). The edge's call never blocks: it drops a
// refusal of a token already reported in this window, or when the queue
// is full; Run writes the rest through Service.RecordRefusal, whose
// once-per-window key makes replicas that refuse the same token write
// one event. A flood of refusals costs a map lookup each, not a store
// write.
type Refusals struct {
	svc *tollgate.Service
	log *slog.Logger
	now func() time.Time
	q   chan refusal

	mu     sync.Mutex
	window time.Time           // the RefusalEvery window seen holds
	seen   map[string]struct{} // tokens reported in the window
}

type refusal struct {
	token, reason, client string
	at                    time.Time
}

// maxRefusalTokens bounds the tokens remembered per window; past it,
// refusals are dropped until the next window (the store still keeps
// one event per token and window).
const maxRefusalTokens = 10_000

// NewRefusals returns a sink; call Run to write what it takes.
func NewRefusals(svc *tollgate.Service, log *slog.Logger, now func() time.Time) *Refusals {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Refusals{svc: svc, log: log, now: now, q: make(chan refusal, 256), seen: map[string]struct{}{}}
}

// Refused takes a refusal of a known token without blocking (it is a
// proxy.RefusalSink).
func (r *Refusals) Refused(x tollgate.TokenRefusal) {
	tokenID, reason, client := x.TokenID, x.Reason, x.Address
	now := r.now()
	window := now.Truncate(tollgate.RefusalEvery)
	r.mu.Lock()
	if !window.Equal(r.window) {
		r.window, r.seen = window, map[string]struct{}{}
	}
	_, dup := r.seen[tokenID]
	if !dup && len(r.seen) < maxRefusalTokens {
		r.seen[tokenID] = struct{}{}
	} else {
		dup = true
	}
	r.mu.Unlock()
	if dup {
		return
	}
	select {
	case r.q <- refusal{token: tokenID, reason: reason, client: client, at: now}:
	default: // full: the store is slow; the next window reports it
	}
}

// Run writes refusals until ctx ends.
func (r *Refusals) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case x := <-r.q:
			if _, err := r.svc.RecordRefusal(ctx, x.token, x.reason, x.client, x.at); err != nil && ctx.Err() == nil {
				r.log.Warn("notify: recording a refusal failed", "token", x.token, "reason", x.reason, "err", err)
			}
		}
	}
}
