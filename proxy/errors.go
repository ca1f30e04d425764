package proxy

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/obs"
)

// Errors are decided once. Handlers return errors; each request that fails
// ends in one call to responder.fail, which classifies the error (classify),
// sets the challenge when the answer is a 401, records the decision and
// writes the body in the client's protocol (style).

// style is the error shape a route's clients read.
type style uint8

const (
	// styleOCI is the distribution error envelope {"errors":[...]} (/v2/).
	styleOCI style = iota
	// styleOAuth is RFC 6749 §5.2 plus the OCI envelope (/token): docker
	// and containerd read either.
	styleOAuth
	// stylePlain is one line of text (apt and apk print it).
	stylePlain
)

// refusal is an answer the edge chose: a distribution error code (whose
// descriptor gives the status, unless status overrides it), what the
// client is told, and the decision label for logs and metrics.
type refusal struct {
	code    errcode.ErrorCode
	status  int    // 0: the code's own status
	oauth   string // the OAuth error; "" derives it from code
	message string // shown to the client; never a secret
	detail  any
	allow   string        // the Allow header of a 405
	reason  string        // decision label (an authz.Reason, "bad_credentials", ...); "" none
	retry   time.Duration // Retry-After; 0 none
	err     error         // the cause, for the log only
}

func (e *refusal) Error() string {
	if e.err != nil {
		return e.message + ": " + e.err.Error()
	}
	return e.message
}

func (e *refusal) Unwrap() error { return e.err }

// refuse returns a refusal with code and message.
func refuse(code errcode.ErrorCode, reason, message string) *refusal {
	return &refusal{code: code, reason: reason, message: message}
}

// Decision labels that are not authz reasons.
const (
	reasonBadCredentials = "bad_credentials"
	reasonRateLimited    = "rate_limited"
)

// withStatus overrides the code's own status.
func (e *refusal) withStatus(status int) *refusal {
	e.status = status
	return e
}

func tooMany(retry time.Duration) *refusal {
	return &refusal{code: errcode.ErrorCodeTooManyRequests, reason: reasonRateLimited, oauth: "slow_down",
		message: "too many failed authentication attempts, retry later", retry: max(retry, time.Second)}
}

// ociCodeOf is the distribution error code of each tollgate error code; the
// status comes from tollgate.HTTPStatus, the one status table.
var ociCodeOf = map[string]errcode.ErrorCode{
	tollgate.EINVALID:      errcode.ErrorCodeUnsupported,
	tollgate.EUNAUTHORIZED: errcode.ErrorCodeUnauthorized,
	tollgate.EFORBIDDEN:    errcode.ErrorCodeDenied,
	tollgate.ENOTFOUND:     errcode.ErrorCodeNameUnknown,
	tollgate.ECONFLICT:     errcode.ErrorCodeDenied,
	tollgate.ELIMIT:        errcode.ErrorCodeDenied,
	tollgate.EUNAVAILABLE:  errcode.ErrorCodeUnavailable,
}

// classify turns any error into the refusal the client gets. A tollgate
// error keeps its client-safe message; anything else is internal and only
// its code reaches the client.
func classify(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	code := tollgate.ErrorCode(err)
	out := &refusal{code: errcode.ErrorCodeUnknown, status: tollgate.HTTPStatus(code), message: "internal error", err: err}
	if oci, ok := ociCodeOf[code]; ok {
		out.code, out.message = oci, tollgate.ErrorMessage(err)
	}
	if code == tollgate.EUNAVAILABLE {
		out.message, out.retry = "temporarily unavailable, retry later", 5*time.Second
	}
	return out
}

func (e *refusal) httpStatus() int {
	if e.status != 0 {
		return e.status
	}
	return e.code.Descriptor().HTTPStatusCode
}

// oauthError is the RFC 6749 error name for the token endpoint.
func (e *refusal) oauthError() string {
	if e.oauth != "" {
		return e.oauth
	}
	switch e.code {
	case errcode.ErrorCodeUnauthorized:
		return "invalid_grant"
	case errcode.ErrorCodeTooManyRequests:
		return "slow_down"
	case errcode.ErrorCodeUnavailable:
		return "temporarily_unavailable"
	case errcode.ErrorCodeUnknown:
		return "server_error"
	case errcode.ErrorCodeDenied:
		return "access_denied"
	}
	return "invalid_request"
}

// headerSetter is an error that sets response headers: a challenge.
type headerSetter interface{ SetHeaders(http.Header) }

// responder writes refusals and records them.
type responder struct {
	log      *slog.Logger
	metrics  *obs.Metrics // nil records nothing
	refusals RefusalSink  // nil records no refused attempts
	now      func() time.Time
}

// RefusalSink takes the refused attempts of known tokens (package usage's
// RefusalRecorder); Refused must not block.
type RefusalSink interface {
	Refused(tollgate.TokenRefusal)
}

// fail answers r with err in the route's style. It is the only place the
// edge writes an error.
func (p responder) fail(w http.ResponseWriter, r *http.Request, st style, err error) {
	if r.Context().Err() != nil {
		return // the client went away; nobody reads an answer
	}
	e := classify(err)
	status := e.httpStatus()
	switch {
	case status >= 500 && e.code == errcode.ErrorCodeUnknown:
		p.log.ErrorContext(r.Context(), "request failed", "route", obs.FromContext(r.Context()).Route, "err", err)
	case status >= 500:
		p.log.WarnContext(r.Context(), "request not served", "route", obs.FromContext(r.Context()).Route, "err", err)
	}
	if e.reason != "" {
		info := obs.FromContext(r.Context())
		info.Reason = e.reason
		p.metrics.Decision(e.reason)
		if e.reason == reasonRateLimited {
			p.metrics.RateLimited(info.Route)
		}
		p.refused(r, info, e.reason)
	}
	h := w.Header()
	if status == http.StatusUnauthorized {
		var c headerSetter
		if errors.As(err, &c) {
			c.SetHeaders(h)
		}
	}
	if e.allow != "" {
		h.Set("Allow", e.allow)
	}
	if e.retry > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.retry+time.Second-1)/time.Second)))
	}
	h.Set("Cache-Control", "no-store")
	var body []byte
	switch st {
	case stylePlain:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		body = []byte(e.message + "\n")
	case styleOAuth:
		h.Set("Content-Type", "application/json; charset=utf-8")
		body, _ = json.Marshal(map[string]any{
			"error":             e.oauthError(),
			"error_description": e.message,
			"errors":            errcode.Errors{errcode.Error{Code: e.code, Message: e.message}},
		})
	default:
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Docker-Distribution-Api-Version", "registry/2.0")
		body, _ = json.Marshal(errcode.Errors{errcode.Error{Code: e.code, Message: e.message, Detail: e.detail}})
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// refused hands the refusal of a known token (the front named it in the
// request's Info) to the sink: the token's public id, the client and the
// reason, never the secret. Failed guesses and rate limiting are not a
// token's refusals.
func (p responder) refused(r *http.Request, info *obs.Info, reason string) {
	if p.refusals == nil || info.TokenID == "" || reason == reasonBadCredentials || reason == reasonRateLimited {
		return
	}
	p.refusals.Refused(tollgate.TokenRefusal{TokenID: info.TokenID, At: p.now(), Address: obs.ClientIP(r), UserAgent: r.UserAgent(), Reason: reason})
}

// writeJSON writes a successful JSON answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// drain reads and closes a body the edge will not pass on, at most 64 KiB
// of it, so that the connection can be reused.
func drain(rc io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	rc.Close()
}
