package usage

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
)

// Refused attempts of known tokens take the same road as pulls, smaller:
// Refused is a non-blocking send on a bounded channel (a full channel
// drops and counts), Run writes what arrived every FlushInterval in one
// transaction (Service.RecordRefusals), keeping per token only the last
// tollgate.RefusalsKept of a batch since the store keeps no more. A
// failed write is dropped and counted: refusals are shown to help a
// customer, and a token hammering a refusal must never grow memory.

// RefusalStore is what RefusalRecorder writes to: tollgate.Service.
type RefusalStore interface {
	RecordRefusals(ctx context.Context, rs []tollgate.TokenRefusal) error
}

// RefusalOptions configures a RefusalRecorder. Zero values take defaults.
type RefusalOptions struct {
	Store RefusalStore
	// Buffer is the hand-off channel's capacity (default 4096).
	Buffer int
	// FlushInterval is how often refusals are written (default 1 s: a
	// customer looking at a card sees a refusal at once).
	FlushInterval time.Duration
	Logger        *slog.Logger
}

// RefusalRecorder takes refused attempts from the edge. Safe for
// concurrent use; NewRefusalRecorder starts nothing.
type RefusalRecorder struct {
	o  RefusalOptions
	ch chan tollgate.TokenRefusal

	written, dropped, failed atomic.Uint64
}

// NewRefusalRecorder builds a RefusalRecorder.
func NewRefusalRecorder(o RefusalOptions) *RefusalRecorder {
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &RefusalRecorder{o: o, ch: make(chan tollgate.TokenRefusal, o.Buffer)}
}

// Refused hands a refusal over without blocking.
func (r *RefusalRecorder) Refused(tr tollgate.TokenRefusal) {
	select {
	case r.ch <- tr:
	default:
		r.dropped.Add(1)
	}
}

// RefusalStats counts what the recorder did.
type RefusalStats struct {
	Written, Dropped, Failed uint64
}

// Stats reports the counters.
func (r *RefusalRecorder) Stats() RefusalStats {
	return RefusalStats{Written: r.written.Load(), Dropped: r.dropped.Load(), Failed: r.failed.Load()}
}

// Run writes refusals every FlushInterval until ctx ends. Call Flush
// afterwards to write what is left.
func (r *RefusalRecorder) Run(ctx context.Context) error {
	t := time.NewTicker(r.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Flush(ctx)
		}
	}
}

// Flush writes the refusals waiting in the channel, at most
// RefusalsKept per token (the latest), in one transaction.
func (r *RefusalRecorder) Flush(ctx context.Context) error {
	per := map[string][]tollgate.TokenRefusal{}
	n := 0
	for n < cap(r.ch) {
		select {
		case tr := <-r.ch:
			n++
			rs := append(per[tr.TokenID], tr)
			if len(rs) > tollgate.RefusalsKept {
				rs = rs[1:]
				r.dropped.Add(1)
			}
			per[tr.TokenID] = rs
			continue
		default:
		}
		break
	}
	var batch []tollgate.TokenRefusal
	for _, rs := range per {
		batch = append(batch, rs...)
	}
	if len(batch) == 0 {
		return nil
	}
	if err := r.o.Store.RecordRefusals(ctx, batch); err != nil {
		r.failed.Add(uint64(len(batch)))
		r.o.Logger.Warn("refused attempts not recorded", "count", len(batch), "err", err)
		return err
	}
	r.written.Add(uint64(len(batch)))
	return nil
}
