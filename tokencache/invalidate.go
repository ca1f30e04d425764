package tokencache

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate"
)

// Pacing of the background work.
const (
	// invalidateTimeout bounds the Redis part of a retry or a repair by
	// Run (Invalidate itself, on the writer's request path, gives Redis
	// redisLookupTimeout).
	invalidateTimeout = 2 * time.Second
	// retryInterval is how often Run retries invalidations Redis refused.
	retryInterval = time.Second
	// maxPending bounds the invalidations kept for retry. Writes are rare;
	// reaching it means Redis has been gone for long, and the TTLs bound
	// what the dropped ones cost.
	maxPending = 10_000
	// subscribeTimeout bounds the wait for Redis to confirm a subscription.
	subscribeTimeout = 5 * time.Second
	// healthInterval: a subscription silent this long is pinged; silent
	// twice as long, it is taken for lost.
	healthInterval = 5 * time.Second
	// Backoff between subscription attempts.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Invalidate drops what inv names from every layer: the local L1 at once,
// then in Redis (generation bumped, entry deleted) and, through the
// channel, from the L1 of every replica. The account entry is always
// dropped when inv names an account: tollgate.Invalidation cannot say
// whether a write that lists tokens changed the account too (GrantPackages
// changes both). Wire it as Service.Changed; it is called after the
// commit.
//
// If Redis cannot be reached, the Redis part is retried by Run until it
// succeeds; meanwhile other replicas see the write within l1_ttl (their
// L1 expires and they read the store).
func (c *Cache) Invalidate(ctx context.Context, inv tollgate.Invalidation) {
	if inv.AccountID == "" && len(inv.TokenIDs) == 0 {
		return
	}
	c.stats.invalidations.Add(1)
	c.invLog.note(inv)
	c.dropLocal(inv)
	if c.rdb == nil {
		return
	}
	if !c.redisUsable() {
		c.addPending(inv)
		return
	}
	// Bounded like a lookup's Redis commands, not by invalidateTimeout:
	// the API answers after this, and a blackholed Redis held it for the
	// whole timeout; what fails here is retried by Run, and the log
	// carries it to every replica meanwhile.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisLookupTimeout)
	defer cancel()
	if err := c.publish(ctx, inv); err != nil {
		c.redisFailed(err)
		c.addPending(inv)
		return
	}
	c.redisOK()
	// Again: between the first drop and the delete in Redis, a local
	// reader may have copied the old Redis entry into L1.
	c.dropLocal(inv)
}

// publish bumps the generations and deletes the entries in Redis, and
// then, once that is done, publishes inv: a replica that hears it and
// reloads must not find the old entry in Redis. (In a Cluster the keys and
// the channel may live on different nodes; one pipeline would not order
// them.)
func (c *Cache) publish(ctx context.Context, inv tollgate.Invalidation) error {
	pipe := c.rdb.Pipeline()
	c.queueDrop(ctx, pipe, inv)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	msg, err := json.Marshal(wireInvalidation{V: FormatVersion, Seq: inv.Seq, AccountID: inv.AccountID, TokenIDs: inv.TokenIDs})
	if err != nil {
		return err
	}
	return c.rdb.Publish(ctx, c.keys.channel(), msg).Err()
}

// queueDrop adds to pipe the commands that invalidate what inv names in
// Redis: generations bumped (a load in flight cannot set its old value
// after them), entries deleted.
func (c *Cache) queueDrop(ctx context.Context, pipe redis.Pipeliner, inv tollgate.Invalidation) {
	drop := func(tag, id string) {
		data, gen := c.keys.entity(tag, id)
		pipe.Incr(ctx, gen)
		pipe.PExpire(ctx, gen, genTTL)
		pipe.Del(ctx, data)
	}
	if inv.AccountID != "" {
		drop("a", inv.AccountID)
	}
	for _, id := range inv.TokenIDs {
		drop("t", id)
	}
}

// dropLocal deletes what inv names from L1. The epoch changes first, so
// that a load in flight does not put back what it read before (see
// Cache.epoch).
func (c *Cache) dropLocal(inv tollgate.Invalidation) {
	c.epoch.Add(1)
	if inv.AccountID != "" {
		c.accounts.del(inv.AccountID)
	}
	for _, id := range inv.TokenIDs {
		c.tokens.del(id)
	}
}

// flushLocal drops every token and account entry, and the negative
// entries. The hash → id mappings stay: they never change, so no missed
// invalidation can have been about them.
func (c *Cache) flushLocal() {
	c.epoch.Add(1)
	c.tokens.clear()
	c.accounts.clear()
	c.negative.clear()
	c.stats.flushes.Add(1)
}

func (c *Cache) addPending(inv tollgate.Invalidation) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	if len(c.pending) >= maxPending {
		c.pending = c.pending[1:]
		c.stats.invalidationsDropped.Add(1)
		c.log.Error("tokencache: too many invalidations waiting for redis; dropped the oldest (its entries expire with redis_ttl)",
			"account", inv.AccountID)
	}
	c.pending = append(c.pending, inv)
}

// retryPending delivers the invalidations Redis refused, oldest first.
func (c *Cache) retryPending(ctx context.Context) {
	c.pendingMu.Lock()
	todo := c.pending
	c.pending = nil
	c.pendingMu.Unlock()
	for i, inv := range todo {
		pctx, cancel := context.WithTimeout(ctx, invalidateTimeout)
		err := c.publish(pctx, inv)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.redisFailed(err)
			}
			c.pendingMu.Lock()
			c.pending = append(todo[i:len(todo):len(todo)], c.pending...)
			c.pendingMu.Unlock()
			return
		}
		c.redisOK()
		c.dropLocal(inv)
	}
}

func (c *Cache) pendingCount() int {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	return len(c.pending)
}

// Run does the background work until ctx ends: with Redis, it listens for
// invalidations from every replica (flushing L1 whenever it subscribes,
// since it may have missed some) and retries invalidations Redis refused;
// always, it writes recorded usage every usage interval. It returns nil
// when ctx ends; call Close after it to write the last usage.
//
// A Cache with Redis whose Run is not running does not hear other
// replicas' writes: its L1 entries then live out their l1_ttl.
func (c *Cache) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("tokencache: Run called twice")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	c.lastPulse.Store(time.Now().UnixNano())
	wg.Go(func() { c.pulse(ctx) })
	wg.Go(func() { c.heartbeat(ctx) })
	if c.rdb != nil {
		wg.Go(func() { c.listen(ctx) })
	}
	usageTick := time.NewTicker(c.usageInterval)
	defer usageTick.Stop()
	retry := c.after(retryInterval)
	// Replicas started together spread their first prune over the
	// interval.
	prune := c.after(rand.N(c.pruneInterval()))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune:
			c.pruneLog(ctx)
			prune = c.after(c.pruneInterval())
		case <-usageTick.C:
			fctx, cancel := context.WithTimeout(ctx, c.usageInterval)
			if err := c.Flush(fctx); err != nil && ctx.Err() == nil {
				c.log.Warn("tokencache: writing token usage failed; kept for the next try", "err", err)
			}
			cancel()
		case <-retry:
			c.probeRedis(ctx)
			if c.rdb != nil && c.pendingCount() > 0 {
				c.retryPending(ctx)
			}
			if c.rdb != nil && c.repairCount() > 0 && c.redisUsable() {
				c.repairRedis(ctx)
			}
			retry = c.after(retryInterval)
		}
	}
}

// listen keeps a subscription to the invalidation channel until ctx ends.
func (c *Cache) listen(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		confirmed, err := c.subscribeOnce(ctx)
		c.subscribed.Store(false)
		if ctx.Err() != nil {
			return
		}
		c.redisFailed(err)
		if confirmed {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-c.after(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// subscribeOnce subscribes, flushes L1 once Redis confirms, and applies
// invalidations until the subscription fails. It reports whether the
// subscription was confirmed.
func (c *Cache) subscribeOnce(ctx context.Context) (bool, error) {
	ps := c.rdb.Subscribe(ctx, c.keys.channel())
	defer ps.Close()
	// A blocked read does not watch ctx; closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	msg, err := ps.ReceiveTimeout(ctx, subscribeTimeout)
	if err != nil {
		return false, err
	}
	if s, ok := msg.(*redis.Subscription); !ok || s.Kind != "subscribe" {
		return false, errors.New("tokencache: unexpected reply to SUBSCRIBE")
	}
	c.redisOK()
	// Messages published from now on reach us; what was published before
	// may not have. Catch up on the log before trusting Redis again: it
	// has every write, also those whose writer could not reach Redis, and
	// replay those into Redis. The flush is for a log that cannot be read
	// now (store down): then only the stamps guard Redis entries.
	if err := c.catchUpOnce(ctx); err == nil && c.repairCount() > 0 {
		c.repairRedis(ctx)
	}
	c.flushLocal()
	c.subscribed.Store(true)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			if isTimeout(err) && !pinged {
				if err := ps.Ping(ctx); err != nil {
					return true, err
				}
				pinged = true
				continue
			}
			return true, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			c.apply(m.Payload)
		case *redis.Subscription:
			// go-redis resubscribed on a new connection by itself:
			// messages may have been lost in between.
			if m.Kind == "subscribe" {
				c.flushLocal()
			}
		}
	}
}

// apply drops what an invalidation message names. A message it cannot
// read flushes everything rather than risk keeping what it named.
func (c *Cache) apply(payload string) {
	c.stats.invalidationsReceived.Add(1)
	var w wireInvalidation
	if err := json.Unmarshal([]byte(payload), &w); err != nil || w.V != FormatVersion {
		c.log.Warn("tokencache: unreadable invalidation message; flushing the in-process cache")
		c.flushLocal()
		return
	}
	inv := tollgate.Invalidation{Seq: w.Seq, AccountID: w.AccountID, TokenIDs: w.TokenIDs}
	// Already applied (this replica's own, or read from the log first):
	// dropping again would only cost reloads.
	if c.invLog.note(inv) {
		c.dropLocal(inv)
	}
}
