package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/obs"
)

// newTransport is the one transport to upstreams: dial, TLS and
// response-header timeouts but no whole-body timeout (blobs and packages
// are large), never asking for compression (bytes pass through untouched),
// no environment proxy, and plenty of idle connections.
func newTransport(tlsConfig *tls.Config, headerTimeout time.Duration, idlePerHost int) *http.Transport {
	if headerTimeout <= 0 {
		headerTimeout = 60 * time.Second
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          4 * idlePerHost,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
		ReadBufferSize:        64 << 10,
		WriteBufferSize:       64 << 10,
	}
}

// errProtocolSwitch: the upstream answered 101. tollgate never passes a
// protocol switch on: every request must reach the upstream through its
// own decision, and a tunnel would carry requests nobody decided.
var errProtocolSwitch = errors.New("upstream tried to switch protocols")

// stripUpgrade removes what asks an upstream to switch protocols. The
// reverse proxy re-adds Connection/Upgrade for upgrade requests just
// before Rewrite runs, so Rewrite must call this.
func stripUpgrade(h http.Header) {
	h.Del("Upgrade")
	h.Del("Connection")
	h.Del("HTTP2-Settings")
}

// originAuth adds tollgate's Basic credentials to requests for the
// upstream's own origin, and to no other (a redirect to a CDN or object
// store gets none).
type originAuth struct {
	next         http.RoundTripper
	scheme, host string
	user, pass   string
}

func (a *originAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if a.user == "" || req.URL.Scheme != a.scheme || !strings.EqualFold(req.URL.Host, a.host) {
		return a.next.RoundTrip(req)
	}
	out := req.Clone(req.Context())
	out.SetBasicAuth(a.user, a.pass)
	return a.next.RoundTrip(out)
}

// Errors of followRedirects.
var (
	errTooManyRedirects = errors.New("too many upstream redirects")
	errBadRedirect      = errors.New("unusable upstream redirect")
)

// followRedirects follows upstream redirects for GET and HEAD, at most max
// of them, so that the client only ever sees the final answer. Each hop
// keeps the request's conditional and Range headers.
type followRedirects struct {
	next http.RoundTripper
	max  int
}

func (f *followRedirects) RoundTrip(req *http.Request) (*http.Response, error) {
	for hops := 0; ; hops++ {
		resp, err := f.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		drain(resp.Body)
		if hops >= f.max {
			return nil, errTooManyRedirects
		}
		next, err := req.URL.Parse(loc)
		if loc == "" || err != nil || (next.Scheme != "http" && next.Scheme != "https") || next.Host == "" {
			return nil, errBadRedirect
		}
		next.User = nil
		next.Fragment = ""
		out := req.Clone(req.Context())
		out.URL = next
		out.Host = next.Host
		out.Header.Del("Authorization") // originAuth decides per hop
		req = out
	}
}

// MeasuredTransport observes the time to response headers of every round
// trip through next, and counts failures (no response, or 5xx).
func MeasuredTransport(next http.RoundTripper, m *obs.Metrics, name string) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := next.RoundTrip(req)
		failed := err != nil && req.Context().Err() == nil || resp != nil && resp.StatusCode >= 500
		m.Upstream(name, time.Since(start).Seconds(), failed)
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// bufferPool gives the reverse proxies 256 KiB copy buffers: with the
// default 32 KiB a loopback pull loses a good part of its throughput.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// readSmall reads at most limit bytes of a body the edge must look at
// (error envelopes, tag lists) and closes it.
func readSmall(rc io.ReadCloser, limit int64) ([]byte, error) {
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, limit))
}
