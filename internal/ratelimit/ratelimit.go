// Package ratelimit limits failed authentications per client address with
// a token bucket: each failure takes a token, tokens come back at a steady
// rate, and an address with an empty bucket is refused (429) before its
// credentials are even looked at. Successful requests take nothing, so a
// valid token is never slowed by anyone else's failures.
//
// With Redis the buckets are shared by every replica (one Lua script per
// call, atomic); without it, or while Redis fails, each replica keeps its
// own in memory.
package ratelimit

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter is a set of token buckets, one per key (a client IP).
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	rdb       redis.UniversalClient
	prefix    string
	log       *slog.Logger
	redisDown atomic.Bool

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the in-memory map; full buckets are dropped first.
const maxBuckets = 100_000

// Options configures a Limiter.
type Options struct {
	PerMinute int // sustained failures per minute; 0 disables the limiter
	Burst     int
	Redis     redis.UniversalClient // optional
	KeyPrefix string                // Redis key prefix
	Logger    *slog.Logger
	Now       func() time.Time
}

// New returns a Limiter, or nil (which allows everything) when PerMinute is 0.
func New(o Options) *Limiter {
	if o.PerMinute <= 0 {
		return nil
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{
		rate: float64(o.PerMinute) / 60, burst: float64(max(o.Burst, 1)), now: o.Now,
		rdb: o.Redis, prefix: o.KeyPrefix + "v1:rl:", log: o.Logger,
		buckets: map[string]*bucket{},
	}
}

// Blocked reports whether key's bucket is empty, and when a token is back.
func (l *Limiter) Blocked(ctx context.Context, key string) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	tokens, ok := l.redisCall(ctx, key, 0)
	if !ok {
		tokens = l.local(key, 0)
	}
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration(math.Ceil((1-tokens)/l.rate)) * time.Second
}

// Fail takes a token from key's bucket.
func (l *Limiter) Fail(ctx context.Context, key string) {
	if l == nil {
		return
	}
	if _, ok := l.redisCall(ctx, key, 1); !ok {
		l.local(key, 1)
	}
}

// local refills key's bucket, takes cost tokens (not below zero) and
// returns what is left.
func (l *Limiter) local(key string, cost float64) float64 {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if cost == 0 {
			return l.burst
		}
		if len(l.buckets) >= maxBuckets {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	b.tokens = math.Max(0, b.tokens-cost)
	return b.tokens
}

// sweep drops buckets that are full again, then, if still too many, any.
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < maxBuckets*7/8 {
			break
		}
		delete(l.buckets, k)
	}
}

// bucketScript refills and charges one bucket atomically:
// KEYS[1] bucket; ARGV rate/s, burst, now (µs), cost. Returns tokens left
// as a string (Lua numbers come back as integers otherwise).
var bucketScript = redis.NewScript(`
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 't', 'l')
local tokens, last = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, last = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - last) / 1e6 * rate)
tokens = math.max(0, tokens - cost)
if cost > 0 or b[1] then
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'l', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
return tostring(tokens)
`)

func (l *Limiter) redisCall(ctx context.Context, key string, cost float64) (float64, bool) {
	if l.rdb == nil {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	now := l.now().UnixMicro()
	v, err := bucketScript.Run(ctx, l.rdb, []string{"{" + l.prefix + key + "}"}, l.rate, l.burst, now, cost).Text()
	if err != nil {
		if !l.redisDown.Swap(true) {
			l.log.Warn("rate limiter: Redis unavailable, limiting per replica", "err", err)
		}
		return 0, false
	}
	if l.redisDown.Swap(false) {
		l.log.Info("rate limiter: Redis back, limits shared again")
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}
