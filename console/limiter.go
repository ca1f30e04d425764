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

// take counts one attempt of key against its limit (limit times factor)
// in the current window and reports false, or, when the limit is used
// up, counts nothing and reports true and how long to wait. Checking and
// counting under one lock keeps concurrent attempts from all passing the
// check before any of them is counted.
func (l *limiter) take(key string, factor int) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if ok && now.Before(b.reset) && b.failures >= l.limit*factor {
		return true, b.reset.Sub(now)
	}
	if !ok || !now.Before(b.reset) {
		if len(l.buckets) >= maxBuckets {
			l.shrink(now)
		}
		b = &bucket{reset: now.Add(l.window)}
		l.buckets[key] = b
	}
	b.failures++
	return false, 0
}

// shrink bounds the map: expired buckets go first, then buckets that are
// not at their limit (a flood of new addresses each holds one failure),
// and only then, if every bucket is blocking, any — down to 7/8 full, so
// that the sweep runs rarely. Buckets that block an email or address
// under attack are the last to go.
func (l *limiter) shrink(now time.Time) {
	for k, v := range l.buckets {
		if !now.Before(v.reset) {
			delete(l.buckets, k)
		}
	}
	target := maxBuckets * 7 / 8
	for k, v := range l.buckets {
		if len(l.buckets) <= target {
			return
		}
		if v.failures < l.limit {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) <= target {
			return
		}
		delete(l.buckets, k)
	}
}

// refund gives back an attempt take counted that turned out not to be a
// failure.
func (l *limiter) refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok && b.failures > 0 {
		b.failures--
	}
}

// clear forgets key (a successful sign-in clears its email).
func (l *limiter) clear(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, key)
}
