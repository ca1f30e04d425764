package tokencache

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestUsageIsWrittenInBatches(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	other, _ := f.newToken(t)
	cs := &countingStore{Store: f.store}
	c := newCache(t, Options{Store: cs, UsageInterval: 50 * time.Millisecond})
	ctx := context.Background()

	base := time.Now().UTC().Truncate(time.Microsecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				at := base.Add(time.Duration(g*100+i) * time.Millisecond)
				c.RecordUse(f.tok.ID, fmt.Sprintf("192.0.2.%d", g), fmt.Sprintf("docker/%d.%d", g, i), at)
				c.RecordUse(other.ID, "198.51.100.1", "apk-tools", at)
			}
		})
	}
	wg.Wait()
	if len(cs.batches) != 0 {
		t.Fatal("RecordUse wrote to the store")
	}
	run(t, c)
	waitFor(t, 5*time.Second, "a usage write", func() bool { return c.Stats().UsageFlushes > 0 })

	tok, _, err := f.svc.Token(ctx, f.tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	latest := base.Add(799 * time.Millisecond)
	if tok.Pulls != 800 || tok.LastUsedAt == nil || !tok.LastUsedAt.Equal(latest) ||
		tok.LastUsedIP != "192.0.2.7" || tok.LastUsedUA != "docker/7.99" {
		t.Errorf("usage of %s: pulls %d at %v from %s %s", tok.ID, tok.Pulls, tok.LastUsedAt, tok.LastUsedIP, tok.LastUsedUA)
	}
	if o, _, _ := f.svc.Token(ctx, other.ID); o.Pulls != 800 {
		t.Errorf("other token: %d pulls", o.Pulls)
	}
	cs.mu.Lock()
	for _, b := range cs.batches {
		seen := map[string]bool{}
		for _, u := range b {
			if seen[u.TokenID] {
				t.Errorf("token %s twice in one batch", u.TokenID)
			}
			seen[u.TokenID] = true
		}
	}
	cs.mu.Unlock()

	// What comes after the last write is written by Close.
	for range 5 {
		c.RecordUse(f.tok.ID, "192.0.2.99", "crane", latest.Add(time.Second))
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if tok, _, _ := f.svc.Token(ctx, f.tok.ID); tok.Pulls != 805 || tok.LastUsedUA != "crane" {
		t.Errorf("after Close: pulls %d, ua %q", tok.Pulls, tok.LastUsedUA)
	}
}

func TestUsageBufferIsBounded(t *testing.T) {
	c := newCache(t, Options{Store: sqliteStore(t), L1Size: 1})
	for i := range minUsageEntries + 10 {
		c.RecordUse(fmt.Sprintf("tok_%d", i), "", "", time.Now())
	}
	if s := c.Stats(); s.UsageDropped != 10 {
		t.Errorf("dropped %d uses, want 10", s.UsageDropped)
	}
	// Tokens already in the buffer still count.
	c.RecordUse("tok_0", "", "", time.Now())
	if s := c.Stats(); s.UsageDropped != 10 {
		t.Errorf("dropped %d uses, want 10", s.UsageDropped)
	}
	// Unknown token ids are ignored by the store.
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}
