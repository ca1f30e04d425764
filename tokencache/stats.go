package tokencache

import (
	"sync/atomic"
	"time"
)

// LayerStats counts lookups at one layer. A Token call looks up three
// keys (hash, token, account) and a TokenByID call two; each counts.
type LayerStats struct {
	Hit   uint64 // answered here (for Store: the row was found)
	Miss  uint64 // not here (for Store: no such row; for Negative: not known unknown)
	Error uint64 // the layer failed (Redis or store unreachable)
}

// Stats is a snapshot of the cache's counters (monotonic, since New) and
// gauges, for metrics.
type Stats struct {
	L1       LayerStats // in process; Miss includes entries past l1_ttl
	L2       LayerStats // Redis
	Store    LayerStats // queries actually sent (concurrent misses share one)
	Negative LayerStats // in-process memory of unknown hashes

	// Stale counts answers served from an L1 entry past l1_ttl because
	// Redis and the store could not confirm it.
	Stale uint64
	// Unavailable counts EUNAVAILABLE answers.
	Unavailable uint64

	// RedisErrors counts failed Redis commands and subscription attempts.
	RedisErrors uint64
	// RedisUp is false while Redis is taken for down (and when there is
	// no Redis); Subscribed is true while invalidations are heard.
	RedisUp, Subscribed bool

	// Invalidations counts Invalidate calls; InvalidationsReceived the
	// messages heard on the channel (this replica's own included);
	// InvalidationsPending those waiting to reach Redis;
	// InvalidationsDropped those dropped from a full retry queue.
	Invalidations, InvalidationsReceived, InvalidationsDropped uint64
	InvalidationsPending                                       int
	// Flushes counts full L1 flushes (on every (re)subscription).
	Flushes uint64

	// Mode is how far the cache trusts its entries now (see Mode).
	Mode Mode
	// InvalidationsReplayed counts entries of the store's invalidation
	// log that this replica applied without having heard them on the
	// channel: each is a write Redis did not bring (writer cut from
	// Redis, Redis down, subscription lost). RedisRepairs counts those
	// then replayed into Redis; InvalidationsPending includes those still
	// waiting to be.
	InvalidationsReplayed, RedisRepairs uint64
	// L2Ignored counts Redis entries not used because they were written
	// before an invalidation this replica applied, or because no feed of
	// invalidations was live.
	L2Ignored uint64
	// LogSeq is the last log entry applied; LogLag how long ago (by the
	// cache's clock) a read of the log last reached its head (0 before
	// the first); LogReads and LogErrors count reads that did and did not.
	LogSeq              int64
	LogLag              time.Duration
	LogReads, LogErrors uint64
	// LogPruned counts log entries this replica pruned; PrunedBehind how
	// often it found the log pruned past its last read and dropped its
	// whole cache.
	LogPruned, PrunedBehind uint64

	// UsageFlushes counts batches written to the store, UsageTokens the
	// token rows they updated, UsageFlushErrors failed writes (kept for
	// the next), UsageDropped uses lost to a full buffer.
	UsageFlushes, UsageTokens, UsageFlushErrors, UsageDropped uint64

	// Entries in each in-process map.
	L1Tokens, L1Accounts, L1Hashes, NegativeEntries int
}

type layerCounters struct{ hit, miss, error atomic.Uint64 }

func (l *layerCounters) snapshot() LayerStats {
	return LayerStats{Hit: l.hit.Load(), Miss: l.miss.Load(), Error: l.error.Load()}
}

type counters struct {
	l1, l2, store, negative layerCounters

	stale, unavailable, redisErrors                            atomic.Uint64
	invalidations, invalidationsReceived, invalidationsDropped atomic.Uint64
	flushes                                                    atomic.Uint64
	invalidationsReplayed, redisRepairs, l2Ignored             atomic.Uint64
	logReads, logErrors, logPruned, prunedBehind               atomic.Uint64
	usageFlushes, usageTokens, usageFlushErrors, usageDropped  atomic.Uint64
}

// Stats returns the current counters.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{
		L1:                    s.l1.snapshot(),
		L2:                    s.l2.snapshot(),
		Store:                 s.store.snapshot(),
		Negative:              s.negative.snapshot(),
		Stale:                 s.stale.Load(),
		Unavailable:           s.unavailable.Load(),
		RedisErrors:           s.redisErrors.Load(),
		RedisUp:               c.rdb != nil && !c.redisDown.Load(),
		Subscribed:            c.subscribed.Load(),
		Invalidations:         s.invalidations.Load(),
		InvalidationsReceived: s.invalidationsReceived.Load(),
		InvalidationsDropped:  s.invalidationsDropped.Load(),
		InvalidationsPending:  c.pendingCount() + c.repairCount(),
		Flushes:               s.flushes.Load(),
		Mode:                  c.mode(),
		InvalidationsReplayed: s.invalidationsReplayed.Load(),
		RedisRepairs:          s.redisRepairs.Load(),
		L2Ignored:             s.l2Ignored.Load(),
		LogSeq:                c.logSeq(),
		LogLag:                c.logLag(),
		LogReads:              s.logReads.Load(),
		LogErrors:             s.logErrors.Load(),
		LogPruned:             s.logPruned.Load(),
		PrunedBehind:          s.prunedBehind.Load(),
		UsageFlushes:          s.usageFlushes.Load(),
		UsageTokens:           s.usageTokens.Load(),
		UsageFlushErrors:      s.usageFlushErrors.Load(),
		UsageDropped:          s.usageDropped.Load(),
		L1Tokens:              c.tokens.len(),
		L1Accounts:            c.accounts.len(),
		L1Hashes:              c.hashes.len(),
		NegativeEntries:       c.negative.len(),
	}
}

func (c *Cache) logSeq() int64 {
	c.invLog.mu.Lock()
	defer c.invLog.mu.Unlock()
	return c.invLog.applied
}

func (c *Cache) logLag() time.Duration {
	if !c.initialized.Load() {
		return 0
	}
	return time.Duration(c.now().UnixNano() - c.lastCatchUp.Load())
}
