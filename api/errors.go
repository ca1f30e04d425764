package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate"
)

// codeOf maps a status back to a code, for answers that carry no envelope
// (a proxy in front of tollgate, say).
func codeOf(status int) string {
	switch {
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge:
		return tollgate.EINVALID
	case status == http.StatusUnauthorized:
		return tollgate.EUNAUTHORIZED
	case status == http.StatusForbidden:
		return tollgate.EFORBIDDEN
	case status == http.StatusNotFound, status == http.StatusMethodNotAllowed:
		return tollgate.ENOTFOUND
	case status == http.StatusConflict:
		return tollgate.ECONFLICT
	case status == http.StatusBadGateway, status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		return tollgate.EUNAVAILABLE
	}
	return tollgate.EINTERNAL
}

// challenge is what a 401 answer says about how to authenticate.
const challenge = `Bearer realm="tollgate-api"`

// writeError writes err as the error envelope and returns the status.
// Only the client-safe parts of err go out; internal and unavailable
// causes go to the log.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) int {
	code, status := codeStatus(err)
	switch code {
	case tollgate.EINTERNAL:
		s.log().ErrorContext(r.Context(), "api: internal error", "method", r.Method, "path", logPath(r), "err", err)
	case tollgate.EUNAVAILABLE:
		s.log().WarnContext(r.Context(), "api: dependency unavailable", "method", r.Method, "path", logPath(r), "err", err)
		w.Header().Set("Retry-After", "5")
	case tollgate.EUNAUTHORIZED:
		w.Header().Set("WWW-Authenticate", challenge)
	}
	detail := ErrorDetail{Code: code, Message: tollgate.ErrorMessage(err), Field: tollgate.ErrorField(err)}
	if code == tollgate.EINTERNAL {
		// Never pass on an internal message, even one someone put in an
		// *Error: only the code tells the client anything.
		detail.Message, detail.Field = "internal error", ""
	}
	writeJSON(w, status, ErrorBody{Error: detail})
	return status
}

// codeStatus returns err's code, EINTERNAL for an unknown one, and its
// status from the one table, tollgate.HTTPStatus.
func codeStatus(err error) (string, int) {
	code := tollgate.ErrorCode(err)
	status := tollgate.HTTPStatus(code)
	if status == http.StatusInternalServerError {
		code = tollgate.EINTERNAL
	}
	return code, status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own wire types are marshalled; this is a bug.
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store") // answers may hold secrets
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// MaxBodySize caps request bodies.
const MaxBodySize = 64 << 10

// decode reads r's JSON body into v strictly: the Content-Type must be
// JSON, the body at most MaxBodySize, one object, no unknown fields, every
// value of the declared type. Errors are EINVALID naming the field.
func decode(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return tollgate.Errorf(tollgate.EINVALID, "Content-Type must be application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBodySize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, v)
	}
	// Anything but white space after the object is an error.
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err, v)
		}
		return tollgate.Errorf(tollgate.EINVALID, "request body must hold a single JSON object")
	}
	return nil
}

// decodeError turns a decoding error into an EINVALID error naming the
// field; v is what was decoded into, to name the type a field wants.
func decodeError(err error, v any) error {
	var (
		mbe  *http.MaxBytesError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		msg  = err.Error()
		unkn = "json: unknown field "
	)
	switch {
	case errors.As(err, &mbe):
		return tollgate.Errorf(tollgate.EINVALID, "request body is larger than %d KiB", MaxBodySize>>10)
	case errors.Is(err, io.EOF):
		return tollgate.Errorf(tollgate.EINVALID, "request body must be a JSON object")
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return tollgate.Errorf(tollgate.EINVALID, "request body is not valid JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return tollgate.Errorf(tollgate.EINVALID, "request body must be a JSON object")
		}
		return tollgate.FieldError(typ.Field, "must be %s", typeName(fieldType(v, typ.Field, typ.Type)))
	case strings.HasPrefix(msg, unkn):
		// encoding/json has no typed error for this one.
		name, uerr := strconv.Unquote(strings.TrimPrefix(msg, unkn))
		if uerr != nil {
			name = strings.TrimPrefix(msg, unkn)
		}
		return tollgate.FieldError(shorten(name), "unknown field")
	}
	return tollgate.Errorf(tollgate.EINVALID, "request body is not valid JSON")
}

// decodeField unmarshals one raw field value into v, naming field on error.
func decodeField(field string, raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			// The target's own type: for a bad element of an array, the
			// error names the element's type.
			return tollgate.FieldError(field, "must be %s", typeName(reflect.TypeOf(v)))
		}
		return tollgate.FieldError(field, "is not valid JSON")
	}
	return nil
}

// fieldType returns the type of v's top-level field named by path's first
// component: encoding/json reports a bad array element with the element's
// type but the array's name, and "scope: must be a string" would mislead.
func fieldType(v any, path string, fallback reflect.Type) reflect.Type {
	if strings.Contains(path, ".") {
		return fallback
	}
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return fallback
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == path {
			if f.Type == reflect.TypeOf(json.RawMessage(nil)) {
				return fallback
			}
			return f.Type
		}
	}
	return fallback
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(typeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return fmt.Sprintf("a %s", t)
}

// shorten keeps echoed user input (an unknown field's name) short.
func shorten(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
