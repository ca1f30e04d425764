package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func exercise(t *testing.T, a, b *Limiter, c *clock) {
	t.Helper()
	ctx := context.Background()
	for i := range 5 {
		if blocked, _ := a.Blocked(ctx, "10.0.0.1"); blocked {
			t.Fatalf("blocked after %d failures, burst is 5", i)
		}
		a.Fail(ctx, "10.0.0.1")
	}
	blocked, retry := b.Blocked(ctx, "10.0.0.1")
	if !blocked || retry <= 0 || retry > 2*time.Second {
		t.Fatalf("after the burst: blocked=%v retry=%v (want blocked, retry within 2 s at 60/min)", blocked, retry)
	}
	if blocked, _ := b.Blocked(ctx, "10.0.0.2"); blocked {
		t.Fatal("another address is blocked")
	}
	c.Add(1100 * time.Millisecond) // one token back at 60/min
	if blocked, _ := b.Blocked(ctx, "10.0.0.1"); blocked {
		t.Fatal("still blocked after a token came back")
	}
	b.Fail(ctx, "10.0.0.1")
	if blocked, _ := a.Blocked(ctx, "10.0.0.1"); !blocked {
		t.Fatal("the refilled token was not taken")
	}
}

func TestLocalBucket(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 60, Burst: 5, Now: c.Now})
	exercise(t, l, l, c)
	if New(Options{PerMinute: 0}) != nil {
		t.Fatal("a zero rate must disable the limiter")
	}
	var off *Limiter
	if blocked, _ := off.Blocked(context.Background(), "x"); blocked {
		t.Fatal("a nil limiter blocks")
	}
}

func TestSharedThroughRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "tgtest-" + hex.EncodeToString(b) + ":"
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	// Two replicas: failures counted by one block the address on the other.
	r1 := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, KeyPrefix: prefix, Now: c.Now})
	r2 := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, KeyPrefix: prefix, Now: c.Now})
	exercise(t, r1, r2, c)
}

func TestRedisDownFallsBackToLocal(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, Now: c.Now})
	exercise(t, l, l, c)
}

func TestMemoryIsBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 60, Burst: 5, Now: c.Now})
	for i := range maxBuckets + 1000 {
		l.Fail(context.Background(), string(rune(i)))
	}
	if n := len(l.buckets); n > maxBuckets {
		t.Fatalf("%d buckets kept, bound is %d", n, maxBuckets)
	}
}
