package tokencache

import (
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate"
)

// Bounds of the usage buffer.
const (
	// minUsageEntries is the least number of tokens whose usage is kept
	// between two writes; the bound is max(l1_size, this). Uses of further
	// tokens are dropped (and counted) until the next write.
	minUsageEntries = 10_000
	maxUAlen        = 512
	maxIPLen        = 64
)

// usageBuffer aggregates uses per token between two writes.
type usageBuffer struct {
	mu    sync.Mutex
	m     map[string]*tollgate.TokenUsage
	max   int
	flush sync.Mutex // one write at a time
}

func (b *usageBuffer) init(max int) {
	b.m = make(map[string]*tollgate.TokenUsage)
	b.max = max
}

// RecordUse notes one request served with the token: when, from which
// client address, with which user agent. It only updates memory, under a
// lock held for a map update: Run writes the sum to the store, at most
// once per token per usage interval. Long user agents are truncated.
func (c *Cache) RecordUse(tokenID, ip, userAgent string, at time.Time) {
	if tokenID == "" {
		return
	}
	if !c.usage.add(tollgate.TokenUsage{TokenID: tokenID, At: at, IP: truncate(ip, maxIPLen), UA: truncate(userAgent, maxUAlen), Pulls: 1}) {
		c.stats.usageDropped.Add(1)
	}
}

// RecordSecretUse is RecordUse saying which secret was used: previous is
// true for the token's previous secret during a rotation's grace (see
// tollgate.Token.IsPrevious), whose own last-use data is then kept too.
func (c *Cache) RecordSecretUse(tokenID string, previous bool, ip, userAgent string, at time.Time) {
	if tokenID == "" {
		return
	}
	if !c.usage.add(tollgate.TokenUsage{TokenID: tokenID, At: at, IP: truncate(ip, maxIPLen), UA: truncate(userAgent, maxUAlen), Pulls: 1, Previous: previous}) {
		c.stats.usageDropped.Add(1)
	}
}

// usageKey keeps the uses of a token's two secrets apart.
func usageKey(u tollgate.TokenUsage) string {
	if u.Previous {
		return u.TokenID + "\x00previous"
	}
	return u.TokenID
}

// add merges u into the buffer: pulls add up, the latest use gives time,
// address and user agent. It reports false if the buffer is full.
func (b *usageBuffer) add(u tollgate.TokenUsage) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, ok := b.m[usageKey(u)]
	if !ok {
		if len(b.m) >= b.max {
			return false
		}
		cp := u
		b.m[usageKey(u)] = &cp
		return true
	}
	cur.Pulls += u.Pulls
	if !u.At.Before(cur.At) {
		cur.At, cur.IP, cur.UA = u.At, u.IP, u.UA
	}
	return true
}

// take empties the buffer and returns what it held.
func (b *usageBuffer) take() []tollgate.TokenUsage {
	b.mu.Lock()
	m := b.m
	b.m = make(map[string]*tollgate.TokenUsage, len(m))
	b.mu.Unlock()
	out := make([]tollgate.TokenUsage, 0, len(m))
	for _, u := range m {
		out = append(out, *u)
	}
	return out
}

// Flush writes the usage recorded so far to the store in one batch. What
// the store refuses is kept for the next Flush.
func (c *Cache) Flush(ctx context.Context) error {
	c.usage.flush.Lock()
	defer c.usage.flush.Unlock()
	batch := c.usage.take()
	if len(batch) == 0 {
		return nil
	}
	if err := c.store.RecordUsage(ctx, batch); err != nil {
		c.stats.usageFlushErrors.Add(1)
		for _, u := range batch {
			if !c.usage.add(u) {
				c.stats.usageDropped.Add(uint64(u.Pulls))
			}
		}
		return err
	}
	c.stats.usageFlushes.Add(1)
	c.stats.usageTokens.Add(uint64(len(batch)))
	return nil
}

// Close writes the usage recorded since the last write. Call it after
// Run has returned, with a deadline; the Cache stays usable.
func (c *Cache) Close(ctx context.Context) error {
	if err := c.Flush(ctx); err != nil {
		return errors.Join(errors.New("tokencache: writing token usage on close"), err)
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
