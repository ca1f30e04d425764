// Package sqlite is the tollgate.Store of the embedded default: one SQLite
// database file, through the pure-Go driver modernc.org/sqlite, with its
// schema in embedded, numbered migrations.
//
// SQLite lets one writer in at a time. DB therefore keeps a pool of one
// connection for writers, whose transactions begin IMMEDIATE (they take the
// write lock up front, so a read-then-write never fails half way with
// SQLITE_BUSY), and a separate pool of read-only connections for View. In
// WAL mode readers never wait for the writer. Another process on the same
// file (the CLI next to a running server) waits up to busy_timeout.
//
// Times are stored as integer microseconds since the Unix epoch and read
// back in UTC. Empty subscription lists and audit changes read back as nil.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tollgate/tollgate"
)

// busyTimeout is how long a connection waits for a lock held by another
// process before giving up, in milliseconds.
const busyTimeout = 10000

// DB is a tollgate.Store on one SQLite database file.
type DB struct {
	writer *sql.DB // exactly one connection: Update, RecordUsage, Migrate
	reader *sql.DB // query_only connections: View, Ping
	closed atomic.Bool
}

var _ tollgate.Store = (*DB)(nil)

// Open opens (creating if needed) the database file at path, switches it to
// WAL, and applies any migrations it lacks. The directory must exist.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		// Two pools on ":memory:" would be two databases; a '?' would be
		// read as the start of the driver's parameters.
		return nil, tollgate.Errorf(tollgate.EINVALID, "sqlite: path must name a database file without '?' (got %q)", path)
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeout)
	writer, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, tollgate.Internal(err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxIdleTime(0)
	writer.SetConnMaxLifetime(0)

	// The writer connects first so that the file exists and is in WAL mode
	// before any reader opens it.
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, dbError(err, "", "")
	}

	reader, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		writer.Close()
		return nil, tollgate.Internal(err)
	}
	reader.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))

	db := &DB{writer: writer, reader: reader}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes both pools. Calls after the first return nil.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	return errors.Join(db.reader.Close(), db.writer.Close())
}

// Ping reports whether the database file can be read.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return errClosed()
	}
	var one int
	if err := db.reader.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return dbError(err, "", "")
	}
	return nil
}

// Update runs fn in a write transaction (BEGIN IMMEDIATE on the single
// writer connection), so Updates run one after the other. fn's error is
// returned as is. Update must not be called from inside fn: the inner
// call would wait for the connection the outer one holds.
func (db *DB) Update(ctx context.Context, fn func(tx tollgate.Tx) error) error {
	if db.closed.Load() {
		return errClosed()
	}
	return runTx(ctx, db.writer, nil, false, fn)
}

// View runs fn in a read-only transaction on a reader connection: fn sees
// one snapshot, taken at its first read. Writes return EINTERNAL.
func (db *DB) View(ctx context.Context, fn func(tx tollgate.Tx) error) error {
	if db.closed.Load() {
		return errClosed()
	}
	return runTx(ctx, db.reader, &sql.TxOptions{ReadOnly: true}, true, fn)
}

func runTx(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, readOnly bool, fn func(tx tollgate.Tx) error) (err error) {
	stx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return dbError(err, "", "")
	}
	done := false
	defer func() {
		// On an error or a panic in fn, nothing it wrote remains, and the
		// writer connection goes back to the pool.
		if !done {
			stx.Rollback()
		}
	}()
	if err := fn(&tx{q: stx, readOnly: readOnly}); err != nil {
		return err
	}
	done = true
	if readOnly {
		stx.Rollback()
		return nil
	}
	if err := stx.Commit(); err != nil {
		if ctx.Err() != nil {
			// database/sql rolled back when ctx ended; say why.
			return dbError(ctx.Err(), "", "")
		}
		return dbError(err, "", "")
	}
	return nil
}

// RecordUsage adds each usage to its token in one transaction. Usages of
// one token are merged first; last-used fields only ever move forward in
// time, so batches from several replicas may arrive in any order.
func (db *DB) RecordUsage(ctx context.Context, usage []tollgate.TokenUsage) error {
	merged := mergeUsage(usage)
	if len(merged) == 0 {
		return nil
	}
	return db.Update(ctx, func(t tollgate.Tx) error {
		q := t.(*tx).q
		stmt, err := q.PrepareContext(ctx, `
			UPDATE tokens SET
				last_used_ip = CASE WHEN last_used_at IS NULL OR last_used_at <= ? THEN ? ELSE last_used_ip END,
				last_used_ua = CASE WHEN last_used_at IS NULL OR last_used_at <= ? THEN ? ELSE last_used_ua END,
				last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? ELSE last_used_at END,
				pulls = pulls + ?
			WHERE id = ?`)
		if err != nil {
			return dbError(err, "", "")
		}
		defer stmt.Close()
		for _, u := range merged {
			at := micros(u.At)
			if _, err := stmt.ExecContext(ctx, at, u.IP, at, u.UA, at, at, u.Pulls, u.TokenID); err != nil {
				return dbError(err, "", "")
			}
			if u.Previous {
				if err := recordPreviousUse(ctx, q, u); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// mergeUsage folds usages of the same token into one: pulls add up, the
// latest use gives the time, address and user agent. Order is by token id.
func mergeUsage(usage []tollgate.TokenUsage) []tollgate.TokenUsage {
	byID := make(map[string]int, len(usage))
	var out []tollgate.TokenUsage
	for _, u := range usage {
		k := u.TokenID
		if u.Previous {
			k += "\x00previous"
		}
		i, ok := byID[k]
		if !ok {
			byID[k] = len(out)
			out = append(out, u)
			continue
		}
		m := &out[i]
		pulls := m.Pulls + u.Pulls
		if !u.At.Before(m.At) {
			*m = u
		}
		m.Pulls = pulls
	}
	return out
}
