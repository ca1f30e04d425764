package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tollgate/tollgate"
)

var errDBClosed = errors.New("sqlite: database is closed")

func errClosed() error { return tollgate.Unavailable("store", errDBClosed) }

// dbError turns a driver error into a *tollgate.Error: no row or a foreign
// key pointing nowhere is ENOTFOUND (with message notFound), a unique
// violation ECONFLICT (with message conflict), a lock held too long or a
// file that cannot be opened EUNAVAILABLE, anything else EINTERNAL.
//
// The driver's messages name the constraint and columns, never the
// values, so wrapping them does not leak secrets into logs.
func dbError(err error, notFound, conflict string) error {
	if err == nil {
		return nil
	}
	var te *tollgate.Error
	if errors.As(err, &te) {
		return err
	}
	if notFound == "" {
		notFound = "not found"
	}
	if conflict == "" {
		conflict = "already exists"
	}
	if errors.Is(err, sql.ErrNoRows) {
		return tollgate.Errorf(tollgate.ENOTFOUND, "%s", notFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return &tollgate.Error{Code: tollgate.ECONFLICT, Message: conflict, Err: err}
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return &tollgate.Error{Code: tollgate.ENOTFOUND, Message: notFound, Err: err}
		}
		switch se.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY,
			sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOLFS:
			return tollgate.Unavailable("store", err)
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, sql.ErrConnDone),
		err.Error() == "sql: database is closed":
		return tollgate.Unavailable("store", err)
	}
	return tollgate.Internal(err)
}
