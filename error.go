package tollgate

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes. Each maps to one HTTP status (HTTPStatus), used by the API,
// the console and the edge alike.
const (
	EINVALID      = "invalid"      // bad input; Field names the field
	ENOTFOUND     = "not_found"    // no such account, token, ...
	EUNAUTHORIZED = "unauthorized" // no or bad credentials
	EFORBIDDEN    = "forbidden"    // valid credentials, not allowed
	ECONFLICT     = "conflict"     // state forbids it (duplicate name, revoked token)
	ELIMIT        = "limit"        // a quota is exhausted
	EUNAVAILABLE  = "unavailable"  // a dependency is down; retry later
	EINTERNAL     = "internal"     // a bug or an unexpected failure
)

// Error is the one error type of tollgate. Message is safe to show to the
// caller; Err (the cause) is for logs only and never reaches a client.
type Error struct {
	Code    string
	Field   string // the input field at fault, dotted path, if any
	Message string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the one table from error codes to HTTP statuses; an
// unknown code is an internal error.
func HTTPStatus(code string) int {
	switch code {
	case EINVALID:
		return http.StatusBadRequest
	case EUNAUTHORIZED:
		return http.StatusUnauthorized
	case EFORBIDDEN:
		return http.StatusForbidden
	case ENOTFOUND:
		return http.StatusNotFound
	case ECONFLICT, ELIMIT:
		return http.StatusConflict
	case EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an EINVALID error about one input field. Its Error()
// reads "field: message", as users see it in the CLI.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Internal wraps an unexpected error; the caller sees a generic message.
func Internal(err error) *Error {
	return &Error{Code: EINTERNAL, Message: "internal error", Err: err}
}

// Unavailable wraps a failure of a dependency (store, cache, upstream).
func Unavailable(what string, err error) *Error {
	return &Error{Code: EUNAVAILABLE, Message: what + " unavailable, retry later", Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: the Message (with
// its field) of an *Error, a generic text for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Field != "" {
			return e.Field + ": " + e.Message
		}
		return e.Message
	}
	return "internal error"
}

// ErrorField returns the field of the first *Error in err's chain.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
