package proxy

import (
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/obs"
)

// EventSink takes pull events (package usage's Recorder). Pull must not
// block: it runs on the request's goroutine when the answer ends.
type EventSink interface {
	Pull(ev tollgate.PullEvent)
}

// track wraps w for an authorized GET of a manifest, a blob or a package
// file: the wrapper counts the body bytes handed to the connection, and
// done, which the caller defers, hands one event to the sink when the
// answer ends — also when the client went away mid-body (ReverseProxy
// then panics with http.ErrAbortHandler; done records and re-panics).
// Without a sink, or for other requests, w comes back as it is.
func (f *front) track(w http.ResponseWriter, r *http.Request, tok *tollgate.Token, ev tollgate.PullEvent) (http.ResponseWriter, func()) {
	if f.events == nil || r.Method != http.MethodGet || ev.Kind == "" {
		return w, func() {}
	}
	if tok != nil {
		ev.TokenID, ev.AccountID, ev.Account = tok.ID, tok.AccountID, tok.AccountName
	}
	ev.ClientIP, ev.UserAgent, ev.At = obs.ClientIP(r), r.UserAgent(), f.now()
	pw := &pullWriter{ResponseWriter: w, ev: ev, sink: f.events}
	return pw, func() {
		if p := recover(); p != nil {
			pw.end(false)
			panic(p)
		}
		pw.end(true)
	}
}

// imageEvent is the event of a /v2/ route, or none (tags, referrers).
func imageEvent(rt route) tollgate.PullEvent {
	switch rt.kind {
	case routeManifest:
		return tollgate.PullEvent{Kind: tollgate.PullManifest, Repository: rt.name, Reference: rt.ref}
	case routeBlob:
		return tollgate.PullEvent{Kind: tollgate.PullBlob, Repository: rt.name, Reference: rt.ref}
	}
	return tollgate.PullEvent{}
}

// pullWriter counts what is written through it.
type pullWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	ev     tollgate.PullEvent
	sink   EventSink
}

func (w *pullWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx answers are not the answer
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *pullWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Flush keeps streaming working through the wrapper.
func (w *pullWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *pullWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// end hands the event over; returned says the handler ended normally.
// A body is complete when its Content-Length was reached, or, without
// one, when the handler returned normally.
func (w *pullWriter) end(returned bool) {
	ev := w.ev
	ev.Status, ev.Bytes = w.status, w.bytes
	if ev.Status == 0 {
		ev.Status = http.StatusOK
	}
	h := w.Header()
	ev.Digest = h.Get("Docker-Content-Digest")
	if cl, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil {
		ev.Complete = returned && w.bytes == cl
	} else {
		ev.Complete = returned
	}
	w.sink.Pull(ev)
}
