package tokencache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/postgres"
)

// Tests of the invalidation log's retention: pruned entries a replica
// never applied must not leave it trusting what they invalidated, and a
// gap that is only a rolled-back append must not cost a flush.

// appendAt appends a log entry naming account id, written at at.
func appendAt(t *testing.T, store tollgate.Store, id string, at time.Time) int64 {
	t.Helper()
	inv := &tollgate.Invalidation{At: at, AccountID: id}
	if err := store.Update(context.Background(), func(tx tollgate.Tx) error { return tx.AppendInvalidation(context.Background(), inv) }); err != nil {
		t.Fatal(err)
	}
	return inv.Seq
}

// TestReplicaBehindPrunedLogDropsCache: a replica caches a token (L1 and
// Redis), then stops reading the log; the token is revoked with no Redis
// message, and the log is pruned past the revocation. When the replica
// reads the log again, the revocation is gone from it: the replica must
// drop its cache and ignore the Redis entry stamped before, not serve the
// token.
func TestReplicaBehindPrunedLogDropsCache(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tollgate.Store) {
		ctx := context.Background()
		rdb, prefix := sharedRedis(t)
		f := newFixture(t, store)
		clk := newClock()
		o := Options{Store: store, Redis: rdb, KeyPrefix: prefix, Now: clk.Now, After: clk.After}
		appendAt(t, store, "acc_other", clk.Now().Add(-48*time.Hour))
		behind := newCache(t, o)
		if err := behind.catchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if behind.Stats().LogSeq == 0 {
			t.Fatal("test broken: the replica applied no entry")
		}
		mustToken(t, behind, f.hash())

		// Revoked with no cache told, then an old entry (a replica with a
		// slow clock) after it, and a prune: everything before that entry
		// goes, the revocation with it.
		if _, err := f.svc.RevokeToken(ctx, "test", f.tok.ID); err != nil {
			t.Fatal(err)
		}
		appendAt(t, store, "acc_other", clk.Now().Add(-30*time.Hour))
		pruner := newCache(t, o)
		pruner.pruneLog(ctx)
		if n := pruner.Stats().LogPruned; n < 2 {
			t.Fatalf("test broken: the prune deleted %d entries", n)
		}
		if !staleInRedis(t, behind, f.tok.ID) {
			t.Fatal("test broken: Redis lost the old entry")
		}

		flushes := behind.Stats().Flushes
		if err := behind.catchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if allowed(behind, f.tok.ID, f.hash()) {
			t.Fatal("a replica behind a pruned log still allows a token revoked in the pruned part")
		}
		s := behind.Stats()
		if s.Flushes != flushes+1 || s.PrunedBehind != 1 || s.L2Ignored == 0 {
			t.Errorf("flushes %d → %d, pruned behind %d, Redis entries ignored %d; want one flush and the stale Redis entry ignored",
				flushes, s.Flushes, s.PrunedBehind, s.L2Ignored)
		}
	})
}

// TestRolledBackAppendIsNotAPrunedGap: a write that rolls back after its
// append leaves a gap in PostgreSQL's sequence, and entries older than
// the retention are pruned before the replica's last read. Neither means
// the replica missed anything: it must keep its cache.
func TestRolledBackAppendIsNotAPrunedGap(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tollgate.Store) {
		ctx := context.Background()
		f := newFixture(t, store)
		clk := newClock()
		o := Options{Store: store, Now: clk.Now, After: clk.After}
		appendAt(t, store, "acc_other", clk.Now().Add(-48*time.Hour))
		last := appendAt(t, store, "acc_other", clk.Now().Add(-47*time.Hour))
		c := newCache(t, o)
		if err := c.catchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.Stats().LogSeq; got != last {
			t.Fatalf("test broken: applied %d, want %d", got, last)
		}
		mustToken(t, c, f.hash())

		c.pruneLog(ctx) // the first entry goes; the replica's last stays
		if n := c.Stats().LogPruned; n == 0 {
			t.Fatal("test broken: the prune deleted nothing")
		}
		boom := errors.New("boom")
		err := store.Update(ctx, func(tx tollgate.Tx) error {
			if err := tx.AppendInvalidation(ctx, &tollgate.Invalidation{At: clk.Now(), AccountID: "acc_gone"}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		next := appendAt(t, store, "acc_other", clk.Now())
		if _, isPostgres := store.(*postgres.DB); next == last+1 && isPostgres {
			t.Fatal("test broken: the rolled-back append left no gap")
		}

		before := c.Stats()
		if err := c.catchUp(ctx); err != nil {
			t.Fatal(err)
		}
		mustToken(t, c, f.hash())
		s := c.Stats()
		if s.Flushes != before.Flushes || s.PrunedBehind != 0 || s.LogSeq != next {
			t.Errorf("after a gap of a rolled-back append: flushes %d → %d, pruned behind %d, applied %d (want %d)",
				before.Flushes, s.Flushes, s.PrunedBehind, s.LogSeq, next)
		}
		if s.Store.Hit != before.Store.Hit {
			t.Errorf("the token was read from the store again (%d → %d store hits): the cache was dropped", before.Store.Hit, s.Store.Hit)
		}
	})
}
