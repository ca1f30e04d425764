package tokencache

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
)

// Defaults of the invalidation-log options.
const (
	// DefaultHeartbeatInterval is how often Run reads the store's
	// invalidation log: the bound on how late a replica applies a write
	// that Redis did not deliver to it.
	DefaultHeartbeatInterval = 250 * time.Millisecond
	// DefaultRevalidateAfter is how long a replica trusts a cached entry
	// without asking the store when neither of its invalidation feeds is
	// known to be live.
	DefaultRevalidateAfter = 500 * time.Millisecond
	// DefaultLogRetention is how long entries stay in the invalidation
	// log: a replica that has not read it for longer drops its whole
	// cache when it does.
	DefaultLogRetention = 24 * time.Hour
	// maxPruneInterval is how often, at most, each replica prunes the log
	// (shorter retentions prune four times per retention).
	maxPruneInterval = time.Hour
)

// Log reading.
const (
	// logPage is how many log entries one read returns.
	logPage = 1000
	// maxCatchUpPages: a replica further behind than this flushes its L1
	// and starts from the head instead of applying every entry.
	maxCatchUpPages = 10
	// initialWindow is how many of the latest log entries a replica
	// applies when it starts, so that it knows which Redis entries are
	// older than the invalidations they precede.
	initialWindow = 10_000
	// maxKnown bounds the per-key memory of applied invalidations; when it
	// is full the older half is forgotten and the floor rises.
	maxKnown = 100_000
	// maxRepairs bounds the invalidations waiting to be replayed into
	// Redis. Dropping one costs only a reload: the sequence stamps keep
	// the stale Redis entry from being used.
	maxRepairs = 10_000
)

// Mode says how far a replica trusts its cache.
type Mode string

const (
	// ModeNormal: the invalidation log was read within revalidate_after
	// and the Redis subscription is live (or there is no Redis). Entries
	// are used for l1_ttl.
	ModeNormal Mode = "normal"
	// ModeRevalidating: one feed is missing. While the log is read in
	// time, entries are revalidated by it every heartbeat; otherwise an
	// entry older than revalidate_after is revalidated with the store
	// (one query per key at a time), and Redis entries are not used.
	ModeRevalidating Mode = "revalidating"
	// ModeStale: the store is failing; entries confirmed within max_stale
	// are served, anything else is EUNAVAILABLE.
	ModeStale Mode = "stale"
)

// invLog is what a replica knows of the store's invalidation log.
//
// An entry of the log with Seq n names keys (t:<token id>, a:<account
// id>). Every value a replica caches carries a stamp: the head of the log
// read just before the row, so the row reflects every entry up to its
// stamp. A value stamped s for key k is current as far as this replica
// knows iff s >= the Seq of the latest entry naming k that it applied.
// known holds that Seq for every key named by an entry above floor;
// below floor, per key, it is forgotten, so a stamp below floor is not
// trusted.
type invLog struct {
	mu          sync.Mutex
	applied     int64 // every log entry up to here has been applied
	floor       int64
	known       map[string]int64
	initialized bool
	repairs     []tollgate.Invalidation // to replay into Redis
}

func logKey(tag, id string) string { return tag + ":" + id }

// note records inv as applied and reports whether it named a key not yet
// invalidated up to inv.Seq (an unlogged inv, Seq 0, always does).
func (l *invLog) note(inv tollgate.Invalidation) bool {
	if inv.Seq == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known == nil {
		l.known = map[string]int64{}
	}
	fresh := false
	mark := func(k string) {
		if l.known[k] < inv.Seq {
			l.known[k] = inv.Seq
			fresh = true
		}
	}
	if inv.AccountID != "" {
		mark(logKey("a", inv.AccountID))
	}
	for _, id := range inv.TokenIDs {
		mark(logKey("t", id))
	}
	if len(l.known) > maxKnown {
		l.trim()
	}
	return fresh
}

// trim forgets the older half of known and raises floor past it.
func (l *invLog) trim() {
	seqs := make([]int64, 0, len(l.known))
	for _, s := range l.known {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	cut := seqs[len(seqs)/2]
	for k, s := range l.known {
		if s <= cut {
			delete(l.known, k)
		}
	}
	l.floor = max(l.floor, cut)
}

// current reports whether a value of key k stamped stamp may be used.
func (l *invLog) current(k string, stamp int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return stamp >= max(l.floor, l.known[k])
}

// catchUp applies every log entry after the last one applied: L1 entries
// they name are dropped, and those this replica had not heard of through
// Redis are counted as replayed and queued for replay into Redis. The
// first call applies the latest initialWindow entries instead. It
// succeeds only if it read up to the head; then every write committed
// before it started has been applied, which is what makes the log a feed
// that cannot miss anything.
func (c *Cache) catchUp(ctx context.Context) error {
	c.catchMu.Lock()
	defer c.catchMu.Unlock()
	started := c.now().UnixNano()
	l := &c.invLog
	l.mu.Lock()
	after, initialized := l.applied, l.initialized
	l.mu.Unlock()

	head := func() (int64, error) {
		var h int64
		err := c.store.View(ctx, func(tx tollgate.Tx) (err error) {
			h, err = tx.LastInvalidation(ctx)
			return err
		})
		return h, err
	}
	if !initialized {
		h, err := head()
		if err != nil {
			return err
		}
		after = max(0, h-initialWindow)
		l.mu.Lock()
		l.floor = max(l.floor, after)
		l.mu.Unlock()
	}
	for pages := 0; ; pages++ {
		if pages == maxCatchUpPages {
			// Too far behind to be worth applying entry by entry: drop
			// everything and distrust every stamp below the head.
			h, err := head()
			if err != nil {
				return err
			}
			c.skipTo(h)
			break
		}
		var entries []tollgate.Invalidation
		err := c.store.View(ctx, func(tx tollgate.Tx) (err error) {
			entries, err = tx.InvalidationsAfter(ctx, after, logPage)
			return err
		})
		if err != nil {
			return err
		}
		// A gap after the last entry applied. The first read of a
		// replica starts below the window it applies, which is no entry;
		// any other after is one, and if it is gone, the gap may hide
		// entries pruned while this replica was behind (or between two
		// pages of this very catch-up).
		if len(entries) > 0 && entries[0].Seq > after+1 && after > 0 && (initialized || pages > 0) {
			pruned, err := c.prunedPast(ctx, after)
			if err != nil {
				return err
			}
			if pruned {
				c.log.Warn("tokencache: the invalidation log was pruned past this replica's last read; dropped the whole cache",
					"applied", after, "oldest", entries[0].Seq)
				c.stats.prunedBehind.Add(1)
				c.skipTo(entries[0].Seq - 1)
			}
		}
		for _, inv := range entries {
			if l.note(inv) {
				c.dropLocal(inv)
				if initialized {
					c.stats.invalidationsReplayed.Add(1)
					c.addRepair(inv)
				}
			}
			after = inv.Seq
		}
		l.mu.Lock()
		l.applied = max(l.applied, after)
		l.mu.Unlock()
		if len(entries) < logPage {
			break
		}
	}
	l.mu.Lock()
	l.initialized = true
	l.mu.Unlock()
	c.lastCatchUp.Store(started)
	c.initialized.Store(true)
	c.stats.logReads.Add(1)
	return nil
}

// prunedPast reports whether the log entry seq, which this replica
// applied, has been pruned. The log is pruned as a prefix (see
// Tx.PruneInvalidations), so a gap after an entry that is still there is
// a rolled-back append (PostgreSQL draws a seq and never gives it back),
// not a prune; a gap after an entry that is gone may hide pruned entries
// this replica never applied.
func (c *Cache) prunedPast(ctx context.Context, seq int64) (bool, error) {
	var got []tollgate.Invalidation
	err := c.store.View(ctx, func(tx tollgate.Tx) (err error) {
		got, err = tx.InvalidationsAfter(ctx, seq-1, 1)
		return err
	})
	if err != nil {
		return false, err
	}
	return len(got) == 0 || got[0].Seq != seq, nil
}

// skipTo gives up applying the log entry by entry up to seq: every L1
// entry is dropped, and no Redis entry stamped below seq is trusted.
func (c *Cache) skipTo(seq int64) {
	c.flushLocal()
	l := &c.invLog
	l.mu.Lock()
	l.floor = max(l.floor, seq)
	l.applied = max(l.applied, seq)
	l.mu.Unlock()
}

// pruneLog deletes the log entries older than log_retention (keeping the
// newest of them as the mark of the pruned prefix). Every replica does it
// now and then; it is idempotent.
func (c *Cache) pruneLog(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, c.loadTimeout)
	defer cancel()
	var n int64
	before := c.now().Add(-c.logRetention)
	err := c.store.Update(pctx, func(tx tollgate.Tx) (err error) {
		n, err = tx.PruneInvalidations(pctx, before)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("tokencache: pruning the invalidation log failed; tried again later", "err", err)
		}
		return
	}
	c.stats.logPruned.Add(uint64(n))
}

// pruneInterval is how often Run prunes the log.
func (c *Cache) pruneInterval() time.Duration {
	return min(maxPruneInterval, max(c.logRetention/4, time.Second))
}

// heartbeat catches up on the log every heartbeat interval until ctx
// ends, and replays into Redis what Redis missed.
func (c *Cache) heartbeat(ctx context.Context) {
	t := time.NewTicker(c.heartbeatInterval)
	defer t.Stop()
	for {
		c.catchUpOnce(ctx)
		if c.rdb != nil && c.repairCount() > 0 && c.redisUsable() {
			c.repairRedis(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// catchUpOnce is catchUp with a timeout, counting and logging failures
// as store failures.
func (c *Cache) catchUpOnce(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.loadTimeout)
	defer cancel()
	err := c.catchUp(cctx)
	if err != nil {
		if ctx.Err() == nil {
			c.stats.logErrors.Add(1)
			c.storeError(err, nil)
		}
		return err
	}
	c.storeUp()
	return nil
}

// logFresh reports whether the log was read up to its head within
// revalidate_after.
func (c *Cache) logFresh(now int64) bool {
	return c.initialized.Load() && time.Duration(now-c.lastCatchUp.Load()) < c.revalidateAfter
}

// feedLive reports whether this replica would hear of a write soon enough
// to trust its cache: its log reads are on time, or its Redis
// subscription is live. Either one alone covers any single fault: a
// writer cut from Redis still writes the log; a replica cut from the
// store still hears Redis. A Cache whose Run is not running has no feed
// to judge, and keeps the plain TTL rules.
func (c *Cache) feedLive(now int64) bool {
	if !c.running.Load() {
		return true
	}
	if !c.awake() {
		return false
	}
	if c.logFresh(now) {
		return true
	}
	return c.initialized.Load() && c.rdb != nil && c.subscribed.Load() && !c.redisDown.Load()
}

// mode is the Mode Stats reports.
func (c *Cache) mode() Mode {
	now := c.now().UnixNano()
	switch {
	case c.storeDown.Load():
		return ModeStale
	case !c.running.Load():
		return ModeNormal
	case !c.awake(), !c.logFresh(now), c.rdb != nil && !c.subscribed.Load():
		return ModeRevalidating
	}
	return ModeNormal
}

// pulseInterval is how often Run notes that this process is running.
const pulseInterval = 100 * time.Millisecond

// pulse notes, every pulseInterval of real time, that the process runs.
// A gap longer than revalidate_after means it did not (SIGSTOP, a frozen
// VM or container, a starved scheduler): a write may have been published
// and logged meanwhile, its message still unread in a socket buffer,
// while requests that waited in the accept queue are being answered. So
// the log is read before the pulse is noted again; until then awake is
// false and entries are revalidated with the store.
func (c *Cache) pulse(ctx context.Context) {
	t := time.NewTicker(pulseInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.awake() {
			c.catchUpOnce(ctx)
		}
		c.lastPulse.Store(time.Now().UnixNano())
	}
}

// awake reports whether the pulse was noted within revalidate_after (by
// the real clock, not the injected one: pauses are real).
func (c *Cache) awake() bool {
	return time.Duration(time.Now().UnixNano()-c.lastPulse.Load()) <= c.revalidateAfter
}

// l2Current reports whether a Redis value of tag:id stamped stamp may be
// used.
func (c *Cache) l2Current(tag, id string, stamp int64) bool {
	if !c.feedLive(c.now().UnixNano()) {
		return false
	}
	return c.invLog.current(logKey(tag, id), stamp)
}

func (c *Cache) addRepair(inv tollgate.Invalidation) {
	if c.rdb == nil {
		return
	}
	l := &c.invLog
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.repairs) >= maxRepairs {
		l.repairs = l.repairs[1:]
	}
	l.repairs = append(l.repairs, inv)
}

func (c *Cache) repairCount() int {
	c.invLog.mu.Lock()
	defer c.invLog.mu.Unlock()
	return len(c.invLog.repairs)
}

// repairRedis replays into Redis (generations bumped, entries deleted;
// nothing published, since every replica reads the log) the
// invalidations this replica applied from the log without having heard
// them: the writer could not reach Redis, and Redis may still hold what
// they invalidated. Every replica does it; it is idempotent.
func (c *Cache) repairRedis(ctx context.Context) {
	l := &c.invLog
	l.mu.Lock()
	todo := l.repairs
	l.repairs = nil
	l.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, invalidateTimeout)
	defer cancel()
	pipe := c.rdb.Pipeline()
	for _, inv := range todo {
		c.queueDrop(rctx, pipe, inv)
	}
	if _, err := pipe.Exec(rctx); err != nil {
		if ctx.Err() == nil {
			c.redisFailed(err)
		}
		l.mu.Lock()
		l.repairs = append(todo, l.repairs...)
		if len(l.repairs) > maxRepairs {
			l.repairs = l.repairs[len(l.repairs)-maxRepairs:]
		}
		l.mu.Unlock()
		return
	}
	c.redisOK()
	c.stats.redisRepairs.Add(uint64(len(todo)))
}
