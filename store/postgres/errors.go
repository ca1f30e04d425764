package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate"
)

// dbError turns a pgx error into a *tollgate.Error: no row or a foreign key
// pointing nowhere is ENOTFOUND (message notFound), a unique violation
// ECONFLICT (message conflict), a connection that cannot be made or was
// lost, a closed pool or a deadline EUNAVAILABLE, anything else EINTERNAL.
//
// The server's message names the constraint, never the values (those are
// in PgError.Detail, which Error() leaves out), so wrapping it does not
// leak secrets into logs.
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
	if errors.Is(err, pgx.ErrNoRows) {
		return tollgate.Errorf(tollgate.ENOTFOUND, "%s", notFound)
	}
	// Checked before PgError: a server error while connecting (no such
	// database, authentication failed, too many clients) is still a
	// connection failure.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return tollgate.Unavailable("store", err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return &tollgate.Error{Code: tollgate.ECONFLICT, Message: conflict, Err: err}
		case pgErr.Code == "23503": // foreign_key_violation
			return &tollgate.Error{Code: tollgate.ENOTFOUND, Message: notFound, Err: err}
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			pgErr.Code == "53300",                        // too_many_connections
			pgErr.Code == "57P01", pgErr.Code == "57P02", // admin or crash shutdown
			pgErr.Code == "57P03",                        // cannot_connect_now
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock: retry
			return tollgate.Unavailable("store", err)
		}
		return tollgate.Internal(err)
	}
	if unavailable(err) {
		return tollgate.Unavailable("store", err)
	}
	return tollgate.Internal(err)
}

// unavailable reports whether err says the database could not be reached
// or stopped answering, rather than that a statement was wrong.
func unavailable(err error) bool {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr),
		pgconn.Timeout(err),
		pgconn.SafeToRetry(err), // nothing was sent: the connection failed first
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, errPoolClosed),
		strings.Contains(err.Error(), "closed pool"): // puddle.ErrClosedPool
		return true
	}
	return false
}
