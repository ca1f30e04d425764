package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered file of migrations/: NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %q is not named NNNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		body, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
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
	if latest := ms[len(ms)-1].version; current > latest {
		return tollgate.Internal(fmt.Errorf("sqlite: database schema version %d is newer than this binary's %d", current, latest))
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if _, err := stx.ExecContext(ctx, m.sql); err != nil {
			return tollgate.Internal(fmt.Errorf("sqlite: migration %s: %w", m.name, err))
		}
		if _, err := stx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, micros(time.Now())); err != nil {
			return dbError(err, "", "")
		}
	}
	if err := stx.Commit(); err != nil {
		return dbError(err, "", "")
	}
	return nil
}
