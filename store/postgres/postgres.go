// Package postgres is the tollgate.Store for production: PostgreSQL through
// pgx's connection pool, with its schema in embedded, numbered migrations.
//
// Tables live in the first schema of the connection's search_path, so a
// DSN such as "postgres://host/db?search_path=tollgate" keeps tollgate in
// its own schema. Pool settings (pool_max_conns, ...) go in the DSN too;
// Options.MaxConns, when set, wins over pool_max_conns (it is the setting
// operators see: store.postgres.max_conns). Without connect_timeout in the
// DSN, Options.ConnectTimeout bounds each connection attempt (dial, TLS,
// authentication), so a blackholed server fails a request or a start-up
// instead of hanging it.
//
// Update runs in a READ COMMITTED transaction; AccountByID/AccountByName
// with forUpdate take the account's row lock (SELECT ... FOR UPDATE), which
// is how Service serializes changes to one account across replicas. View
// runs on the pool without a transaction. Times are timestamptz
// (microseconds) read back in UTC; empty subscription lists and audit
// changes read back as nil.
package postgres

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate"
)

// DB is a tollgate.Store on a PostgreSQL database.
type DB struct {
	pool   *pgxpool.Pool
	closed atomic.Bool
}

var _ tollgate.Store = (*DB)(nil)

// Options tune the pool beyond what the DSN says.
type Options struct {
	// MaxConns caps the pool (0: pool_max_conns from the DSN, else pgx's
	// default of max(4, CPUs)).
	MaxConns int
	// ConnectTimeout bounds one connection attempt when the DSN has no
	// connect_timeout (0: none, only ctx).
	ConnectTimeout time.Duration
}

// Open connects to the database at dsn (a URL or key=value string, as pgx
// takes it) and applies any migrations it lacks. Errors are EINVALID for
// a DSN that does not parse, EUNAVAILABLE when the server cannot be
// reached.
func Open(ctx context.Context, dsn string) (*DB, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith is Open with pool options. Its errors are Open's.
func OpenWith(ctx context.Context, dsn string, o Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error quotes the DSN (password redacted as well as pgx
		// can); keep only the reason.
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			err = errors.Unwrap(pce)
		}
		return nil, &tollgate.Error{Code: tollgate.EINVALID, Message: "invalid PostgreSQL DSN", Err: err}
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = int32(min(o.MaxConns, math.MaxInt32))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 && o.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, dbError(err, "", "")
	}
	db := &DB{pool: pool}
	if err := db.Migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// MaxConns is the size the pool may grow to.
func (db *DB) MaxConns() int { return int(db.pool.Config().MaxConns) }

// Close closes the pool, waiting for connections in use to be returned.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	if !db.closed.Swap(true) {
		db.pool.Close()
	}
	return nil
}

var errPoolClosed = errors.New("postgres: store is closed")

func (db *DB) check() error {
	if db.closed.Load() {
		return tollgate.Unavailable("store", errPoolClosed)
	}
	return nil
}

// Ping reports whether the server answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.check(); err != nil {
		return err
	}
	return dbError(db.pool.Ping(ctx), "", "")
}

// Update runs fn in a transaction and commits if it returns nil. fn's
// error is returned as is. A statement of fn that fails on a constraint
// (ECONFLICT, ENOTFOUND) is undone alone, as in SQLite: the transaction
// stays usable.
func (db *DB) Update(ctx context.Context, fn func(tx tollgate.Tx) error) error {
	if err := db.check(); err != nil {
		return err
	}
	ptx, err := db.pool.Begin(ctx)
	if err != nil {
		return dbError(err, "", "")
	}
	done := false
	defer func() {
		// On an error or a panic in fn, roll back, even if ctx has ended.
		if !done {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			ptx.Rollback(rctx)
		}
	}()
	if err := fn(&tx{q: ptx, inTx: true}); err != nil {
		return err
	}
	done = true
	if err := ptx.Commit(ctx); err != nil {
		return dbError(err, "", "")
	}
	return nil
}

// View runs fn on the pool, each read in its own implicit transaction.
// forUpdate is ignored and writes return EINTERNAL.
func (db *DB) View(ctx context.Context, fn func(tx tollgate.Tx) error) error {
	if err := db.check(); err != nil {
		return err
	}
	return fn(&tx{q: db.pool, readOnly: true})
}

// RecordUsage adds each usage to its token in one round trip and one
// (implicit) transaction. Usages of one token are merged first and rows
// are updated in id order, so concurrent calls from several replicas do
// not deadlock. Last-used fields only ever move forward in time.
func (db *DB) RecordUsage(ctx context.Context, usage []tollgate.TokenUsage) error {
	if err := db.check(); err != nil {
		return err
	}
	merged := mergeUsage(usage)
	if len(merged) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, u := range merged {
		b.Queue(`
			UPDATE tokens SET
				last_used_ip = CASE WHEN last_used_at IS NULL OR last_used_at <= $1 THEN $2 ELSE last_used_ip END,
				last_used_ua = CASE WHEN last_used_at IS NULL OR last_used_at <= $1 THEN $3 ELSE last_used_ua END,
				last_used_at = GREATEST(last_used_at, $1),
				pulls = pulls + $4
			WHERE id = $5`,
			utc(u.At), u.IP, u.UA, u.Pulls, u.TokenID)
		if u.Previous {
			queuePreviousUse(b, u)
		}
	}
	return dbError(db.pool.SendBatch(ctx, b).Close(), "", "")
}

// mergeUsage folds usages of the same token into one (pulls add up, the
// latest use gives time, address and user agent) and sorts by token id.
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
	slices.SortFunc(out, func(a, b tollgate.TokenUsage) int { return strings.Compare(a.TokenID, b.TokenID) })
	return out
}
