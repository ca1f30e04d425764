// Package quota counts what capped tokens fetch per calendar month (UTC):
// pulls and bytes, shared by every replica through Redis (one hash per
// token and month, HINCRBY, kept 40 days), or in memory when there is no
// Redis (one replica: `tollgate dev`).
//
// Only tokens whose policy has a cap are counted or read, so tokens
// without caps never pay a Redis round trip. The edge reads the month's
// figures before a fetch and hands them to authz.Decide, which refuses
// once a cap is reached; it adds a pull when it serves one and the bytes
// once a response ends. The overshoot is bounded: the requests already
// admitted when the cap is reached (at most one per connection in flight)
// and, for bytes, the rest of the responses in flight. While Redis cannot
// be reached each replica counts on its own from zero for that time, so a
// cap can be passed by up to (replicas − 1) × cap during an outage: caps
// are a budget, not an authentication rule, and a Redis outage must not
// stop every capped customer (see docs/operations.md).
package quota

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Usage is one token's month so far.
type Usage struct {
	Pulls, Bytes int64
}

// Counter counts per token and month.
type Counter struct {
	rdb    redis.UniversalClient // nil: in memory only
	prefix string
	now    func() time.Time
	log    *slog.Logger
	down   atomic.Bool

	mu    sync.Mutex
	local map[string]*Usage // key: token id + month
}

// Options configures New.
type Options struct {
	Redis     redis.UniversalClient
	KeyPrefix string
	Now       func() time.Time
	Logger    *slog.Logger
}

// New returns a Counter. It starts nothing.
func New(o Options) *Counter {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Counter{rdb: o.Redis, prefix: o.KeyPrefix + "v1:quota:", now: o.Now, log: o.Logger, local: map[string]*Usage{}}
}

// Month names the calendar month (UTC) of t, as counters are keyed.
func Month(t time.Time) string { return t.UTC().Format("200601") }

func (c *Counter) key(tokenID string) string {
	return c.prefix + "{" + tokenID + "}:" + Month(c.now())
}

// Get returns the token's usage this month.
func (c *Counter) Get(ctx context.Context, tokenID string) Usage {
	key := c.key(tokenID)
	if c.rdb != nil {
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		v, err := c.rdb.HMGet(ctx, key, "p", "b").Result()
		if c.ok(err) {
			return Usage{Pulls: toInt(v[0]), Bytes: toInt(v[1])}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if u := c.local[key]; u != nil {
		return *u
	}
	return Usage{}
}

// Add counts pulls and bytes for the token this month.
func (c *Counter) Add(ctx context.Context, tokenID string, pulls, bytes int64) {
	if pulls == 0 && bytes == 0 {
		return
	}
	key := c.key(tokenID)
	if c.rdb != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 200*time.Millisecond)
		defer cancel()
		_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HIncrBy(ctx, key, "p", pulls)
			p.HIncrBy(ctx, key, "b", bytes)
			p.Expire(ctx, key, 40*24*time.Hour)
			return nil
		})
		if c.ok(err) {
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.local[key]
	if u == nil {
		c.sweep()
		u = &Usage{}
		c.local[key] = u
	}
	u.Pulls += pulls
	u.Bytes += bytes
}

// sweep drops other months' local counters. Called with mu held.
func (c *Counter) sweep() {
	month := Month(c.now())
	for k := range c.local {
		if len(k) < len(month) || k[len(k)-len(month):] != month {
			delete(c.local, k)
		}
	}
}

// ok notes Redis failing and recovering, once each.
func (c *Counter) ok(err error) bool {
	if err != nil && err != redis.Nil {
		if !c.down.Swap(true) {
			c.log.Warn("quota: Redis unavailable, counting caps per replica", "err", err)
		}
		return false
	}
	if c.down.Swap(false) {
		c.log.Info("quota: Redis back, caps counted across replicas again")
	}
	return true
}

func toInt(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
