package testenv

import (
	"sync"
	"testing"
	"time"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	c := NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	c.Add(time.Minute)
	if got, want := c.Now(), start.Add(time.Minute); !got.Equal(want) {
		t.Fatalf("after Add: Now = %v, want %v", got, want)
	}
	c.Set(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("after Set: Now = %v, want %v", got, start)
	}
}

func TestClockAfterFiresWhenReached(t *testing.T) {
	c := NewClock(time.Unix(1_800_000_000, 0))
	if _, ok := <-c.After(0); !ok {
		t.Fatal("After(0) closed without a time")
	}
	ch := c.After(time.Minute)
	c.Add(59 * time.Second)
	select {
	case <-ch:
		t.Fatal("After(1m) fired after 59s")
	default:
	}
	c.Add(time.Second)
	select {
	case got := <-ch:
		if !got.Equal(c.Now()) {
			t.Fatalf("After sent %v, want %v", got, c.Now())
		}
	default:
		t.Fatal("After(1m) did not fire after 1m")
	}
	ch = c.After(time.Hour)
	c.Set(c.Now().Add(2 * time.Hour))
	select {
	case <-ch:
	default:
		t.Fatal("After(1h) did not fire when Set jumped 2h")
	}
}

func TestClockConcurrentUse(t *testing.T) {
	c := NewClock(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Add(time.Second)
				c.Now()
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), time.Unix(800, 0); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}
