package quota

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

func prefix(t *testing.T) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "quota-test-" + hex.EncodeToString(b) + ":"
}

// TestCapsCountAcrossReplicas: two replicas sharing Redis see each
// other's pulls and bytes, concurrent adds included, and a new month
// starts from zero.
func TestCapsCountAcrossReplicas(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	p := prefix(t)
	a := New(Options{Redis: rdb, KeyPrefix: p, Now: clock})
	b := New(Options{Redis: rdb, KeyPrefix: p, Now: clock})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 50 {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Go(func() { c.Add(ctx, "tok_1", 1, 100) })
	}
	wg.Wait()
	if u := b.Get(ctx, "tok_1"); u.Pulls != 50 || u.Bytes != 5000 {
		t.Fatalf("usage seen by the other replica = %+v", u)
	}
	if u := a.Get(ctx, "tok_2"); u != (Usage{}) {
		t.Fatalf("another token's usage = %+v", u)
	}
	now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if u := a.Get(ctx, "tok_1"); u != (Usage{}) {
		t.Fatalf("usage in a new month = %+v", u)
	}
}

// TestCapsWithoutRedisCountInMemory: `tollgate dev` has no Redis; a
// replica whose Redis is gone counts on its own rather than stop.
func TestCapsWithoutRedisCountInMemory(t *testing.T) {
	ctx := context.Background()
	c := New(Options{})
	c.Add(ctx, "tok_1", 2, 10)
	c.Add(ctx, "tok_1", 1, 5)
	if u := c.Get(ctx, "tok_1"); u.Pulls != 3 || u.Bytes != 15 {
		t.Fatalf("in-memory usage = %+v", u)
	}
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	d := New(Options{Redis: dead})
	d.Add(ctx, "tok_1", 1, 0)
	if u := d.Get(ctx, "tok_1"); u.Pulls != 1 {
		t.Fatalf("usage with Redis down = %+v", u)
	}
}
