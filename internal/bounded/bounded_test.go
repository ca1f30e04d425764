package bounded

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

type bucket struct {
	failures int
	reset    time.Time
}

// TestFloodOfNewKeysCannotGrowTheMap: callers choose the keys (client
// addresses, emails); a flood of new ones must not grow memory.
func TestFloodOfNewKeysCannotGrowTheMap(t *testing.T) {
	m := New(Options[string, int]{MaxEntries: 1000})
	for i := range 100_000 {
		m.Put(strconv.Itoa(i), i)
		if m.Len() > 1000 {
			t.Fatalf("%d entries after %d inserts", m.Len(), i+1)
		}
	}
	// Sweeps go down to 7/8, so they are rare: one per 125 inserts.
	if m.sweeps > 100_000/125+1 {
		t.Errorf("%d sweeps for 100000 inserts: not amortised", m.sweeps)
	}
	if v, ok := m.Get("99999"); !ok || v != 99999 {
		t.Error("the newest entry is gone")
	}
}

// TestBigValuesCannotExhaustMemory: a byte bound holds however few
// entries that is, and counts replacements and deletions.
func TestBigValuesCannotExhaustMemory(t *testing.T) {
	m := New(Options[string, string]{
		MaxBytes: 64 << 10,
		Cost:     func(k, v string) int64 { return int64(len(k) + len(v)) },
	})
	for i := range 10_000 {
		k := strconv.Itoa(i)
		m.Put(k, strings.Repeat("x", 1000+i%3000))
		if m.Bytes() > 64<<10 {
			t.Fatalf("%d bytes after %d inserts", m.Bytes(), i+1)
		}
	}
	var sum int64
	m.All(func(k, v string) bool { sum += int64(len(k) + len(v)); return true })
	if sum != m.Bytes() {
		t.Fatalf("Bytes() = %d, entries hold %d", m.Bytes(), sum)
	}
	m.Put("r", strings.Repeat("x", 100))
	before := m.Bytes()
	m.Put("r", strings.Repeat("x", 10)) // replacing counts the new cost only
	if m.Bytes() != before-90 {
		t.Fatalf("replace: %d bytes, want %d", m.Bytes(), before-90)
	}
	m.Delete("r")
	if m.Bytes() != before-101 {
		t.Fatalf("delete: %d bytes, want %d", m.Bytes(), before-101)
	}
	if m.Put("huge", strings.Repeat("x", 65<<10)) {
		t.Fatal("an entry bigger than the bound was stored")
	}
	if _, ok := m.Get("huge"); ok || m.Bytes() > 64<<10 {
		t.Fatal("an entry bigger than the bound is in the map")
	}
}

func TestBothBoundsHold(t *testing.T) {
	m := New(Options[int, []byte]{MaxEntries: 100, MaxBytes: 10_000, Cost: func(_ int, v []byte) int64 { return int64(len(v)) }})
	for i := range 5000 {
		m.Put(i, make([]byte, i%500))
		if m.Len() > 100 || m.Bytes() > 10_000 {
			t.Fatalf("after %d: %d entries, %d bytes", i, m.Len(), m.Bytes())
		}
	}
}

// TestSweepDropsTheLeastUsefulFirst: expired entries, then reclaimable
// ones, and only then those worth keeping (a bucket blocking an attacker).
func TestSweepDropsTheLeastUsefulFirst(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	const limit = 5
	m := New(Options[string, *bucket]{
		MaxEntries: 80,
		Now:        func() time.Time { return now },
		Rank: func(now time.Time, _ string, b *bucket) Rank {
			switch {
			case !now.Before(b.reset):
				return Expired
			case b.failures < limit:
				return Reclaimable
			}
			return Keep
		},
	})
	for i := range 20 {
		m.Put("blocking"+strconv.Itoa(i), &bucket{failures: limit, reset: now.Add(time.Minute)})
		m.Put("expired"+strconv.Itoa(i), &bucket{failures: limit, reset: now.Add(-time.Second)})
	}
	for i := range 40 {
		m.Put("one"+strconv.Itoa(i), &bucket{failures: 1, reset: now.Add(time.Minute)})
	}
	m.Put("new", &bucket{failures: 1, reset: now.Add(time.Minute)}) // full: sweeps
	count := func(prefix string) (n int) {
		m.All(func(k string, _ *bucket) bool {
			if strings.HasPrefix(k, prefix) {
				n++
			}
			return true
		})
		return n
	}
	if n := count("expired"); n != 0 {
		t.Errorf("%d expired entries survived the sweep", n)
	}
	if n := count("blocking"); n != 20 {
		t.Errorf("%d of 20 blocking entries kept; reclaimable ones should have gone first", n)
	}
	if n := count("one"); n != 40 {
		t.Errorf("%d of 40 reclaimable entries kept; dropping the expired ones made enough room", n)
	}

	// With nothing expired and every entry worth keeping, any go.
	for i := range 200 {
		m.Put("b"+strconv.Itoa(i), &bucket{failures: limit, reset: now.Add(time.Minute)})
	}
	if count("one") != 0 || m.Len() > 80 {
		t.Errorf("reclaimable entries should go before any kept one: %d left, %d entries", count("one"), m.Len())
	}

	now = now.Add(2 * time.Minute)
	before := m.Len()
	if n := m.DropExpired(); n != before || m.Len() != 0 {
		t.Errorf("DropExpired dropped %d of %d, left %d", n, before, m.Len())
	}
}

func TestTinyBoundsStillStore(t *testing.T) {
	m := New(Options[int, int]{MaxEntries: 1})
	for i := range 10 {
		m.Put(i, i)
		if v, ok := m.Get(i); !ok || v != i || m.Len() != 1 {
			t.Fatalf("put %d: len %d", i, m.Len())
		}
	}
}

func TestOptionsThatCannotBoundPanic(t *testing.T) {
	for name, o := range map[string]Options[int, int]{
		"none":           {},
		"negative":       {MaxEntries: -1},
		"bytes, no cost": {MaxBytes: 10},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			New(o)
		})
	}
}

func BenchmarkPutFull(b *testing.B) {
	m := New(Options[int, int]{MaxEntries: 100_000})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Put(i, i)
	}
}
