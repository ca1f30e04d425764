package tokencache

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// Lookup cost per layer. Run against the machine's Redis and PostgreSQL:
//
//	go test -run '^$' -bench . -benchmem ./tokencache/

func BenchmarkL1Hit(b *testing.B) {
	f := newFixture(b, sqliteStore(b))
	c := newCache(b, Options{Store: f.store})
	ctx := context.Background()
	hash := f.hash()
	mustToken(b, c, hash)
	b.Run("Token", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := c.Token(ctx, hash); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("TokenByID", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := c.TokenByID(ctx, f.tok.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("TokenParallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := c.Token(ctx, hash); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkL2Hit: every lookup finds its L1 entries past l1_ttl and
// confirms them in Redis: two round trips (token, account), each reading
// the entry and its generation.
func BenchmarkL2Hit(b *testing.B) {
	rdb, prefix := sharedRedis(b)
	f := newFixture(b, postgresStore(b, testenv.PostgresDSN(b)))
	clk := newClock()
	c := newCache(b, Options{Store: f.store, Redis: rdb, KeyPrefix: prefix, Now: clk.Now})
	ctx := context.Background()
	mustToken(b, c, f.hash())
	for b.Loop() {
		clk.Add(DefaultL1TTL)
		if _, _, err := c.TokenByID(ctx, f.tok.ID); err != nil {
			b.Fatal(err)
		}
	}
	if s := c.Stats(); s.Store.Hit != 3 {
		b.Fatalf("lookups reached the store: %+v", s)
	}
}

// BenchmarkStoreHit: without Redis, every lookup finds its L1 entries past
// l1_ttl and reads PostgreSQL: two queries (token, account).
func BenchmarkStoreHit(b *testing.B) {
	f := newFixture(b, postgresStore(b, testenv.PostgresDSN(b)))
	clk := newClock()
	c := newCache(b, Options{Store: f.store, Now: clk.Now})
	ctx := context.Background()
	for b.Loop() {
		clk.Add(DefaultL1TTL)
		if _, _, err := c.TokenByID(ctx, f.tok.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreMissWithRedis: the cold path with Redis: L2 miss, two
// PostgreSQL queries, two conditional sets in Redis. Each iteration
// invalidates the token and account first (not timed).
func BenchmarkStoreMissWithRedis(b *testing.B) {
	rdb, prefix := sharedRedis(b)
	f := newFixture(b, postgresStore(b, testenv.PostgresDSN(b)))
	c := newCache(b, Options{Store: f.store, Redis: rdb, KeyPrefix: prefix})
	ctx := context.Background()
	inv := tollgate.Invalidation{AccountID: f.acct.ID, TokenIDs: []string{f.tok.ID}}
	for b.Loop() {
		b.StopTimer()
		c.Invalidate(ctx, inv)
		b.StartTimer()
		if _, _, err := c.TokenByID(ctx, f.tok.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNegativeHit(b *testing.B) {
	f := newFixture(b, sqliteStore(b))
	c := newCache(b, Options{Store: f.store})
	ctx := context.Background()
	unknown := randomBytes(32)
	c.Token(ctx, unknown)
	for b.Loop() {
		if _, _, err := c.Token(ctx, unknown); tollgate.ErrorCode(err) != tollgate.EUNAUTHORIZED {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordUse(b *testing.B) {
	c := newCache(b, Options{Store: sqliteStore(b)})
	at := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.RecordUse("tok_0123456789abcdef", "203.0.113.9", "containerd/v2.0.4", at)
		}
	})
}

// BenchmarkMemoryPerCachedToken looks up N tokens of 100 accounts through
// a fresh cache and reports the heap the cache keeps per token: the hash
// mapping, the token and a hundredth of an account, with map overhead.
func BenchmarkMemoryPerCachedToken(b *testing.B) {
	const n, perAccount = 10_000, 100
	store := sqliteStore(b)
	keys := newKeys(b)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	expires := now.Add(90 * 24 * time.Hour)
	hashes := make([][]byte, 0, n)
	err := store.Update(ctx, func(tx tollgate.Tx) error {
		var acct *tollgate.Account
		for i := range n {
			if i%perAccount == 0 {
				acct = &tollgate.Account{
					ID: tollgate.NewID("acc_"), Name: fmt.Sprintf("customer-%04d", i/perAccount),
					Status: tollgate.AccountActive, PackageAccess: tollgate.PackageAccessGranted,
					Subscription: tollgate.Subscription{Images: []string{"team-a/**", "python*", "nginx"}, Packages: []string{"os"}},
					CreatedAt:    now, UpdatedAt: now,
				}
				if err := tx.InsertAccount(ctx, acct); err != nil {
					return err
				}
			}
			secret := tollgate.NewSecret(tollgate.TokenPrefix)
			tok := &tollgate.Token{
				ID: tollgate.NewID("tok_"), AccountID: acct.ID, Name: fmt.Sprintf("ci-runner-%d", i),
				Description: "pull secret for the production cluster", Scope: tollgate.ScopeImages | tollgate.ScopePackages,
				ExpiresAt: &expires, CreatedAt: now, UpdatedAt: now,
			}
			h := keys.Hash(secret)
			if err := tx.InsertToken(ctx, tok, h, keys.Seal(secret, tok.ID)); err != nil {
				return err
			}
			hashes = append(hashes, h)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var perToken float64
	for b.Loop() {
		c := newCache(b, Options{Store: store})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, h := range hashes {
			if _, _, err := c.Token(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s := c.Stats(); s.L1Tokens != n || s.L1Hashes != n || s.L1Accounts != n/perAccount {
			b.Fatalf("not all cached: %+v", s)
		}
		perToken = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perToken, "B/token")
}
