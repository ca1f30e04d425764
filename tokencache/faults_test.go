package tokencache

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/faultnet"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestRedisDown kills Redis under a running cache: lookups go on from L1
// and the store, the outage is logged once and counted, and the cache uses
// Redis again once it is back, without a restart.
func TestRedisDown(t *testing.T) {
	srv := startRedis(t)
	rdb := redisClient(t, srv.addr)
	f := newFixture(t, sqliteStore(t))
	clk := newClock()
	var logs testenv.Buffer
	c := newCache(t, Options{Store: f.store, Redis: rdb, Now: clk.Now, After: clk.After, Logger: debugLogger(&logs)})
	run(t, c)
	waitFor(t, 5*time.Second, "subscription", func() bool { return c.Stats().Subscribed })

	mustToken(t, c, f.hash())
	other, otherHash := f.newToken(t)

	srv.Stop()
	waitFor(t, 5*time.Second, "the subscription to fail", func() bool { return !c.Stats().Subscribed })
	clk.Add(DefaultL1TTL) // every L1 entry now needs confirming
	ctx := context.Background()
	for i := range 300 {
		if _, _, err := c.Token(ctx, f.hash()); err != nil {
			t.Fatalf("lookup %d with Redis down: %v", i, err)
		}
		if tok, _, err := c.Token(ctx, otherHash); err != nil || tok.ID != other.ID {
			t.Fatalf("lookup %d of a token never seen, Redis down: %v", i, err)
		}
		if i%100 == 0 {
			clk.Add(DefaultL1TTL) // past redisRetry too: Redis is probed again
		}
	}
	s := c.Stats()
	if s.RedisErrors == 0 || s.RedisUp || s.Subscribed {
		t.Errorf("stats with Redis down: %+v", s)
	}
	if n := strings.Count(logs.String(), "tokencache: redis unavailable"); n != 1 {
		t.Errorf("%d log lines about Redis being down, want 1:\n%s", n, logs.String())
	}

	srv.Start()
	restarted := time.Now()
	waitFor(t, 10*time.Second, "the cache to use Redis again", func() bool {
		clk.Add(maxBackoff) // the subscriber's next attempt
		s := c.Stats()
		return s.Subscribed && s.RedisUp
	})
	t.Logf("Redis in use again %v after its restart", time.Since(restarted).Round(time.Millisecond))
	if n := strings.Count(logs.String(), "tokencache: redis available again"); n != 1 {
		t.Errorf("%d log lines about Redis being back, want 1:\n%s", n, logs.String())
	}
	assertNoSecret(t, logs.String(), f)
	// Entries go to Redis again: a second replica finds them there.
	clk.Add(DefaultL1TTL)
	mustToken(t, c, f.hash())
	c2 := newCache(t, Options{Store: f.store, Redis: rdb, Now: clk.Now})
	if _, _, err := c2.TokenByID(ctx, f.tok.ID); err != nil {
		t.Fatal(err)
	}
	if s := c2.Stats(); s.L2.Hit != 2 || s.Store.Hit != 0 {
		t.Errorf("after recovery, a second replica: %+v", s)
	}
}

// TestStoreDown cuts the cache off PostgreSQL: tokens seen within
// max_stale keep working, anything else is EUNAVAILABLE (never
// EUNAUTHORIZED), and everything works again when the store is back.
func TestStoreDown(t *testing.T) {
	dsn, proxy := proxiedPostgres(t)
	f := newFixture(t, postgresStore(t, dsn))
	clk := newClock()
	var logs testenv.Buffer
	c := newCache(t, Options{Store: f.store, Now: clk.Now, Logger: debugLogger(&logs)})
	ctx := context.Background()

	mustToken(t, c, f.hash())
	other, otherHash := f.newToken(t)
	c.RecordUse(f.tok.ID, "192.0.2.7", "containerd/2.0", clk.Now())

	proxy.Stop()

	t.Run("fresh entries are served from L1", func(t *testing.T) {
		mustToken(t, c, f.hash())
	})
	t.Run("entries past l1_ttl are served stale", func(t *testing.T) {
		clk.Add(time.Minute)
		for range 20 {
			tok, _ := mustToken(t, c, f.hash())
			if tok.ID != f.tok.ID {
				t.Fatal("wrong token")
			}
			if _, _, err := c.TokenByID(ctx, f.tok.ID); err != nil {
				t.Fatal(err)
			}
		}
		if s := c.Stats(); s.Stale == 0 || s.Store.Error == 0 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("tokens never seen are unavailable", func(t *testing.T) {
		_, _, err := c.Token(ctx, otherHash)
		wantCode(t, err, tollgate.EUNAVAILABLE)
		_, _, err = c.TokenByID(ctx, other.ID)
		wantCode(t, err, tollgate.EUNAVAILABLE)
		_, _, err = c.Token(ctx, randomBytes(32))
		wantCode(t, err, tollgate.EUNAVAILABLE)
	})
	t.Run("writes fail clearly", func(t *testing.T) {
		_, err := f.svc.RevokeToken(ctx, "test", other.ID)
		wantCode(t, err, tollgate.EUNAVAILABLE)
	})
	t.Run("usage is kept while the store is down", func(t *testing.T) {
		if err := c.Flush(ctx); err == nil {
			t.Fatal("Flush succeeded with the store down")
		}
	})
	t.Run("beyond max_stale nothing is served", func(t *testing.T) {
		clk.Add(DefaultMaxStale)
		_, _, err := c.Token(ctx, f.hash())
		wantCode(t, err, tollgate.EUNAVAILABLE)
		_, _, err = c.TokenByID(ctx, f.tok.ID)
		wantCode(t, err, tollgate.EUNAVAILABLE)
	})
	if n := strings.Count(logs.String(), "tokencache: store unavailable"); n != 1 {
		t.Errorf("%d log lines about the store, want 1:\n%s", n, logs.String())
	}
	assertNoSecret(t, logs.String(), f)

	proxy.Start()
	waitFor(t, 10*time.Second, "the store to answer again", func() bool {
		_, _, err := c.Token(ctx, otherHash)
		return err == nil
	})
	mustToken(t, c, f.hash())
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.svc.Token(ctx, f.tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Pulls != 1 || tok.LastUsedIP != "192.0.2.7" {
		t.Errorf("usage recorded during the outage lost: %+v", tok)
	}
}

// TestBothDown: with Redis and the store gone, L1 alone answers, by the
// same rules.
func TestBothDown(t *testing.T) {
	srv := startRedis(t)
	rdb := redisClient(t, srv.addr)
	dsn, proxy := proxiedPostgres(t)
	f := newFixture(t, postgresStore(t, dsn))
	clk := newClock()
	c := newCache(t, Options{Store: f.store, Redis: rdb, Now: clk.Now})
	run(t, c)
	ctx := context.Background()
	waitFor(t, 5*time.Second, "subscription", func() bool { return c.Stats().Subscribed })
	mustToken(t, c, f.hash())
	other, otherHash := f.newToken(t)

	proxy.Stop()
	// Redis still holds the entries: they keep being confirmed there.
	clk.Add(time.Minute)
	mustToken(t, c, f.hash())
	if s := c.Stats(); s.L2.Hit < 2 || s.Stale != 0 {
		t.Errorf("store down, Redis up: %+v", s)
	}

	srv.Stop()
	clk.Add(time.Minute)
	for range 10 {
		mustToken(t, c, f.hash())
	}
	if s := c.Stats(); s.Stale == 0 {
		t.Errorf("both down: %+v", s)
	}
	_, _, err := c.Token(ctx, otherHash)
	wantCode(t, err, tollgate.EUNAVAILABLE)
	_, _, err = c.TokenByID(ctx, other.ID)
	wantCode(t, err, tollgate.EUNAVAILABLE)

	clk.Add(DefaultMaxStale)
	_, _, err = c.Token(ctx, f.hash())
	wantCode(t, err, tollgate.EUNAVAILABLE)

	srv.Start()
	proxy.Start()
	waitFor(t, 10*time.Second, "recovery", func() bool {
		_, _, err1 := c.Token(ctx, f.hash())
		_, _, err2 := c.Token(ctx, otherHash)
		return err1 == nil && err2 == nil && c.Stats().Subscribed
	})
}

// TestStoreDownRedisUp: the store is cut while Redis and every replica's
// subscription stay up. A token revoked before the cut never comes back:
// not on the replica that revoked it, not on one that heard of it, not
// with Redis holding an entry written before the revocation (as a writer
// cut from Redis leaves it), not on a replica started during the outage,
// and not after the store returns. A token known before the cut is
// confirmed by Redis while Redis's entry lives, then served from L1 for
// max_stale: never later than redis_ttl + max_stale after the cut
// (docs/operations.md), then refused with EUNAVAILABLE (503), never
// EUNAUTHORIZED.
func TestStoreDownRedisUp(t *testing.T) {
	srv := startRedis(t)
	dsn, proxy := proxiedPostgres(t)
	f := newFixture(t, postgresStore(t, dsn))
	const l1TTL, redisTTL, maxStale = 100 * time.Millisecond, 2 * time.Second, time.Second
	opts := func() Options {
		return Options{Store: f.store, Redis: redisClient(t, srv.addr), L1TTL: l1TTL, RedisTTL: redisTTL, MaxStale: maxStale}
	}
	writer, reader := newCache(t, opts()), newCache(t, opts())
	for _, c := range []*Cache{writer, reader} {
		run(t, c)
		waitFor(t, 5*time.Second, "subscription", func() bool { return c.Stats().Subscribed })
	}
	f.svc.Changed = writer.Invalidate
	ctx := context.Background()
	rdb := redisClient(t, srv.addr)

	revoked, revokedHash := f.newToken(t)
	for _, c := range []*Cache{writer, reader} {
		mustToken(t, c, f.hash())
		if !allowed(c, revoked.ID, revokedHash) {
			t.Fatal("test broken: the token to revoke is not allowed")
		}
	}
	key, _ := writer.keys.entity("t", revoked.ID)
	before, err := rdb.Get(ctx, key).Bytes() // the entry as it was before the revocation
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RevokeToken(ctx, "test", revoked.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Cache{writer, reader} {
		untilDenied(t, c, revoked.ID, revokedHash, time.Now(), 5*time.Second)
		mustToken(t, c, f.hash()) // the known token confirmed with the store just before the cut
	}
	// Redis gets the pre-revocation entry back, for longer than the test.
	if err := rdb.Set(ctx, key, before, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if !staleInRedis(t, writer, revoked.ID) {
		t.Fatal("test broken: Redis does not hold the pre-revocation entry")
	}

	// Redis times expiry in whole milliseconds: leave the entries' last
	// store read well before the cut, so that the bound below is exact.
	time.Sleep(50 * time.Millisecond)
	cut := time.Now()
	proxy.Stop()
	late := newCache(t, opts()) // started during the outage: it never read the log
	run(t, late)

	bound := cut.Add(redisTTL + maxStale)
	var lastServed time.Time
	refusedAfterBound := map[*Cache]int{}
	for time.Now().Before(bound.Add(500 * time.Millisecond)) {
		for name, c := range map[string]*Cache{"writer": writer, "reader": reader, "late": late} {
			if allowed(c, revoked.ID, revokedHash) {
				t.Fatalf("%s, %v into the store outage: the token revoked before it was allowed", name, time.Since(cut).Round(time.Millisecond))
			}
		}
		for name, c := range map[string]*Cache{"writer": writer, "reader": reader} {
			start := time.Now()
			_, _, err1 := c.Token(ctx, f.hash())
			_, _, err2 := c.TokenByID(ctx, f.tok.ID)
			for _, err := range []error{err1, err2} {
				switch {
				case err == nil && !start.Before(bound):
					t.Fatalf("%s served the known token %v after the cut, past redis_ttl + max_stale (%v)",
						name, start.Sub(cut).Round(time.Millisecond), redisTTL+maxStale)
				case err == nil:
					if start.After(lastServed) {
						lastServed = start
					}
				case tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE:
					t.Fatalf("%s, store down: %v, want EUNAVAILABLE", name, err)
				case !start.Before(bound):
					refusedAfterBound[c]++
				}
			}
		}
		if _, _, err := late.Token(ctx, f.hash()); err != nil && tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE {
			t.Fatalf("a replica started during the outage: %v, want EUNAVAILABLE", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refusedAfterBound[writer] == 0 || refusedAfterBound[reader] == 0 {
		t.Fatalf("no lookup after the bound was refused: %v", refusedAfterBound)
	}
	if !lastServed.IsZero() {
		t.Logf("store down, Redis up: the known token served until %v after the cut (bound %v)",
			lastServed.Sub(cut).Round(time.Millisecond), redisTTL+maxStale)
	}
	if s := reader.Stats(); s.Mode != ModeStale || s.L2Ignored == 0 {
		t.Errorf("reader stats with the store down: %+v", s)
	}

	proxy.Start()
	waitFor(t, 10*time.Second, "the store to answer again", func() bool {
		_, _, err := reader.Token(ctx, f.hash())
		return err == nil
	})
	for _, c := range []*Cache{writer, reader, late} {
		neverAllowed(t, c, revoked.ID, revokedHash, 200*time.Millisecond, "the store back")
	}
}

// assertNoSecret fails if the fixture's secret, or its lookup hash, is in
// s.
func assertNoSecret(t *testing.T, s string, f *fixture) {
	t.Helper()
	secret := f.secret.Reveal()
	if strings.Contains(s, secret) || strings.Contains(s, secret[len(tollgate.TokenPrefix):]) ||
		strings.Contains(s, hex.EncodeToString(f.hash())) {
		t.Error("a secret or its hash is in the logs")
	}
}

// TestNoLookupWaitsOnBlackholedRedis: Redis accepts connections and never
// answers. A write's invalidation and the lookup that finds out wait
// redisLookupTimeout, not the
// client's I/O timeout, and no lookup waits on it again: Redis is probed
// in the background, so each lookup of a token never seen answers from
// the store well within its deadline however often the probe interval
// passes. (Probing from the request path held one request per second
// for the whole I/O timeout: a /token p99 of 2s.)
func TestNoLookupWaitsOnBlackholedRedis(t *testing.T) {
	hole, err := faultnet.ListenBlackhole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hole.Close() })
	const ioTimeout = 5 * time.Second
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{hole.Addr()}, DialTimeout: ioTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout,
		ContextTimeoutEnabled: true, MaxRetries: -1,
	})
	t.Cleanup(func() { rdb.Close() })
	f := newFixture(t, sqliteStore(t))
	clk := newClock()
	c := newCache(t, Options{Store: f.store, Redis: rdb, Now: clk.Now, After: clk.After})
	run(t, c)
	ctx := context.Background()
	// A write's invalidation, before Redis is known to be gone: the API
	// answers after it.
	invalidated := make(chan struct{})
	go func() {
		c.Invalidate(ctx, tollgate.Invalidation{AccountID: f.acct.ID})
		close(invalidated)
	}()
	select {
	case <-invalidated:
	case <-time.After(ioTimeout / 4):
		t.Fatalf("Invalidate held the write for more than %v on a blackholed Redis", ioTimeout/4)
	}
	lctx, cancel := context.WithTimeout(ctx, ioTimeout/4)
	_, _, err = c.Token(lctx, f.hash()) // the first command times out; then the store
	cancel()
	if err != nil {
		t.Fatalf("the first lookup with Redis blackholed: %v", err)
	}
	if c.Stats().RedisUp {
		t.Fatal("test broken: the blackholed Redis is taken for up")
	}
	for i := range 20 {
		clk.Add(redisRetry) // a probe is due
		_, hash := f.newToken(t)
		lctx, cancel := context.WithTimeout(ctx, ioTimeout/4)
		_, _, err := c.Token(lctx, hash)
		cancel()
		if err != nil {
			t.Fatalf("lookup %d, %v after the probe came due, with Redis blackholed: %v", i, redisRetry*time.Duration(i+1), err)
		}
	}
	if s := c.Stats(); s.RedisUp || s.Store.Hit < 20 {
		t.Errorf("stats: %+v", s)
	}
}
