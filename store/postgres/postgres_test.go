package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/postgres"
	"github.com/tollgate/tollgate/store/storetest"
)

func open(t *testing.T, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newStore opens a store in a schema of its own, dropped when t ends.
func newStore(t *testing.T) tollgate.Store { return open(t, testenv.PostgresDSN(t)) }

func TestConformance(t *testing.T) {
	testenv.PostgresDSN(t) // skip (or fail) once here, not in every subtest
	storetest.Run(t, newStore)
}

func newAccount(name string) *tollgate.Account {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &tollgate.Account{ID: tollgate.NewID("acct_"), Name: name, Status: tollgate.AccountActive,
		PackageAccess: tollgate.PackageAccessNone, CreatedAt: now, UpdatedAt: now}
}

// TestTablesLiveInSearchPathSchema: nothing is created in public, so
// installations (and tests) in other schemas of one database stay apart.
func TestTablesLiveInSearchPathSchema(t *testing.T) {
	ctx := t.Context()
	dsn := testenv.PostgresDSN(t)
	open(t, dsn)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var schema string
	var tables []string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(schema, "tg_test_") {
		t.Fatalf("current_schema = %q, want the test's schema", schema)
	}
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if want := "accounts audit deliveries events invalidations jobs schema_migrations sessions token_networks token_refusals tokens trust_policies usage_addresses usage_agents usage_days users webhooks"; strings.Join(tables, " ") != want {
		t.Fatalf("tables in %s = %q, want %s", schema, tables, want)
	}
}

// TestConcurrentMigrate: replicas starting together all succeed, and the
// migrations run once (pg_advisory_xact_lock).
func TestConcurrentMigrate(t *testing.T) {
	ctx := t.Context()
	dsn := testenv.PostgresDSN(t)
	const replicas = 6
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	dbs := make([]*postgres.DB, replicas)
	for i := range replicas {
		wg.Go(func() { dbs[i], errs[i] = postgres.Open(ctx, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open: %v", i, err)
			continue
		}
		if err := dbs[i].Migrate(ctx); err != nil {
			t.Errorf("replica %d: second Migrate: %v", i, err)
		}
		dbs[i].Close()
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, version int
	if err := conn.QueryRow(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &version); err != nil {
		t.Fatal(err)
	}
	// Versions may have gaps (a number held for a branch not merged yet).
	entries, _ := os.ReadDir("migrations")
	latest, _ := strconv.Atoi(strings.SplitN(entries[len(entries)-1].Name(), "_", 2)[0])
	if n != len(entries) || version != latest {
		t.Fatalf("schema_migrations: %d rows up to version %d; want %d up to %d", n, version, len(entries), latest)
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name string
		dsn  string
	}{
		{"ConnectionRefused", "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"},
		{"MissingDatabase", "postgres://postgres:hunter2@127.0.0.1:5432/tollgate_no_such_db?sslmode=disable&connect_timeout=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "MissingDatabase" {
				testenv.PostgresDSN(t) // needs a server that answers
			}
			db, err := postgres.Open(ctx, tc.dsn)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE {
				t.Fatalf("Open: %v (code %s); want EUNAVAILABLE", err, tollgate.ErrorCode(err))
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
	t.Run("DeadlineWhileConnecting", func(t *testing.T) {
		// A blackholed address would hang; an expired context is the same
		// from pgx's side.
		dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel()
		_, err := postgres.Open(dctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
		if tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE {
			t.Fatalf("Open: %v (code %s); want EUNAVAILABLE", err, tollgate.ErrorCode(err))
		}
	})
}

func TestInvalidDSN(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://postgres:hunter2@127.0.0.1:5432/test?sslmode=bogus")
	if tollgate.ErrorCode(err) != tollgate.EINVALID {
		t.Fatalf("Open: %v; want EINVALID", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	ctx := t.Context()
	db := newStore(t).(*postgres.DB)
	db.Close()
	for name, err := range map[string]error{
		"Ping":        db.Ping(ctx),
		"View":        db.View(ctx, func(tx tollgate.Tx) error { _, err := tx.ListAccounts(ctx); return err }),
		"Update":      db.Update(ctx, func(tollgate.Tx) error { return nil }),
		"RecordUsage": db.RecordUsage(ctx, []tollgate.TokenUsage{{TokenID: "tok_x", At: time.Now(), Pulls: 1}}),
		"Migrate":     db.Migrate(ctx),
	} {
		if tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE {
			t.Errorf("%s after Close: %v; want EUNAVAILABLE", name, err)
		}
	}
}

// TestServerGoneIsUnavailable: connections killed under the pool (a
// failover, a restart) give EUNAVAILABLE, not EINTERNAL.
func TestServerGoneIsUnavailable(t *testing.T) {
	ctx := t.Context()
	dsn := testenv.PostgresDSN(t)
	db := open(t, dsn+"&application_name=tollgate_victim&pool_max_conns=1")
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	err = db.Update(ctx, func(tx tollgate.Tx) error {
		var pid int
		if err := admin.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = 'tollgate_victim'`).Scan(&pid); err != nil {
			return fmt.Errorf("find victim: %w", err)
		}
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			return fmt.Errorf("terminate: %w", err)
		}
		_, err := tx.ListAccounts(ctx)
		return err
	})
	if tollgate.ErrorCode(err) != tollgate.EUNAVAILABLE {
		t.Fatalf("query on a terminated connection: %v (code %s); want EUNAVAILABLE", err, tollgate.ErrorCode(err))
	}
	// The pool recovers with a new connection.
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping after the connection was terminated: %v", err)
	}
}

// TestForUpdateBlocksSecondLocker shows the row lock directly: while one
// Update holds the account, another's AccountByID(forUpdate) waits.
func TestForUpdateBlocksSecondLocker(t *testing.T) {
	ctx := t.Context()
	db := newStore(t)
	a := newAccount("acme")
	if err := db.Update(ctx, func(tx tollgate.Tx) error { return tx.InsertAccount(ctx, a) }); err != nil {
		t.Fatal(err)
	}
	locked, unlock := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(unlock) })
	t.Cleanup(release) // before the store closes, which waits for the holder
	go db.Update(ctx, func(tx tollgate.Tx) error {
		if _, err := tx.AccountByID(ctx, a.ID, true); err != nil {
			return err
		}
		close(locked)
		<-unlock
		return nil
	})
	<-locked
	second := make(chan error, 1)
	go func() {
		second <- db.Update(ctx, func(tx tollgate.Tx) error { _, err := tx.AccountByName(ctx, "acme", true); return err })
	}()
	select {
	case err := <-second:
		t.Fatalf("second locker did not wait: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Plain reads do not wait.
	if err := db.View(ctx, func(tx tollgate.Tx) error { _, err := tx.AccountByID(ctx, a.ID, true); return err }); err != nil {
		t.Fatalf("View during the lock: %v", err)
	}
	release()
	if err := <-second; err != nil {
		t.Fatalf("second locker: %v", err)
	}
}

// TestMigrationClampsExpiriesPastYear9999: expiries past 9999-12-31 were
// accepted once; every answer that held such a token failed to encode (a
// 500 on listing an account's tokens). Migration 0003 clamps them.
func TestMigrationClampsExpiriesPastYear9999(t *testing.T) {
	ctx := t.Context()
	dsn := testenv.PostgresDSN(t)
	db := open(t, dsn)
	a := newAccount("acme")
	now := time.Now().UTC().Truncate(time.Microsecond)
	farAt := time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)
	nearAt := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	far := &tollgate.Token{ID: tollgate.NewID("tok_"), AccountID: a.ID, Name: "far", Scope: tollgate.ScopeImages, ExpiresAt: &farAt, CreatedAt: now, UpdatedAt: now}
	near := &tollgate.Token{ID: tollgate.NewID("tok_"), AccountID: a.ID, Name: "near", Scope: tollgate.ScopeImages, ExpiresAt: &nearAt, CreatedAt: now, UpdatedAt: now}
	if err := db.Update(ctx, func(tx tollgate.Tx) error {
		if err := tx.InsertAccount(ctx, a); err != nil {
			return err
		}
		if err := tx.InsertToken(ctx, far, []byte("far-hash"), nil); err != nil {
			return err
		}
		return tx.InsertToken(ctx, near, []byte("near-hash"), nil)
	}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Run migration 0003 over rows written before it existed.
	ms, err := postgres.LoadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version == 3 {
			if _, err := conn.Exec(ctx, m.SQL); err != nil {
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
	db, err := postgres.Open(b.Context(), testenv.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	storetest.BenchmarkRecordPulls(b, db)
}

func BenchmarkSweepExpiry(b *testing.B) {
	db, err := postgres.Open(b.Context(), testenv.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	storetest.BenchmarkSweepExpiry(b, db)
}
