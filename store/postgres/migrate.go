package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/migrations"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

func loadMigrations() ([]migrations.Migration, error) {
	return migrations.Load(migrationFS, "migrations")
}

// migrateLockKey is the pg_advisory_xact_lock key that serializes
// migrations of replicas starting at once ("tollgate" in ASCII).
const migrateLockKey int64 = 0x746f6c6c67617465

// Migrate applies, in order and in one transaction, every embedded
// migration not yet recorded in schema_migrations. The transaction first
// takes an advisory lock, so replicas starting together migrate one after
// the other and the later ones find nothing to do. A database whose
// recorded version is newer than this binary knows is refused.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return tollgate.Internal(err)
	}
	if err := db.check(); err != nil {
		return err
	}
	ptx, err := db.pool.Begin(ctx)
	if err != nil {
		return dbError(err, "", "")
	}
	defer ptx.Rollback(context.WithoutCancel(ctx))

	if _, err := ptx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
		return dbError(err, "", "")
	}
	if _, err := ptx.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     NOT NULL PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL
		)`); err != nil {
		return dbError(err, "", "")
	}
	var current int
	if err := ptx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return dbError(err, "", "")
	}
	if latest := ms[len(ms)-1].Version; current > latest {
		return tollgate.Internal(fmt.Errorf("postgres: database schema version %d is newer than this binary's %d", current, latest))
	}
	// Every migration not recorded runs, not only those above the
	// highest recorded: numbers are handed out to parallel work, so a
	// database may have met 0006 before 0004.
	applied, err := appliedVersions(ctx, ptx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		// Without arguments pgx sends the file as one simple query, so a
		// migration may hold many statements.
		if _, err := ptx.Exec(ctx, m.SQL); err != nil {
			return tollgate.Internal(fmt.Errorf("postgres: migration %s: %w", m.Name, err))
		}
		if _, err := ptx.Exec(ctx,
			`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.Version, m.Name, time.Now().UTC()); err != nil {
			return dbError(err, "", "")
		}
	}
	if err := ptx.Commit(ctx); err != nil {
		return dbError(err, "", "")
	}
	return nil
}

// appliedVersions returns the versions recorded in schema_migrations.
func appliedVersions(ctx context.Context, ptx pgx.Tx) (map[int]bool, error) {
	rows, err := ptx.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, dbError(err, "", "")
	}
	out := map[int]bool{}
	for _, v := range vs {
		out[v] = true
	}
	return out, nil
}
