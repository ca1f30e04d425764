// Package ratelimit is tollgate's one limiter of failed authentications:
// a token bucket per key (a client address; for console sign-ins also an
// e-mail). Each failure takes a token, tokens come back at a steady rate,
// and a key with an empty bucket is refused (429). Successful requests
// take nothing, so a valid credential is never slowed by anyone else's
// failures.
//
// Two ways to charge: Blocked then Fail (the registry routes: ask, look
// the credential up, count it if it failed), or Take, which checks and
// charges in one atomic step, for callers that must count an attempt
// before a slow check so that concurrent attempts cannot all pass the
// limit (console sign-ins: Refund gives the token back if the attempt was
// not a failure, Reset forgets a key after a success).
//
// With Redis the buckets are shared by every replica (one Lua script per
// call, atomic, at most redisTimeout); without it, or while Redis fails,
// each replica keeps its own in memory. A failed call marks Redis down:
// from then on no request waits for it (Redis refused, killed or
// blackholed costs one call, not one per request), and a background ping
// checks it again after a back-off (1s doubling to 30s) until it answers.
// The in-memory buckets are bounded: when full, buckets that are full again go first,
// then those that do not block, so that a flood of new keys cannot evict
// the bucket of a key under attack.
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

	"github.com/tollgate/tollgate/internal/bounded"
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
	probeAt   atomic.Int64 // unix ns: when to ping Redis again while it is down
	backoff   atomic.Int64 // the current wait between pings
	probing   atomic.Bool

	mu      sync.Mutex
	buckets *bounded.Map[string, *bucket]
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
	// Every, if set, replaces PerMinute: one token back per Every (for
	// slow rates, such as 5 sign-ins per 15 minutes).
	Every     time.Duration
	Burst     int
	Redis     redis.UniversalClient // optional
	KeyPrefix string                // Redis key prefix
	Logger    *slog.Logger
	Now       func() time.Time
}

// New returns a Limiter, or nil (which allows everything) when PerMinute is 0.
func New(o Options) *Limiter {
	rate := float64(o.PerMinute) / 60
	if o.Every > 0 {
		rate = 1 / o.Every.Seconds()
	}
	if rate <= 0 {
		return nil
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		rate: rate, burst: float64(max(o.Burst, 1)), now: o.Now,
		rdb: o.Redis, prefix: o.KeyPrefix + "v1:rl:", log: o.Logger,
	}
	l.buckets = bounded.New(bounded.Options[string, *bucket]{
		MaxEntries: maxBuckets,
		Now:        o.Now,
		// When full: buckets that are full again go first, then those
		// that would not block (a flood of new keys each holds one
		// failure), and only then, if every bucket blocks, any. The
		// buckets of keys under attack are the last to go.
		Rank: func(now time.Time, _ string, b *bucket) bounded.Rank {
			switch tokens := b.tokens + now.Sub(b.last).Seconds()*l.rate; {
			case tokens >= l.burst:
				return bounded.Expired
			case tokens >= 1:
				return bounded.Reclaimable
			}
			return bounded.Keep
		},
	})
	return l
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

// Take checks and charges key's bucket in one atomic step: with a token
// left it takes it and reports false; with none it takes nothing and
// reports true and when a token is back.
func (l *Limiter) Take(ctx context.Context, key string) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	tokens, ok := l.redisCall(ctx, key, costTake)
	if !ok {
		tokens = l.local(key, costTake)
	}
	// tokens is what is left: -1 marks a refusal (nothing was taken).
	if tokens >= 0 {
		return false, 0
	}
	left := tokens + 1 // what the bucket held
	return true, max(time.Second, time.Duration(math.Ceil((1-left)/l.rate))*time.Second)
}

// Refund gives back a token that Take took for an attempt that turned out
// not to be a failure.
func (l *Limiter) Refund(ctx context.Context, key string) {
	if l == nil {
		return
	}
	if _, ok := l.redisCall(ctx, key, -1); !ok {
		l.local(key, -1)
	}
}

// Reset forgets key's bucket (a successful sign-in clears its e-mail).
func (l *Limiter) Reset(ctx context.Context, key string) {
	if l == nil {
		return
	}
	if l.redisUsable() {
		ctx, cancel := context.WithTimeout(ctx, redisTimeout)
		defer cancel()
		if err := l.rdb.Del(ctx, l.redisKey(key)).Err(); err != nil {
			l.redisFailed(err)
		}
	}
	l.mu.Lock()
	l.buckets.Delete(key)
	l.mu.Unlock()
}

// Stats reports the in-memory buckets and the bytes of their keys.
func (l *Limiter) Stats() (buckets, keyBytes int) {
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buckets.All(func(k string, _ *bucket) bool {
		keyBytes += len(k)
		return true
	})
	return l.buckets.Len(), keyBytes
}

// costTake asks local and the script to take a token only if one is
// left, and to answer -1 + what was left otherwise.
const costTake = -2

// local refills key's bucket, takes cost tokens (not below zero) and
// returns what is left.
func (l *Limiter) local(key string, cost float64) float64 {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets.Get(key)
	if !ok {
		if cost <= 0 && cost != costTake {
			return l.burst // nothing to take: no bucket needed
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets.Put(key, b)
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if cost == costTake {
		if b.tokens < 1 {
			return b.tokens - 1
		}
		cost = 1
	}
	b.tokens = math.Min(l.burst, math.Max(0, b.tokens-cost))
	return b.tokens
}

// bucketScript refills and charges one bucket atomically:
// KEYS[1] bucket; ARGV rate/s, burst, now (µs), cost. Returns tokens left
// as a string (Lua numbers come back as integers otherwise). Cost -2
// (costTake) takes one token only if one is left, and returns what was
// left minus one otherwise; a negative cost gives tokens back.
var bucketScript = redis.NewScript(`
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 't', 'l')
local tokens, last = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, last = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - last) / 1e6 * rate)
if cost == -2 then
  if tokens < 1 then return tostring(tokens - 1) end
  cost = 1
end
tokens = math.min(burst, math.max(0, tokens - cost))
if cost > 0 or b[1] then
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'l', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
return tostring(tokens)
`)

// Redis back-off: how long one call may take, and the wait between
// pings while Redis is down.
const (
	redisTimeout = 200 * time.Millisecond
	minBackoff   = time.Second
	maxBackoff   = 30 * time.Second
)

func (l *Limiter) redisCall(ctx context.Context, key string, cost float64) (float64, bool) {
	if !l.redisUsable() {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	now := l.now().UnixMicro()
	v, err := bucketScript.Run(ctx, l.rdb, []string{l.redisKey(key)}, l.rate, l.burst, now, cost).Text()
	if err != nil {
		l.redisFailed(err)
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

// redisUsable reports whether a request may use Redis: while it works.
// While it is down, a request past the back-off starts one ping in the
// background and goes on with the local buckets without waiting for it.
func (l *Limiter) redisUsable() bool {
	if l.rdb == nil {
		return false
	}
	if !l.redisDown.Load() {
		return true
	}
	if l.now().UnixNano() >= l.probeAt.Load() && l.probing.CompareAndSwap(false, true) {
		go func() {
			defer l.probing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := l.rdb.Ping(ctx).Err(); err != nil {
				l.redisFailed(err)
				return
			}
			if l.redisDown.Swap(false) {
				l.log.Info("rate limiter: Redis back, limits shared again")
			}
		}()
	}
	return false
}

// redisFailed takes Redis for down until the next ping, doubling the wait
// on each failure in a row.
func (l *Limiter) redisFailed(err error) {
	wait := time.Duration(l.backoff.Load())
	if !l.redisDown.Swap(true) {
		l.log.Warn("rate limiter: Redis unavailable, limiting per replica", "err", err)
		wait = minBackoff
	} else {
		wait = min(2*max(wait, minBackoff/2), maxBackoff)
	}
	l.backoff.Store(int64(wait))
	l.probeAt.Store(l.now().Add(wait).UnixNano())
}

func (l *Limiter) redisKey(key string) string { return "{" + l.prefix + key + "}" }
