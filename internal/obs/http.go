package obs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Info is what a request's handlers learn about it, for its access log
// line: they fill it in through FromContext.
type Info struct {
	ID       string
	Route    string // route class: v2, token, apt, apk, api, console, ops, other
	ClientIP string
	Repo     string // repository or package path, without secrets
	TokenID  string // public token id
	Account  string
	Reason   string // why it was denied, when it was
	// Actor is who the API or the console authenticated: "operator",
	// "account:NAME", "user:usr_..." (never a secret, never an e-mail).
	Actor string
}

type infoKey struct{}

// FromContext returns the request's Info; a throwaway one outside Wrap.
func FromContext(ctx context.Context) *Info {
	if i, ok := ctx.Value(infoKey{}).(*Info); ok {
		return i
	}
	return &Info{}
}

// RouteClass names the part of tollgate a path belongs to.
func RouteClass(path string) string {
	switch {
	case path == "/v2" || strings.HasPrefix(path, "/v2/"):
		return "v2"
	case path == "/token", path == "/oauth2/token":
		return "token"
	case strings.HasPrefix(path, "/apt/"):
		return "apt"
	case strings.HasPrefix(path, "/apk/"):
		return "apk"
	case strings.HasPrefix(path, "/api/"):
		return "api"
	case path == "/console" || strings.HasPrefix(path, "/console/"):
		return "console"
	}
	return "other"
}

// streamKind is the bytes-streamed label of a route class, "" for none.
func streamKind(route string) string {
	switch route {
	case "v2":
		return "image"
	case "apt", "apk":
		return route
	}
	return ""
}

// Observer wraps the public handler: request id, client IP, access log,
// request metrics.
type Observer struct {
	Logger         *slog.Logger
	Metrics        *Metrics
	TrustedProxies []netip.Prefix
}

// Wrap returns h with one access log line and the request metrics per
// request. The line never holds a secret, an Authorization header or URL
// userinfo: it logs the path without the query.
//
// Every request is accounted for, however it ends: the line and the
// metrics are written in a deferred call, so a handler that aborts
// (httputil.ReverseProxy panics with http.ErrAbortHandler when the
// upstream goes away mid-body or the client stops reading) or panics is
// logged too, with the bytes actually sent and its outcome (see Outcome*),
// and the panic then goes on to net/http, which drops the connection.
func (o *Observer) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &Info{ID: requestID(r), Route: RouteClass(r.URL.Path), ClientIP: o.ClientIP(r)}
		w.Header().Set("X-Request-Id", info.ID)
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		kind := streamKind(info.Route)
		if kind != "" && o.Metrics != nil {
			o.Metrics.inflight.Inc()
			defer o.Metrics.inflight.Dec()
		}
		completed := false
		defer func() {
			var p any
			if !completed {
				p = recover()
			}
			o.account(r, info, rec, kind, time.Since(start), outcome(r, rec, completed, p))
			if p != nil {
				panic(p)
			}
		}()
		h.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
		completed = true
	})
}

// Outcomes of a request, the access log's outcome field and the label of
// tollgate_http_responses_cut_total.
const (
	// OutcomeComplete: the handler returned and the body sent is the
	// whole body it declared (or it declared no length).
	OutcomeComplete = "complete"
	// OutcomeClientGone: the client went away (or a drain cut the
	// connection) before the response was sent.
	OutcomeClientGone = "client_gone"
	// OutcomeAborted: the handler gave up mid-response
	// (http.ErrAbortHandler; the upstream went away mid-body).
	OutcomeAborted = "aborted"
	// OutcomeTruncated: the handler returned having sent less than the
	// Content-Length it declared.
	OutcomeTruncated = "truncated"
	// OutcomePanic: the handler panicked.
	OutcomePanic = "panic"
)

// outcome says why a request ended; p is what the handler panicked with.
func outcome(r *http.Request, rec *recorder, completed bool, p any) string {
	clientGone := rec.writeErr != nil || r.Context().Err() != nil
	switch {
	case !completed && p != http.ErrAbortHandler:
		return OutcomePanic
	case !completed && clientGone:
		return OutcomeClientGone
	case !completed:
		return OutcomeAborted
	case rec.writeErr != nil:
		return OutcomeClientGone
	}
	if r.Method != http.MethodHead {
		if n, err := strconv.ParseInt(rec.Header().Get("Content-Length"), 10, 64); err == nil && rec.bytes < n {
			if clientGone {
				return OutcomeClientGone
			}
			return OutcomeTruncated
		}
	}
	return OutcomeComplete
}

// account writes a request's metrics and access log line.
func (o *Observer) account(r *http.Request, info *Info, rec *recorder, kind string, d time.Duration, outcome string) {
	status := rec.status
	if !rec.wroteHeader && outcome != OutcomeComplete {
		status = 0 // nothing was sent: net/http drops the connection
	}
	if m := o.Metrics; m != nil {
		m.requests.WithLabelValues(info.Route, statusCode(status)).Inc()
		m.duration.WithLabelValues(info.Route).Observe(d.Seconds())
		if kind != "" {
			m.bytes.WithLabelValues(kind).Add(float64(rec.bytes))
		}
		if outcome != OutcomeComplete {
			m.cut.WithLabelValues(info.Route, outcome).Inc()
		}
	}
	if o.Logger == nil {
		return
	}
	attrs := make([]slog.Attr, 0, 15) // room for every optional one: no regrowth
	attrs = append(attrs,
		slog.String("request_id", info.ID),
		slog.String("method", r.Method),
		slog.String("route", info.Route),
		slog.String("path", RedactPath(r.URL.Path)),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", d),
		slog.String("outcome", outcome),
		slog.String("client_ip", info.ClientIP),
		slog.String("user_agent", r.UserAgent()),
	)
	if info.Repo != "" {
		attrs = append(attrs, slog.String("repository", RedactPath(info.Repo)))
	}
	if info.TokenID != "" {
		attrs = append(attrs, slog.String("token_id", info.TokenID), slog.String("account", info.Account))
	}
	if info.Actor != "" {
		attrs = append(attrs, slog.String("actor", info.Actor))
	}
	if info.Reason != "" {
		attrs = append(attrs, slog.String("reason", info.Reason))
	}
	level := slog.LevelInfo
	if outcome == OutcomePanic {
		level = slog.LevelError
	}
	// Not r.Context(): it is done when the client went away, and the
	// line must still be written.
	o.Logger.LogAttrs(context.WithoutCancel(r.Context()), level, "request", attrs...)
}

// RedactPath returns a path (or any text split by '/') for a log line,
// with every segment that holds something shaped like a secret replaced
// by [REDACTED]: someone will paste a token where its id or name belongs,
// quoted, after a space or an '=', percent-encoded, or only part of it.
// It is the one redactor of paths: every log line that holds a request
// path passes it through here.
//
// A secret shape is "tg", up to two letters naming the kind ("tg_"
// registry token, "tgk_" account key, "tgp_" set-password link, "tgs_"
// session, and any kind added later), '_', and at least
// minSecretFragment base62 characters; the prefix in either case,
// anywhere in a segment. A segment is also looked at percent-decoded, up
// to maxDecodes times; one still encoded deeper than that is redacted
// whole. A repository called "tg_exporter" is redacted too: a readable
// log line is worth less than a secret kept out of it.
func RedactPath(p string) string {
	if strings.IndexByte(p, '%') < 0 && !hasSecretShape(p) {
		return p // the common case: no allocation
	}
	var b strings.Builder
	from := 0 // p[:from] is in b, or nothing was redacted yet when b is empty
	for start := 0; ; {
		end := strings.IndexByte(p[start:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += start
		}
		if segmentHoldsSecret(p[start:end]) {
			if b.Len() == 0 {
				b.Grow(len(p) + len(redacted))
			}
			b.WriteString(p[from:start])
			b.WriteString(redacted)
			from = end
		}
		if end == len(p) {
			break
		}
		start = end + 1
	}
	if from == 0 {
		return p
	}
	b.WriteString(p[from:])
	return b.String()
}

const redacted = "[REDACTED]"

// minSecretFragment is how many characters after a prefix make a secret
// recognisable. Secrets have 36; a fragment this long is one (or most of
// one) cut short by a terminal, a copy or a length limit.
const minSecretFragment = 8

// maxDecodes is how many times a segment is percent-decoded to look for a
// secret. Paths are decoded once before they get here; a client that
// encodes three more times is hiding something.
const maxDecodes = 3

func segmentHoldsSecret(seg string) bool {
	for range maxDecodes {
		if hasSecretShape(seg) {
			return true
		}
		if strings.IndexByte(seg, '%') < 0 {
			return false
		}
		next := unescape(seg)
		if next == seg {
			return false // stray '%', nothing encoded
		}
		seg = next
	}
	return hasSecretShape(seg) || unescape(seg) != seg
}

// hasSecretShape reports whether s holds a secret prefix followed by at
// least minSecretFragment base62 characters.
func hasSecretShape(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i]|0x20 != 't' || s[i+1]|0x20 != 'g' {
			continue
		}
		j := i + 2
		for n := 0; n < 2 && j < len(s) && isLetter(s[j]); n++ {
			j++
		}
		if j >= len(s) || s[j] != '_' {
			continue
		}
		n := 0
		for j++; j < len(s) && n < minSecretFragment && isBase62(s[j]); j++ {
			n++
		}
		if n == minSecretFragment {
			return true
		}
	}
	return false
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isBase62(c byte) bool { return isLetter(c) || '0' <= c && c <= '9' }

// unescape decodes every valid %XX in s and keeps anything else as it
// is: unlike url.PathUnescape it never fails, so a malformed escape
// elsewhere cannot hide a secret.
func unescape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return (c | 0x20) - 'a' + 10
}

// ClientIP is the peer address, or, when the peer is a trusted proxy, the
// right-most X-Forwarded-For address that is not a trusted proxy.
func (o *Observer) ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !o.trusted(peer) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !o.trusted(a) {
			return a.String()
		}
	}
	return host
}

func (o *Observer) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the client address Wrap found for r, or the peer.
func ClientIP(r *http.Request) string {
	if i, ok := r.Context().Value(infoKey{}).(*Info); ok && i.ClientIP != "" {
		return i.ClientIP
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// requestID keeps a sane X-Request-Id from the load balancer, else makes one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && !strings.ContainsFunc(id, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return id
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func statusCode(s int) string {
	if s >= 100 && s < 600 {
		return strconv.Itoa(s)
	}
	return "other"
}

// recorder counts the status and body bytes of a response and lets
// http.ResponseController reach the real writer (flushes of streams).
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	writeErr    error // the first failed write: the client is gone
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	if err != nil && r.writeErr == nil {
		r.writeErr = err
	}
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
