package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

func exercise(t *testing.T, a, b *Limiter, c *testenv.Clock) {
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
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
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
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	// Two replicas: failures counted by one block the address on the other.
	r1 := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, KeyPrefix: prefix, Now: c.Now})
	r2 := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, KeyPrefix: prefix, Now: c.Now})
	exercise(t, r1, r2, c)
}

func TestRedisDownFallsBackToLocal(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	l := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, Now: c.Now})
	exercise(t, l, l, c)
}

func TestMemoryIsBounded(t *testing.T) {
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	l := New(Options{PerMinute: 60, Burst: 5, Now: c.Now})
	for i := range maxBuckets + 1000 {
		l.Fail(context.Background(), string(rune(i)))
	}
	if n := l.buckets.Len(); n > maxBuckets {
		t.Fatalf("%d buckets kept, bound is %d", n, maxBuckets)
	}
}

// exerciseTake: Take counts before the (slow) check it guards, so that
// attempts racing each other cannot all pass; Refund and Reset give back.
func exerciseTake(t *testing.T, a, b *Limiter, c *testenv.Clock) {
	t.Helper()
	ctx := context.Background()
	const key = "console-email:victim@example.com"
	var wg sync.WaitGroup
	var passed sync.Map
	for i := range 30 {
		wg.Go(func() {
			l := a
			if i%2 == 1 {
				l = b
			}
			if blocked, _ := l.Take(ctx, key); !blocked {
				passed.Store(i, true)
			}
		})
	}
	wg.Wait()
	n := 0
	passed.Range(func(any, any) bool { n++; return true })
	if n != 5 {
		t.Fatalf("%d of 30 concurrent attempts passed; the burst is 5", n)
	}
	blocked, retry := b.Take(ctx, key)
	if !blocked || retry <= 0 || retry > 2*time.Second {
		t.Fatalf("after the burst: blocked=%v retry=%v", blocked, retry)
	}
	a.Refund(ctx, key) // that attempt was not a failure after all
	if blocked, _ := b.Take(ctx, key); blocked {
		t.Fatal("a refunded token was not given back")
	}
	if blocked, _ := a.Take(ctx, key); !blocked {
		t.Fatal("blocked key passed")
	}
	b.Reset(ctx, key)
	for i := range 5 {
		if blocked, _ := a.Take(ctx, key); blocked {
			t.Fatalf("after Reset: blocked at attempt %d", i)
		}
	}
	if blocked, _ := a.Blocked(ctx, key); !blocked {
		t.Fatal("Blocked does not see what Take took")
	}
}

func TestTakeLocal(t *testing.T) {
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	l := New(Options{PerMinute: 60, Burst: 5, Now: c.Now})
	exerciseTake(t, l, l, c)
}

func TestTakeSharedThroughRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "tgtest-" + hex.EncodeToString(b) + ":"
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	r1 := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, KeyPrefix: prefix, Now: c.Now})
	r2 := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, KeyPrefix: prefix, Now: c.Now})
	exerciseTake(t, r1, r2, c)
}

func TestTakeRedisDownFallsBackToLocal(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	l := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, Now: c.Now})
	exerciseTake(t, l, l, c)
}

// TestFloodCannotEvictABlockedBucket: one failure from each of many keys
// (addresses) fills the map; the sweep dropped any bucket, the blocked
// e-mail's among them, which unblocked it.
func TestFloodCannotEvictABlockedBucket(t *testing.T) {
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	l := New(Options{Every: 3 * time.Minute, Burst: 5, Now: c.Now})
	ctx := context.Background()
	for range 5 {
		l.Take(ctx, "console-email:victim@example.com")
	}
	for i := range maxBuckets + 5000 {
		l.Take(ctx, fmt.Sprintf("console-ip:2001:db8::%x", i))
	}
	if n, _ := l.Stats(); n > maxBuckets {
		t.Fatalf("%d buckets, bound %d", n, maxBuckets)
	}
	if blocked, _ := l.Take(ctx, "console-email:victim@example.com"); !blocked {
		t.Fatal("the flood evicted the blocked e-mail's bucket")
	}
}

func TestEverySetsSlowRates(t *testing.T) {
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	l := New(Options{Every: 3 * time.Minute, Burst: 1, Now: c.Now})
	ctx := context.Background()
	l.Take(ctx, "k")
	if blocked, retry := l.Take(ctx, "k"); !blocked || retry != 3*time.Minute {
		t.Fatalf("blocked=%v retry=%v, want 3m", blocked, retry)
	}
	c.Add(3 * time.Minute)
	if blocked, _ := l.Take(ctx, "k"); blocked {
		t.Fatal("no token back after Every")
	}
}
