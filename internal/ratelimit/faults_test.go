package ratelimit

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

// link is a TCP link to Redis the test can blackhole (connections are
// accepted and never answered) or restore.
type link struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newLink(t *testing.T, target string) *link {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns = append(l.conns, c)
			l.mu.Unlock()
			if !l.up.Load() {
				continue // blackholed: held, never answered
			}
			go func() {
				s, err := net.Dial("tcp", l.target)
				if err != nil {
					c.Close()
					return
				}
				go io.Copy(s, c)
				io.Copy(c, s)
				s.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); l.cut() })
	return l
}

// cut closes every connection so far (the client reconnects).
func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// countingHook counts the limiter's commands a client sends (not pings,
// nor what go-redis sends to set a connection up).
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch cmd.Name() {
		case "evalsha", "eval", "del":
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestBlackholedRedisIsNotATaxOnEveryRequest: with Redis blackholed every
// limiter call waited 200 ms for it (/token p50 202 ms, p99 1.2 s). Now
// the first failure takes Redis for down: the calls after it use the local
// buckets at once, and Redis is pinged in the background after a
// back-off, never on a request's time. When it answers again, limits are
// shared again.
func TestBlackholedRedisIsNotATaxOnEveryRequest(t *testing.T) {
	lk := newLink(t, testenv.RedisAddr(t))
	rdb := redis.NewClient(&redis.Options{Addr: lk.ln.Addr().String(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	hook := &countingHook{}
	rdb.AddHook(hook)
	c := testenv.NewClock(time.Unix(1_800_000_000, 0))
	l := New(Options{PerMinute: 60, Burst: 5, Redis: rdb, KeyPrefix: "tgtest-rl-blackhole:", Now: c.Now})
	ctx := context.Background()

	const calls = 1000
	var worst, total time.Duration
	var slow int
	for i := range calls {
		start := time.Now()
		l.Blocked(ctx, "10.0.0.1")
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		if d >= 100*time.Millisecond {
			slow++
		}
		if i == 0 {
			t.Logf("first call (finds Redis blackholed): %v", d.Round(time.Millisecond))
		}
	}
	t.Logf("%d calls with Redis blackholed: mean %v, worst %v, %d waited for Redis", calls, total/calls, worst.Round(time.Millisecond), slow)
	if n := hook.n.Load(); n != 1 {
		t.Errorf("%d commands sent to a blackholed Redis in %d calls, want 1", n, calls)
	}
	if slow > 1 {
		t.Errorf("%d calls waited for Redis, want only the first", slow)
	}
	// Local limits hold meanwhile.
	for range 5 {
		l.Fail(ctx, "10.0.0.2")
	}
	if blocked, _ := l.Blocked(ctx, "10.0.0.2"); !blocked {
		t.Fatal("not blocked after the burst with Redis down")
	}

	// Past the back-off, a request starts a ping and does not wait for it.
	c.Add(minBackoff)
	start := time.Now()
	l.Blocked(ctx, "10.0.0.3")
	if d := time.Since(start); d >= 100*time.Millisecond {
		t.Errorf("the call that starts the ping took %v", d)
	}
	waitUntil(t, "the ping to fail", func() bool { return !l.probing.Load() })
	if got := time.Duration(l.backoff.Load()); got != 2*minBackoff {
		t.Errorf("back-off after a failed ping %v, want %v", got, 2*minBackoff)
	}

	// Redis back: the next ping finds it and limits are shared again.
	lk.up.Store(true)
	lk.cut()
	c.Add(2 * minBackoff)
	l.Blocked(ctx, "10.0.0.3")
	waitUntil(t, "Redis to be used again", func() bool { return !l.redisDown.Load() })
	before := hook.n.Load()
	l.Fail(ctx, "10.0.0.4")
	if hook.n.Load() == before {
		t.Fatal("Redis is back but the limiter does not use it")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
