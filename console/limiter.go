package console

import (
	"sync"
	"time"
)

// limiter counts failed sign-ins per key (an address, an email) in fixed
// windows. It lives in one process: with several replicas an attacker gets
// the limit once per replica, which still bounds guessing to a handful of
// tries per minute against one account. It starts no goroutine; expired
// entries are swept when the map grows.
type limiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	failures int
	reset    time.Time
}

const maxBuckets = 100_000

func newLimiter(limit int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{limit: limit, window: window, now: now, buckets: map[string]*bucket{}}
}

// blocked reports whether key has used up its failures (limit times
// factor) in the current window, and if so for how long it must wait.
func (l *limiter) blocked(key string, factor int) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	now := l.now()
	if !ok || !now.Before(b.reset) {
		return false, 0
	}
	if b.failures >= l.limit*factor {
		return true, b.reset.Sub(now)
	}
	return false, 0
}

// fail records a failure of key.
func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok || !now.Before(b.reset) {
		if len(l.buckets) >= maxBuckets {
			for k, v := range l.buckets {
				if !now.Before(v.reset) {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{reset: now.Add(l.window)}
		l.buckets[key] = b
	}
	b.failures++
}

// clear forgets key (a successful sign-in clears its email).
func (l *limiter) clear(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, key)
}
