package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/internal/migrations"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

func loadMigrations() ([]migrations.Migration, error) {
	return migrations.Load(migrationFS, "migrations")
}

// Migrate applies, in order and in one write transaction, every embedded
// migration not yet recorded in schema_migrations. It is safe to call
// again, and from several processes at once: the write lock serializes
// them and the later ones find nothing to do. A database whose recorded
// version is newer than this binary knows is refused.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return tollgate.Internal(err)
	}
	if db.closed.Load() {
		return errClosed()
	}
	stx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return dbError(err, "", "")
	}
	defer stx.Rollback()

	if _, err := stx.ExecContext(ctx, `
		CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			name       TEXT    NOT NULL,
			applied_at INTEGER NOT NULL
		) STRICT`); err != nil {
		return dbError(err, "", "")
	}
	var current int
	if err := stx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return dbError(err, "", "")
	}
	if latest := ms[len(ms)-1].Version; current > latest {
		return tollgate.Internal(fmt.Errorf("sqlite: database schema version %d is newer than this binary's %d", current, latest))
	}
	// Every migration not recorded runs, not only those above the
	// highest recorded: numbers are handed out to parallel work, so a
	// database may have met 0006 before 0004.
	applied, err := appliedVersions(ctx, stx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if _, err := stx.ExecContext(ctx, m.SQL); err != nil {
			return tollgate.Internal(fmt.Errorf("sqlite: migration %s: %w", m.Name, err))
		}
		if _, err := stx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, micros(time.Now())); err != nil {
			return dbError(err, "", "")
		}
	}
	if err := stx.Commit(); err != nil {
		return dbError(err, "", "")
	}
	return nil
}

// appliedVersions returns the versions recorded in schema_migrations.
func appliedVersions(ctx context.Context, stx *sql.Tx) (map[int]bool, error) {
	rows, err := stx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, dbError(err, "", "")
		}
		out[v] = true
	}
	return out, dbError(rows.Err(), "", "")
}
