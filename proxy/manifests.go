package proxy

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The manifest cache answers manifest requests that were already
// authorized from memory: kubelet with imagePullPolicy: Always asks for
// the same tag on every pod start, and that HEAD dominates real load.
//
//   - By digest a manifest is immutable: its bytes and headers are kept,
//     bounded in bytes, least recently used first out. The bytes are
//     checked against the digest before they are kept.
//   - A tag resolves to a digest for tagTTL only (a few seconds), so a tag
//     moved upstream is seen through tollgate within that time.
//
// Keys start with the upstream repository (after mappings), so one
// repository can never be answered with another's entry, and the cache is
// asked only after the request was authorized, so a denied repository is
// never answered from it. The client's Accept header is part of every key:
// a registry may answer a tag differently by media type.
type manifestCache struct {
	tagTTL time.Duration
	max    int
	now    func() time.Time

	mu    sync.Mutex
	lru   *list.List                    // of *manifestEntry, most recent first
	byKey map[manifestKey]*list.Element // by digest ('d') and by tag ('t')
	bytes int
	stats ManifestCacheStats

	// accepts remembers normalized Accept headers (acceptKey): clients
	// send the same few, and normalizing costs allocations.
	acceptsMu sync.RWMutex
	accepts   map[string]string
}

// manifestKey names one cache entry: by digest (kind 'd') or by tag
// ('t'), in one upstream repository, for one set of accepted media types.
type manifestKey struct {
	kind              byte
	repo, ref, accept string
}

// ManifestCacheStats counts what the manifest cache did.
type ManifestCacheStats struct {
	Hits, Misses, Evictions uint64
	Bytes                   int64
	Entries                 int
}

type manifestEntry struct {
	key       manifestKey
	digest    string
	mediaType string
	size      int64
	etag      string
	body      []byte    // nil for a tag entry
	expires   time.Time // zero for a digest entry
	// header is what the answer carries, built once: serve shares its
	// value slices (each of capacity 1, so an Add elsewhere copies).
	header []headerField
}

type headerField struct {
	key   string // canonical
	value []string
}

func (e *manifestEntry) cost() int {
	k := e.key
	return 256 + len(k.repo) + len(k.ref) + len(k.accept) + len(e.body) + 2*(len(e.mediaType)+len(e.etag)+len(e.digest))
}

// answerHeader builds e.header from its fields.
func (e *manifestEntry) answerHeader() {
	one := func(v string) []string { return []string{v}[:1:1] }
	e.header = []headerField{
		{"Content-Type", one(e.mediaType)},
		{"Content-Length", one(strconv.FormatInt(e.size, 10))},
		{"Docker-Content-Digest", one(e.digest)},
		{"Docker-Distribution-Api-Version", one("registry/2.0")},
	}
	if e.etag != "" {
		e.header = append(e.header, headerField{"Etag", one(e.etag)})
	}
}

// maxCachedManifest bounds one manifest kept (distribution's own limit is 4 MiB).
const maxCachedManifest = 4 << 20

func newManifestCache(maxBytes int, tagTTL time.Duration, now func() time.Time) *manifestCache {
	if now == nil {
		now = time.Now
	}
	return &manifestCache{tagTTL: tagTTL, max: maxBytes, now: now, lru: list.New(), byKey: map[manifestKey]*list.Element{}, accepts: map[string]string{}}
}

// maxAccepts bounds the normalized Accept headers remembered, and
// maxAcceptLen the length of one; past them a header is normalized anew
// on every request.
const (
	maxAccepts   = 64
	maxAcceptLen = 1024
)

// acceptKey normalizes r's Accept header (acceptKey), remembering the
// answer for a header sent as one line.
func (c *manifestCache) acceptKey(r *http.Request) string {
	vs := r.Header["Accept"]
	if len(vs) != 1 || len(vs[0]) > maxAcceptLen {
		return acceptKey(r)
	}
	c.acceptsMu.RLock()
	k, ok := c.accepts[vs[0]]
	c.acceptsMu.RUnlock()
	if ok {
		return k
	}
	k = acceptKey(r)
	c.acceptsMu.Lock()
	if len(c.accepts) < maxAccepts {
		c.accepts[vs[0]] = k
	}
	c.acceptsMu.Unlock()
	return k
}

// acceptKey normalizes the Accept header: media types, sorted, without
// parameters.
func acceptKey(r *http.Request) string {
	var types []string
	for _, v := range r.Header.Values("Accept") {
		for t := range strings.SplitSeq(v, ",") {
			t, _, _ = strings.Cut(t, ";")
			if t = strings.TrimSpace(t); t != "" {
				types = append(types, t)
			}
		}
	}
	slices.Sort(types)
	return strings.Join(slices.Compact(types), ",")
}

// cacheable says whether a request may be answered from (and fill) the
// cache: plain GET or HEAD of a manifest, no conditions, no range.
func cacheable(r *http.Request) bool {
	h := r.Header
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		h.Get("Range") == "" && h.Get("If-None-Match") == "" && h.Get("If-Match") == "" && h.Get("If-Modified-Since") == ""
}

func isDigest(ref string) bool { return strings.Contains(ref, ":") }

// serve answers r, whose normalized Accept header is accept, from the
// cache if it can, and reports whether it did.
func (c *manifestCache) serve(w http.ResponseWriter, r *http.Request, repo, ref, accept string) bool {
	now := c.now()
	c.mu.Lock()
	digest := ref
	var e *manifestEntry
	if !isDigest(ref) {
		t := c.get(manifestKey{'t', repo, ref, accept})
		if t != nil && now.Before(t.expires) {
			digest, e = t.digest, t
		} else {
			digest = ""
		}
	}
	if digest != "" && (r.Method == http.MethodGet || e == nil) {
		e = c.get(manifestKey{'d', repo, digest, accept})
	}
	if e == nil || (r.Method == http.MethodGet && e.body == nil) {
		c.stats.Misses++
		c.mu.Unlock()
		return false
	}
	c.stats.Hits++
	c.mu.Unlock()
	h := w.Header()
	for _, f := range e.header {
		h[f.key] = f.value
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(e.body)
	}
	return true
}

// get finds key and marks it used. Called with mu held.
func (c *manifestCache) get(key manifestKey) *manifestEntry {
	el, ok := c.byKey[key]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*manifestEntry)
}

// fill keeps what the upstream answered for a cacheable manifest request:
// the tag's digest, and for a GET the bytes, once they match the digest.
// For a GET, resp.Body is read and replaced by the bytes read.
func (c *manifestCache) fill(resp *http.Response, repo, ref, accept string) {
	digest := resp.Header.Get("Docker-Content-Digest")
	size := resp.ContentLength
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(digest, "sha256:") || (isDigest(ref) && ref != digest) || size < 0 || size > maxCachedManifest {
		return
	}
	base := manifestEntry{digest: digest, mediaType: resp.Header.Get("Content-Type"), size: size, etag: resp.Header.Get("Etag")}
	base.answerHeader()
	if resp.Request.Method == http.MethodGet {
		body, err := io.ReadAll(io.LimitReader(resp.Body, size+1))
		resp.Body.Close()
		setBody(resp, body)
		sum := sha256.Sum256(body)
		if err != nil || int64(len(body)) != size || "sha256:"+hex.EncodeToString(sum[:]) != digest {
			return
		}
		d := base
		d.key, d.body = manifestKey{'d', repo, digest, accept}, body
		c.put(&d)
	}
	if !isDigest(ref) && c.tagTTL > 0 {
		t := base
		t.key, t.expires = manifestKey{'t', repo, ref, accept}, c.now().Add(c.tagTTL)
		c.put(&t)
	}
}

func (c *manifestCache) put(e *manifestEntry) {
	cost := e.cost()
	if cost > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[e.key]; ok {
		c.remove(el)
	}
	for c.bytes+cost > c.max && c.lru.Len() > 0 {
		c.remove(c.lru.Back())
		c.stats.Evictions++
	}
	c.byKey[e.key] = c.lru.PushFront(e)
	c.bytes += cost
}

// remove drops an element. Called with mu held.
func (c *manifestCache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*manifestEntry)
	delete(c.byKey, e.key)
	c.bytes -= e.cost()
}

// Stats returns the cache's counters.
func (c *manifestCache) Stats() ManifestCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Bytes, s.Entries = int64(c.bytes), c.lru.Len()
	return s
}
