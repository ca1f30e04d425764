package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/sqlite"
	"github.com/tollgate/tollgate/store/storetest"
)

func open(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newStore(t *testing.T) tollgate.Store {
	return open(t, filepath.Join(t.TempDir(), "tollgate.db"))
}

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func newAccount(name string) *tollgate.Account {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &tollgate.Account{ID: tollgate.NewID("acct_"), Name: name, Status: tollgate.AccountActive,
		PackageAccess: tollgate.PackageAccessNone, CreatedAt: now, UpdatedAt: now}
}

func newToken(a *tollgate.Account, name string) (*tollgate.Token, []byte) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &tollgate.Token{ID: tollgate.NewID("tok_"), AccountID: a.ID, Name: name, Scope: tollgate.ScopeImages,
		CreatedAt: now, UpdatedAt: now}, []byte(tollgate.NewID("hash_"))
}

func TestOpenCreatesWALDatabaseWithMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.db")
	db := open(t, path)
	if err := db.Migrate(t.Context()); err != nil { // again: nothing to do
		t.Fatalf("second Migrate: %v", err)
	}
	db.Close()

	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var mode string
	if err := raw.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var n, version int
	if err := raw.QueryRow("SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &version); err != nil {
		t.Fatal(err)
	}
	// Versions may have gaps (a number held for a branch not merged yet).
	entries, _ := os.ReadDir("migrations")
	latest, _ := strconv.Atoi(strings.SplitN(entries[len(entries)-1].Name(), "_", 2)[0])
	if n != len(entries) || version != latest {
		t.Fatalf("schema_migrations: %d rows up to version %d; want %d up to %d", n, version, len(entries), latest)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	db := open(t, path)
	a := newAccount("acme")
	if err := db.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertAccount(ctx, a) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, path)
	if err := db.View(ctx, func(tx tollgate.Tx) error { _, err := tx.AccountByName(ctx, "acme", false); return err }); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
}

func TestForeignKeysEnforced(t *testing.T) {
	ctx := t.Context()
	db := newStore(t)
	tok, hash := newToken(newAccount("ghost"), "orphan")
	err := db.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertToken(ctx, tok, hash, nil) })
	if tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("InsertToken for a missing account: %v; want ENOTFOUND from the foreign key", err)
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if db, err := sqlite.Open(t.Context(), path); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", path)
		} else if tollgate.ErrorCode(err) != tollgate.EINVALID {
			t.Errorf("Open(%q): %v, want EINVALID", path, err)
		}
	}
}

func TestOpenMissingDirectoryIsUnavailable(t *testing.T) {
	_, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "no", "such", "dir", "tollgate.db"))
	if tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE {
		t.Fatalf("Open in a missing directory: %v; want EUNAVAILABLE", err)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	ctx := t.Context()
	db := newStore(t)
	db.Close()
	for name, err := range map[string]error{
		"Ping":        db.Ping(ctx),
		"View":        db.View(ctx, func(tollgate.Tx) error { return nil }),
		"Update":      db.Update(ctx, func(tollgate.Tx) error { return nil }),
		"RecordUsage": db.RecordUsage(ctx, []tollgate.TokenUsage{{TokenID: "tok_x", At: time.Now(), Pulls: 1}}),
	} {
		if tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE {
			t.Errorf("%s after Close: %v; want EUNAVAILABLE", name, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestTwoProcessesOnOneFile: the CLI and a server may open the same file.
// Their writers serialize on SQLite's lock (BEGIN IMMEDIATE plus
// busy_timeout) instead of failing with SQLITE_BUSY half way.
func TestTwoProcessesOnOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	dbs := []*sqlite.DB{open(t, path), open(t, path)}
	a := newAccount("acme")
	if err := dbs[0].Update(ctx, func(tx tollgate.Tx) error { return tx.InsertAccount(ctx, a) }); err != nil {
		t.Fatal(err)
	}
	const perDB, limit = 40, 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*perDB)
	for i := range 2 * perDB {
		wg.Go(func() {
			err := dbs[i%2].Update(ctx, func(tx tollgate.Tx) error {
				n, err := tx.CountActiveTokens(ctx, a.ID)
				if err != nil {
					return err
				}
				if n >= limit {
					return tollgate.Errorf(tollgate.ELIMIT, "limit")
				}
				tok, hash := newToken(a, fmt.Sprint(i))
				return tx.InsertToken(ctx, tok, hash, nil)
			})
			if err != nil && tollgate.ErrorCode(err) != tollgate.ELIMIT {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Update: %v", err)
	}
	var n int
	if err := dbs[1].View(ctx, func(tx tollgate.Tx) (err error) { n, err = tx.CountActiveTokens(ctx, a.ID); return err }); err != nil {
		t.Fatal(err)
	}
	if n != limit {
		t.Fatalf("%d tokens, want %d", n, limit)
	}
}

// TestViewDoesNotWaitForWriter: in WAL mode a read is not blocked by an
// open write transaction, and sees the last committed state.
func TestViewDoesNotWaitForWriter(t *testing.T) {
	ctx := t.Context()
	db := newStore(t).(*sqlite.DB)
	inWrite, release := make(chan struct{}), make(chan struct{})
	go db.Update(ctx, func(tx tollgate.Tx) error {
		if err := tx.InsertAccount(ctx, newAccount("pending")); err != nil {
			return err
		}
		close(inWrite)
		<-release
		return nil
	})
	<-inWrite
	defer close(release)
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := db.View(vctx, func(tx tollgate.Tx) error { _, err := tx.AccountByName(vctx, "pending", false); return err })
	if tollgate.ErrorCode(err) != tollgate.ENOTFOUND {
		t.Fatalf("View during a write: %v; want ENOTFOUND without waiting", err)
	}
}

// TestMigrationClampsExpiriesPastYear9999: expiries past 9999-12-31 were
// accepted once; every answer that held such a token failed to encode (a
// 500 on listing an account's tokens). Migration 0003 clamps them.
func TestMigrationClampsExpiriesPastYear9999(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	db := open(t, path)
	a := newAccount("acme")
	far, _ := newToken(a, "far")
	farAt := time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)
	far.ExpiresAt = &farAt
	near, nearHash := newToken(a, "near")
	nearAt := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	near.ExpiresAt = &nearAt
	if err := db.Update(ctx, func(tx tollgate.Tx) error {
		if err := tx.InsertAccount(ctx, a); err != nil {
			return err
		}
		if err := tx.InsertToken(ctx, far, []byte("far-hash"), nil); err != nil {
			return err
		}
		return tx.InsertToken(ctx, near, nearHash, nil)
	}); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Run migration 0003 over rows written before it existed.
	ms, err := sqlite.LoadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version == 3 {
			if _, err := raw.ExecContext(ctx, m.SQL); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id, want := range map[string]time.Time{far.ID: tollgate.MaxExpiry, near.ID: nearAt} {
		var got *tollgate.Token
		if err := db.View(ctx, func(tx tollgate.Tx) (err error) { got, err = tx.TokenByID(ctx, id); return err }); err != nil {
			t.Fatal(err)
		}
		if got.ExpiresAt == nil || !got.ExpiresAt.Equal(want) {
			t.Errorf("token %s expires %v after the migration, want %v", got.Name, got.ExpiresAt, want)
		}
	}
}

func BenchmarkRecordPulls(b *testing.B) {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	storetest.BenchmarkRecordPulls(b, db)
}

func BenchmarkSweepExpiry(b *testing.B) {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	storetest.BenchmarkSweepExpiry(b, db)
}
