// Package bounded owns the one way tollgate keeps a map whose keys callers
// choose (client addresses, emails, repository paths) from growing
// without limit: a Map bounded by its number of entries, by the bytes its
// entries hold, or both.
//
// When an insert would cross a bound, the map sweeps: every entry its
// Rank calls Expired goes, then Reclaimable entries (cheap to lose: a
// full token bucket, a counter with one failure), then, only if that
// freed too little, Keep entries (a bucket blocking an address under
// attack) — in arbitrary order within a rank, until the map is 7/8 full
// on each bound. So a full map sweeps once per eighth of its size in
// inserts: O(1) amortised per insert, and no goroutine.
//
// A Map is not safe for concurrent use: its callers already hold a lock
// around the value they read and update, and the map sits under it.
package bounded

import "time"

// Rank says how readily a sweep drops an entry.
type Rank int8

const (
	// Expired entries are useless now and all go at every sweep.
	Expired Rank = iota
	// Reclaimable entries go next: losing one costs little (it is
	// rebuilt on demand in the state a new one starts in).
	Reclaimable
	// Keep entries go last, only when the others did not free enough.
	Keep
)

// Options are a Map's bounds and how it judges its entries. At least one
// of MaxEntries and MaxBytes is set.
type Options[K comparable, V any] struct {
	// MaxEntries bounds the number of entries; 0 means no count bound.
	MaxEntries int
	// MaxBytes bounds the sum of Cost over the entries; 0 means no byte
	// bound. Cost is then required.
	MaxBytes int64
	// Cost is what an entry holds in bytes, key included, computed once
	// when it is put. An entry costing more than MaxBytes is not stored.
	Cost func(K, V) int64
	// Rank judges an entry at a sweep, with the time the sweep started.
	// nil ranks every entry Keep (a sweep then drops arbitrary ones).
	Rank func(now time.Time, k K, v V) Rank
	// Now is the clock handed to Rank; nil means time.Now.
	Now func() time.Time
}

type entry[V any] struct {
	v    V
	cost int64
}

// Map is a map with bounds; see the package comment. Its zero value is
// not usable: call New.
type Map[K comparable, V any] struct {
	o      Options[K, V]
	m      map[K]entry[V]
	bytes  int64
	sweeps int // for tests: how often a sweep ran
}

// New returns an empty Map. It panics on options that cannot bound
// anything (no bound, a byte bound without Cost, negative bounds): they
// are programming errors.
func New[K comparable, V any](o Options[K, V]) *Map[K, V] {
	switch {
	case o.MaxEntries < 0 || o.MaxBytes < 0:
		panic("bounded: negative bound")
	case o.MaxEntries == 0 && o.MaxBytes == 0:
		panic("bounded: no bound")
	case o.MaxBytes > 0 && o.Cost == nil:
		panic("bounded: MaxBytes without Cost")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Map[K, V]{o: o, m: map[K]entry[V]{}}
}

// Get returns k's value.
func (m *Map[K, V]) Get(k K) (V, bool) {
	e, ok := m.m[k]
	return e.v, ok
}

// Put stores v under k, replacing what was there, and sweeps first if
// storing it would cross a bound. It reports false, and stores nothing
// (dropping k's old value), when v alone costs more than MaxBytes.
func (m *Map[K, V]) Put(k K, v V) bool {
	var cost int64
	if m.o.MaxBytes > 0 {
		cost = m.o.Cost(k, v)
	}
	m.Delete(k)
	if m.o.MaxBytes > 0 && cost > m.o.MaxBytes {
		return false
	}
	if (m.o.MaxEntries > 0 && len(m.m) >= m.o.MaxEntries) ||
		(m.o.MaxBytes > 0 && m.bytes+cost > m.o.MaxBytes) {
		m.sweep(cost)
	}
	m.m[k] = entry[V]{v: v, cost: cost}
	m.bytes += cost
	return true
}

// Delete removes k.
func (m *Map[K, V]) Delete(k K) {
	if e, ok := m.m[k]; ok {
		m.bytes -= e.cost
		delete(m.m, k)
	}
}

// Len is the number of entries.
func (m *Map[K, V]) Len() int { return len(m.m) }

// Bytes is the sum of the entries' costs (0 without a byte bound).
func (m *Map[K, V]) Bytes() int64 { return m.bytes }

// All calls f for each entry, in no order, until f returns false. f may
// Delete the entry it is given, not Put.
func (m *Map[K, V]) All(f func(K, V) bool) {
	for k, e := range m.m {
		if !f(k, e.v) {
			return
		}
	}
}

// DropExpired removes every entry Rank calls Expired now and returns how
// many went: for callers that also clean up on a timer.
func (m *Map[K, V]) DropExpired() int {
	if m.o.Rank == nil {
		return 0
	}
	n := len(m.m)
	now := m.o.Now()
	for k, e := range m.m {
		if m.o.Rank(now, k, e.v) == Expired {
			m.Delete(k)
		}
	}
	return n - len(m.m)
}

// sweep makes room for one entry of the given cost, down to 7/8 of each
// bound: expired entries, then reclaimable ones, then any.
func (m *Map[K, V]) sweep(cost int64) {
	m.sweeps++
	maxN := m.o.MaxEntries - m.o.MaxEntries/8
	if maxN >= m.o.MaxEntries {
		maxN = m.o.MaxEntries - 1 // tiny bounds: room for one
	}
	maxB := min(m.o.MaxBytes-m.o.MaxBytes/8, m.o.MaxBytes-cost)
	roomy := func() bool {
		return (m.o.MaxEntries == 0 || len(m.m) <= maxN) && (m.o.MaxBytes == 0 || m.bytes <= maxB)
	}
	if m.o.Rank != nil {
		m.DropExpired()
		if roomy() {
			return
		}
		now := m.o.Now()
		for k, e := range m.m {
			if roomy() {
				return
			}
			if m.o.Rank(now, k, e.v) == Reclaimable {
				m.Delete(k)
			}
		}
	}
	for k := range m.m {
		if roomy() {
			return
		}
		m.Delete(k)
	}
}
