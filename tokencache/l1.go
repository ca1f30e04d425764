package tokencache

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
)

// l1 is the in-process layer: a map bounded in entries, split in shards so
// that readers of different keys do not contend. Each entry carries the
// time (of the injected clock, in Unix nanoseconds) it was last confirmed
// by Redis or the store; callers judge freshness from it.
//
// When a shard is full, inserting evicts the oldest of a few entries
// sampled at random (Go randomizes map iteration), as Redis does: close to
// LRU for entries that are refreshed while in use, without a list to
// update on every hit, so a hit takes only a read lock.
type l1[K comparable, V any] struct {
	shards []l1Shard[K, V]
	hash   func(K) uint64
}

type l1Shard[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]l1Entry[V]
	max int
}

type l1Entry[V any] struct {
	v  V
	at int64
}

// evictionSamples is how many entries a full shard looks at to evict one.
const evictionSamples = 8

func newL1[K comparable, V any](size int, hash func(K) uint64) *l1[K, V] {
	n := 1
	if size >= 1024 {
		n = 16
	}
	c := &l1[K, V]{shards: make([]l1Shard[K, V], n), hash: hash}
	for i := range c.shards {
		// The shard bounds add up to size exactly.
		c.shards[i].max = size / n
		if i < size%n {
			c.shards[i].max++
		}
		c.shards[i].m = make(map[K]l1Entry[V])
	}
	return c
}

var seed = maphash.MakeSeed()

func hashString(s string) uint64 { return maphash.String(seed, s) }

// hashOfHash shards by the lookup hash itself: an HMAC output is uniform.
func hashOfHash(h hashKey) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

func (c *l1[K, V]) shard(k K) *l1Shard[K, V] {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[c.hash(k)%uint64(len(c.shards))]
}

// get returns the entry for k and when it was confirmed.
func (c *l1[K, V]) get(k K) (V, int64, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e.v, e.at, ok
}

// put stores v for k, confirmed at at.
func (c *l1[K, V]) put(k K, v V, at int64) {
	c.putIf(k, v, at, nil)
}

// putIf stores v for k if ok (called under the shard's lock) returns true
// or is nil, and reports whether it did. Invalidation deletes under the
// same lock after changing what ok checks, so a value read before an
// invalidation is either refused here or deleted after.
func (c *l1[K, V]) putIf(k K, v V, at int64, ok func() bool) bool {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok != nil && !ok() {
		return false
	}
	if _, exists := s.m[k]; !exists && len(s.m) >= s.max {
		s.evictOne()
	}
	s.m[k] = l1Entry[V]{v: v, at: at}
	return true
}

func (s *l1Shard[K, V]) evictOne() {
	var (
		victim K
		oldest int64
		n      int
	)
	for k, e := range s.m {
		if n == 0 || e.at < oldest {
			victim, oldest = k, e.at
		}
		if n++; n == evictionSamples {
			break
		}
	}
	if n > 0 {
		delete(s.m, victim)
	}
}

// touch marks k as confirmed at at, if it is there.
func (c *l1[K, V]) touch(k K, at int64) {
	s := c.shard(k)
	s.mu.Lock()
	if e, ok := s.m[k]; ok {
		e.at = at
		s.m[k] = e
	}
	s.mu.Unlock()
}

func (c *l1[K, V]) del(k K) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

func (c *l1[K, V]) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

func (c *l1[K, V]) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
