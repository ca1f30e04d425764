package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bounded"
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
	if ev.Kind == tollgate.PullManifest && strings.HasPrefix(ev.Reference, "sha256:") {
		ev.Platform = f.platforms.get(ev.Repository, ev.Reference)
	}
	pw := &pullWriter{ResponseWriter: w, ev: ev, sink: f.events, platforms: f.platforms}
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
	// index holds the body of an image index being sent (at most
	// maxIndexBody), to learn which platform each manifest it lists is.
	index     []byte
	platforms *platforms
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
	if w.ev.Kind == tollgate.PullManifest && w.status == http.StatusOK && isIndex(w.Header().Get("Content-Type")) &&
		len(w.index)+n <= maxIndexBody {
		w.index = append(w.index, p[:n]...)
	}
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
	if len(w.index) > 0 && ev.Complete {
		w.platforms.learn(ev.Repository, ev.Digest, w.index)
	}
}

// maxIndexBody bounds the index body read to learn platforms.
const maxIndexBody = 256 << 10

func isIndex(contentType string) bool {
	ct, _, _ := strings.Cut(contentType, ";")
	switch strings.TrimSpace(ct) {
	case "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return false
}

// platforms remembers, per repository, which platform an index gave each
// manifest digest, so that the fetch of a platform's manifest (which
// follows the index's) carries it. Bounded in bytes; kept an hour.
type platforms struct {
	now func() time.Time
	mu  sync.Mutex
	m   *bounded.Map[string, platformSeen]
}

type platformSeen struct {
	platform string
	at       time.Time
	index    bool // an index read at at (its own digest carries no platform)
}

// platformTTL is how long a platform is remembered; an index seen again
// within platformRelearn is not read again (a digest names its content).
const (
	platformTTL     = time.Hour
	platformRelearn = 10 * time.Minute
)

func newPlatforms(now func() time.Time) *platforms {
	return &platforms{now: now, m: bounded.New(bounded.Options[string, platformSeen]{
		MaxBytes: 4 << 20,
		Cost:     func(k string, v platformSeen) int64 { return int64(len(k) + len(v.platform) + 64) },
		Rank: func(now time.Time, _ string, v platformSeen) bounded.Rank {
			if now.Sub(v.at) > platformTTL {
				return bounded.Expired
			}
			return bounded.Keep
		},
		Now: now,
	})}
}

func (p *platforms) get(repo, digest string) string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.m.Get(repo + "@" + digest); ok && !v.index && p.now().Sub(v.at) <= platformTTL {
		return v.platform
	}
	return ""
}

// learn reads an index body and remembers its manifests' platforms. An
// index pulled again by digest within platformRelearn is not read again:
// kubelet asks for the same index on every pod start.
func (p *platforms) learn(repo, digest string, body []byte) {
	if p == nil {
		return
	}
	indexKey := ""
	if strings.HasPrefix(digest, "sha256:") && len(digest) <= 100 {
		indexKey = repo + "@" + digest
		p.mu.Lock()
		v, ok := p.m.Get(indexKey)
		fresh := ok && v.index && p.now().Sub(v.at) < platformRelearn
		p.mu.Unlock()
		if fresh {
			return
		}
	}
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
				Variant      string `json:"variant"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if json.Unmarshal(body, &idx) != nil {
		return
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if indexKey != "" {
		p.m.Put(indexKey, platformSeen{at: now, index: true})
	}
	for i, m := range idx.Manifests {
		if i >= 64 || m.Platform == nil || !strings.HasPrefix(m.Digest, "sha256:") || len(m.Digest) > 100 {
			continue
		}
		pl := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			pl += "/" + m.Platform.Variant
		}
		if len(pl) > 64 {
			continue
		}
		p.m.Put(repo+"@"+m.Digest, platformSeen{platform: pl, at: now})
	}
}
