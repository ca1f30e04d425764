package tokencache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// Tests of invalidations that Redis cannot lose: the store's invalidation
// log, the stamps on Redis entries, and revalidation when no feed is live.

// forEachStore runs fn on a fresh SQLite and a fresh PostgreSQL store.
func forEachStore(t *testing.T, fn func(t *testing.T, store tollgate.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteStore(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresStore(t, testenv.PostgresDSN(t))) })
}

// allowed looks tok up on c by id and by hash, and reports whether either
// answer is the token as valid (not revoked): a pass. Errors are refusals.
func allowed(c *Cache, id string, hash []byte) bool {
	ctx := context.Background()
	if tok, _, err := c.TokenByID(ctx, id); err == nil && tok.RevokedAt == nil {
		return true
	}
	if tok, _, err := c.Token(ctx, hash); err == nil && tok.RevokedAt == nil {
		return true
	}
	return false
}

// untilDenied polls c until it refuses the token and returns how long
// that took from since; it fails the test after deadline.
func untilDenied(t *testing.T, c *Cache, id string, hash []byte, since time.Time, deadline time.Duration) time.Duration {
	t.Helper()
	for allowed(c, id, hash) {
		if time.Since(since) > deadline {
			t.Fatalf("the revoked token is still allowed %v after the revocation", deadline)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(since)
}

// neverAllowed polls c for d and fails at the first pass.
func neverAllowed(t *testing.T, c *Cache, id string, hash []byte, d time.Duration, when string) {
	t.Helper()
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		if allowed(c, id, hash) {
			t.Fatalf("%s: the revoked token was allowed again (lookup %d)", when, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// staleInRedis reports whether Redis holds tok's entry as not revoked.
func staleInRedis(t *testing.T, c *Cache, id string) bool {
	t.Helper()
	key, _ := c.keys.entity("t", id)
	data, err := c.rdb.Get(context.Background(), key).Bytes()
	if err != nil {
		return false
	}
	tok, _, ok := decodeToken(data, id)
	return ok && tok.RevokedAt == nil
}

// TestRevocationSurvivesWriterLossDuringRedisOutage: every replica loses
// Redis (which keeps its data); the writer revokes, then stops for good
// with the invalidation still queued in its memory; Redis comes back with
// the entry it had. The other replica must deny within the bound and
// never allow the token again, before Redis is back, after, and a replica
// started afterwards too.
func TestRevocationSurvivesWriterLossDuringRedisOutage(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tollgate.Store) {
		srv := startRedis(t)
		pw, pr := startProxy(t, srv.addr), startProxy(t, srv.addr)
		f := newFixture(t, store)
		opts := func(addr string) Options {
			return Options{Store: store, Redis: redisClient(t, addr), L1TTL: 100 * time.Millisecond}
		}
		writer, reader := newCache(t, opts(pw.addr)), newCache(t, opts(pr.addr))
		wctx, stopWriter := context.WithCancel(context.Background())
		writerDone := make(chan struct{})
		go func() { writer.Run(wctx); close(writerDone) }()
		t.Cleanup(func() { stopWriter(); <-writerDone })
		run(t, reader)
		for _, c := range []*Cache{writer, reader} {
			waitFor(t, 5*time.Second, "subscription", func() bool { return c.Stats().Subscribed })
			mustToken(t, c, f.hash())
		}
		f.svc.Changed = writer.Invalidate
		direct := newCache(t, Options{Store: store, Redis: redisClient(t, srv.addr)})
		if !staleInRedis(t, direct, f.tok.ID) {
			t.Fatal("test broken: Redis does not hold the token")
		}

		pw.Stop()
		pr.Stop()
		for _, c := range []*Cache{writer, reader} {
			waitFor(t, 5*time.Second, "the subscription to fail", func() bool { return !c.Stats().Subscribed })
		}
		revoked := time.Now()
		if _, err := f.svc.RevokeToken(context.Background(), "test", f.tok.ID); err != nil {
			t.Fatal(err)
		}
		if n := writer.Stats().InvalidationsPending; n != 1 {
			t.Fatalf("test broken: %d invalidations pending in the writer, want 1", n)
		}
		stopWriter()
		<-writerDone
		if err := writer.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		took := untilDenied(t, reader, f.tok.ID, f.hash(), revoked, 3*time.Second)
		t.Logf("Redis down for every replica: the other replica denied %v after the revocation", took.Round(time.Millisecond))
		neverAllowed(t, reader, f.tok.ID, f.hash(), 500*time.Millisecond, "Redis down, writer gone")
		if !staleInRedis(t, direct, f.tok.ID) {
			t.Fatal("test broken: Redis lost the old entry")
		}

		pr.Start()
		neverAllowed(t, reader, f.tok.ID, f.hash(), time.Second, "Redis back with the old entry")
		waitFor(t, 5*time.Second, "the reader to subscribe again", func() bool { return reader.Stats().Subscribed })
		// The reader replays into Redis the revocation it read from the log.
		waitFor(t, 5*time.Second, "Redis to be repaired", func() bool { return !staleInRedis(t, direct, f.tok.ID) })
		neverAllowed(t, reader, f.tok.ID, f.hash(), 300*time.Millisecond, "after resubscribing")

		late := newCache(t, opts(srv.addr))
		run(t, late)
		neverAllowed(t, late, f.tok.ID, f.hash(), 500*time.Millisecond, "a replica started after the outage")
		if s := reader.Stats(); s.InvalidationsReplayed == 0 || s.Mode != ModeNormal {
			t.Errorf("reader stats: %+v", s)
		}
	})
}

// TestReplicaCutFromRedisStillDeniesWithinOneSecond: only the writer is
// cut from Redis; Redis and the other replicas' subscriptions are fine,
// so nothing tells them, and Redis keeps the old entry. They must deny
// within a second (from the log) and then never take the old Redis entry
// again, although their L1 keeps expiring into it.
func TestReplicaCutFromRedisStillDeniesWithinOneSecond(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tollgate.Store) {
		srv := startRedis(t)
		pw := startProxy(t, srv.addr)
		f := newFixture(t, store)
		writer := newCache(t, Options{Store: store, Redis: redisClient(t, pw.addr)})
		readers := []*Cache{
			newCache(t, Options{Store: store, Redis: redisClient(t, srv.addr), L1TTL: 50 * time.Millisecond}),
			newCache(t, Options{Store: store, Redis: redisClient(t, srv.addr), L1TTL: 50 * time.Millisecond}),
		}
		for _, c := range append([]*Cache{writer}, readers...) {
			run(t, c)
			waitFor(t, 5*time.Second, "subscription", func() bool { return c.Stats().Subscribed })
			mustToken(t, c, f.hash())
		}
		f.svc.Changed = writer.Invalidate

		pw.Stop()
		revoked := time.Now()
		if _, err := f.svc.RevokeToken(context.Background(), "test", f.tok.ID); err != nil {
			t.Fatal(err)
		}
		if writer.Stats().InvalidationsPending != 1 {
			t.Fatal("test broken: the writer reached Redis")
		}
		var wg sync.WaitGroup
		took := make([]time.Duration, len(readers))
		for i, c := range readers {
			wg.Go(func() {
				took[i] = untilDenied(t, c, f.tok.ID, f.hash(), revoked, time.Second)
				neverAllowed(t, c, f.tok.ID, f.hash(), time.Second, "after denying once")
			})
		}
		wg.Wait()
		t.Logf("writer cut from Redis: the other replicas denied %v and %v after the revocation",
			took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
		for _, c := range readers {
			if s := c.Stats(); s.InvalidationsReplayed != 1 || s.Mode != ModeNormal {
				t.Errorf("reader stats: %+v", s)
			}
		}
	})
}

// TestStaleRedisEntryIgnoredAfterInvalidation: Redis holds a token entry
// written before a revocation that never reached Redis. A replica that has
// applied the revocation from the log must not use it, whether it read
// the revocation when it started or later; it reads the store instead and
// overwrites the entry.
func TestStaleRedisEntryIgnoredAfterInvalidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tollgate.Store) {
		rdb, prefix := sharedRedis(t)
		f := newFixture(t, store)
		ctx := context.Background()
		o := Options{Store: store, Redis: rdb, KeyPrefix: prefix}
		old := newCache(t, o)
		mustToken(t, old, f.hash()) // the entry, in Redis
		early := newCache(t, o)
		if err := early.catchUp(ctx); err != nil { // started before the revocation
			t.Fatal(err)
		}

		// Revoked with no cache told: only the log knows.
		if _, err := f.svc.RevokeToken(ctx, "test", f.tok.ID); err != nil {
			t.Fatal(err)
		}
		if !staleInRedis(t, old, f.tok.ID) {
			t.Fatal("test broken: Redis lost the old entry")
		}
		key, _ := old.keys.entity("t", f.tok.ID)
		stale, err := rdb.Get(ctx, key).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		late := newCache(t, o)
		for _, r := range []struct {
			name string
			c    *Cache
		}{{"started before", early}, {"started after", late}} {
			name, c := r.name, r.c
			if err := rdb.Set(ctx, key, stale, 0).Err(); err != nil { // as the first one overwrites it
				t.Fatal(err)
			}
			if err := c.catchUp(ctx); err != nil {
				t.Fatal(err)
			}
			tok, _, err := c.TokenByID(ctx, f.tok.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tok.RevokedAt == nil {
				t.Errorf("replica %s the revocation used the Redis entry written before it", name)
			}
			if s := c.Stats(); s.L2Ignored == 0 || s.Store.Hit == 0 {
				t.Errorf("replica %s: %+v", name, s)
			}
		}
		if s := early.Stats(); s.InvalidationsReplayed != 1 {
			t.Errorf("the replica that read the revocation from the log: %+v", s)
		}
		if staleInRedis(t, old, f.tok.ID) {
			t.Error("the old entry is still in Redis")
		}
	})
}

// TestNoLiveFeedRevalidatesWithStoreAfterBound: with no Redis and the log
// not read for longer than revalidate_after, a replica does not trust L1
// beyond revalidate_after: a write it was never told of is seen after the
// bound, and the store sees one query per token per bound however many
// requests come.
func TestNoLiveFeedRevalidatesWithStoreAfterBound(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	cs := &countingStore{Store: f.store}
	clk := newClock()
	c := newCache(t, Options{Store: cs, Now: clk.Now, HeartbeatInterval: time.Hour})
	run(t, c) // one log read, at start
	waitFor(t, 5*time.Second, "the first log read", func() bool { return c.Stats().LogReads == 1 })
	mustToken(t, c, f.hash())
	if s := c.Stats(); s.Mode != ModeNormal {
		t.Fatalf("mode %s with the log just read", s.Mode)
	}
	clk.Add(DefaultRevalidateAfter) // the log read is now too old
	if s := c.Stats(); s.Mode != ModeRevalidating {
		t.Fatalf("mode %s with the log read %v ago", s.Mode, s.LogLag)
	}

	views := cs.views.Load()
	for round := range 4 {
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				for range 20 {
					if _, _, err := c.TokenByID(context.Background(), f.tok.ID); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		// One query for the token and one for its account per bound; a
		// lookup that read the entry just before a flight ended may start
		// one more. Without coalescing it would be hundreds.
		if n := cs.views.Load() - views; n > int64(4*(round+1)) {
			t.Fatalf("round %d: %d store queries for 1000 lookups of one token and its account", round, n)
		}
		clk.Add(DefaultRevalidateAfter / 2)
	}
	t.Logf("4 rounds of 1000 lookups, revalidate_after/2 apart: %d store queries", cs.views.Load()-views)

	// A revocation nobody told this replica of is seen within the bound.
	if _, err := f.svc.RevokeToken(context.Background(), "test", f.tok.ID); err != nil {
		t.Fatal(err)
	}
	clk.Add(DefaultRevalidateAfter)
	if tok, _ := mustToken(t, c, f.hash()); tok.RevokedAt == nil {
		t.Error("past revalidate_after with no live feed, L1 still serves the revoked token")
	}
}

// TestPausedProcessRevalidatesBeforeTrustingCache: a replica frozen
// (SIGSTOP, a paused VM) while another revokes wakes up with requests
// waiting in its accept queue, the revocation's message unread in its
// Redis socket and its log reader not yet run. Its subscription still
// looks live; it must not answer those requests from what it cached
// before the pause. (The soak found this: a revoked token let in 1.2s
// after the ack.) The pause is what the background work would see: its
// pulse last noted longer ago than revalidate_after.
func TestPausedProcessRevalidatesBeforeTrustingCache(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tollgate.Store) {
		rdb, prefix := sharedRedis(t)
		f := newFixture(t, store)
		clk := newClock()
		c := newCache(t, Options{Store: store, Redis: rdb, KeyPrefix: prefix, Now: clk.Now, After: clk.After})
		ctx := context.Background()
		if err := c.catchUp(ctx); err != nil {
			t.Fatal(err)
		}
		c.running.Store(true) // as Run: subscribed, log read, awake
		c.subscribed.Store(true)
		c.lastPulse.Store(time.Now().UnixNano())
		mustToken(t, c, f.hash())
		if _, err := f.svc.RevokeToken(ctx, "test", f.tok.ID); err != nil { // told to no one yet
			t.Fatal(err)
		}
		clk.Add(2 * time.Second) // frozen for 2s
		c.lastPulse.Store(time.Now().Add(-2 * time.Second).UnixNano())
		if allowed(c, f.tok.ID, f.hash()) {
			t.Fatal("a replica woken from a pause answered a revoked token from its cache")
		}
		if m := c.Stats().Mode; m != ModeRevalidating {
			t.Errorf("mode after a pause: %s, want %s", m, ModeRevalidating)
		}
	})
}
