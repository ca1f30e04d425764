// Package usage owns pull insight between the edge and the store: it
// takes the edge's PullEvents without ever blocking it, folds them into
// daily aggregates per token × repository × UTC day, writes those to the
// store in batches, applies retention, and optionally copies every event
// to a raw JSON-lines stream for SIEMs (docs/usage.md, format v1).
//
// Hand-off: Pull is a non-blocking send on a bounded channel; when the
// channel is full the event is dropped and counted (Stats.Dropped), so a
// slow store, a slow stream or a burst can cost insight but never pull
// latency. Run drains the channel into memory under one mutex and writes
// the sums every FlushInterval through Store.RecordPulls (one transaction
// per batch). Every replica does the same; the store adds the deltas up,
// and distinct addresses are recounted there, so replicas agree.
//
// Bounds: at most MaxKeys aggregates between two writes (events of
// further keys are dropped and counted), at most maxAddresses addresses
// and maxAgents user agents per aggregate (further ones are left out of
// the detail but still counted in the sums). A failed write keeps the
// batch for the next one, within the same bounds.
//
// What a pull is: every package file download, and every image manifest
// GET not preceded, within pullWindow, by another manifest GET of the
// same repository by the same token from the same address (a multi-arch
// pull fetches the index and then a platform manifest: one pull, two
// manifest fetches). Only 2xx answers count; blob bytes count as sent.
//
// Wiring (cmd/tollgate): New, then go Run(ctx), proxy.Options.Events =
// the Recorder, and Close after Run returns, which writes what is left.
package usage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate"
)

// Store is what the recorder needs: tollgate.Service implements it.
type Store interface {
	// RecordPulls adds a batch of deltas; EUNAVAILABLE when the store
	// is down (the batch is kept and retried).
	RecordPulls(ctx context.Context, deltas []tollgate.UsageDelta) error
	// PruneUsage deletes detail older than detail and aggregates older
	// than aggregates.
	PruneUsage(ctx context.Context, detail, aggregates time.Duration) (int64, error)
}

// Options configures a Recorder. Zero values take the defaults.
type Options struct {
	Store Store
	// Buffer is the capacity of the hand-off channel (default 65536).
	Buffer int
	// FlushInterval is how often aggregates are written (default 10 s).
	FlushInterval time.Duration
	// MaxKeys bounds the aggregates kept between writes (default 100000).
	MaxKeys int
	// DetailRetention and AggregateRetention are how long addresses and
	// user agents, and daily aggregates, are kept (defaults 30 days and
	// 13 months; 0 takes the default). PruneInterval is how often
	// retention runs (default 1 h; negative: never).
	DetailRetention    time.Duration
	AggregateRetention time.Duration
	PruneInterval      time.Duration
	// Stream, if set, receives every event as one JSON line (format v1).
	Stream io.Writer
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultBuffer             = 65536
	DefaultFlushInterval      = 10 * time.Second
	DefaultMaxKeys            = 100_000
	DefaultDetailRetention    = 30 * 24 * time.Hour
	DefaultAggregateRetention = 396 * 24 * time.Hour // 13 months
	DefaultPruneInterval      = time.Hour
)

const (
	maxAddresses = 256 // per aggregate between writes
	maxAgents    = 32
	maxAgentLen  = 256
	maxFieldLen  = 1024
	pullWindow   = 30 * time.Second
)

// Recorder takes pull events from the edge. Its methods are safe for
// concurrent use; New starts nothing.
type Recorder struct {
	o  Options
	ch chan tollgate.PullEvent

	mu     sync.Mutex // guards the aggregation state and the stream
	keys   map[tollgate.UsageKey]*aggregate
	recent map[recentKey]time.Time // last manifest GET, for what a pull is
	stream *bufio.Writer
	enc    *json.Encoder

	flushMu sync.Mutex // one write at a time

	dropped, events, streamErrors, flushes, flushErrors atomic.Uint64
}

type aggregate struct {
	pulls, manifests, bytes int64
	addrs                   map[string]*tollgate.AddressUse
	agents                  map[string]int64
}

type recentKey struct{ token, repo, addr string }

// New builds a Recorder.
func New(o Options) (*Recorder, error) {
	if o.Store == nil {
		return nil, errors.New("usage: a Store is required")
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.DetailRetention <= 0 {
		o.DetailRetention = DefaultDetailRetention
	}
	if o.AggregateRetention <= 0 {
		o.AggregateRetention = DefaultAggregateRetention
	}
	if o.PruneInterval == 0 {
		o.PruneInterval = DefaultPruneInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{o: o, ch: make(chan tollgate.PullEvent, o.Buffer),
		keys: map[tollgate.UsageKey]*aggregate{}, recent: map[recentKey]time.Time{}}
	if o.Stream != nil {
		r.stream = bufio.NewWriterSize(o.Stream, 64<<10)
		r.enc = json.NewEncoder(r.stream)
	}
	return r, nil
}

// Pull hands an event over without blocking: if the buffer is full the
// event is dropped and counted.
func (r *Recorder) Pull(ev tollgate.PullEvent) {
	select {
	case r.ch <- ev:
	default:
		r.dropped.Add(1)
	}
}

// Stats counts what the recorder did since it was built.
type Stats struct {
	Events       uint64 // events taken from the buffer
	Dropped      uint64 // events lost: buffer full, or too many keys
	Pending      int    // events in the buffer now
	Keys         int    // aggregates waiting for the next write
	Flushes      uint64 // batches written
	FlushErrors  uint64
	StreamErrors uint64
}

// Stats reports the counters.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	keys := len(r.keys)
	r.mu.Unlock()
	return Stats{Events: r.events.Load(), Dropped: r.dropped.Load(), Pending: len(r.ch), Keys: keys,
		Flushes: r.flushes.Load(), FlushErrors: r.flushErrors.Load(), StreamErrors: r.streamErrors.Load()}
}

// Run drains events, writes aggregates every FlushInterval and applies
// retention every PruneInterval, until ctx ends; then it returns nil.
// Call Close afterwards to write what is left.
func (r *Recorder) Run(ctx context.Context) error {
	flush := time.NewTicker(r.o.FlushInterval)
	defer flush.Stop()
	var prune <-chan time.Time
	if r.o.PruneInterval > 0 {
		t := time.NewTicker(r.o.PruneInterval)
		defer t.Stop()
		prune = t.C
		r.prune(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-r.ch:
			r.mu.Lock()
			r.add(ev)
			// Take what else is waiting under the same lock.
			for n := 0; n < 1024; n++ {
				select {
				case ev := <-r.ch:
					r.add(ev)
					continue
				default:
				}
				break
			}
			if len(r.ch) == 0 {
				r.flushStream()
			}
			r.mu.Unlock()
		case <-flush.C:
			if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
				r.o.Logger.Warn("writing pull usage failed; kept for the next write", "err", err)
			}
		case <-prune:
			r.prune(ctx)
		}
	}
}

func (r *Recorder) prune(ctx context.Context) {
	n, err := r.o.Store.PruneUsage(ctx, r.o.DetailRetention, r.o.AggregateRetention)
	if err != nil {
		if ctx.Err() == nil {
			r.o.Logger.Warn("pull usage retention failed", "err", err)
		}
		return
	}
	if n > 0 {
		r.o.Logger.Info("pull usage retention", "rows_deleted", n)
	}
}

// drain takes every event waiting in the buffer.
func (r *Recorder) drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		select {
		case ev := <-r.ch:
			r.add(ev)
		default:
			r.flushStream()
			return
		}
	}
}

// add folds one event in; r.mu is held.
func (r *Recorder) add(ev tollgate.PullEvent) {
	r.events.Add(1)
	ev.UserAgent = truncate(ev.UserAgent, maxAgentLen)
	ev.Repository = truncate(ev.Repository, maxFieldLen)
	ev.Reference = truncate(ev.Reference, maxFieldLen)
	ev.Path = truncate(ev.Path, maxFieldLen)
	if r.enc != nil {
		if err := r.enc.Encode(toLine(ev)); err != nil {
			r.streamErrors.Add(1)
		}
	}
	if ev.Status < 200 || ev.Status > 299 || ev.Repository == "" {
		return
	}
	k := tollgate.UsageKey{Day: tollgate.Day(ev.At), TokenID: ev.TokenID, AccountID: ev.AccountID, Kind: ev.UsageKind(), Repository: ev.Repository}
	a := r.keys[k]
	if a == nil {
		if len(r.keys) >= r.o.MaxKeys {
			r.dropped.Add(1)
			return
		}
		a = &aggregate{addrs: map[string]*tollgate.AddressUse{}, agents: map[string]int64{}}
		r.keys[k] = a
	}
	a.bytes += ev.Bytes
	var pull bool
	switch ev.Kind {
	case tollgate.PullPackage:
		pull = true
	case tollgate.PullManifest:
		a.manifests++
		rk := recentKey{ev.TokenID, ev.Repository, ev.ClientIP}
		last, seen := r.recent[rk]
		pull = !seen || ev.At.Sub(last) >= pullWindow || ev.At.Before(last)
		if len(r.recent) >= r.o.MaxKeys {
			for k, at := range r.recent {
				if ev.At.Sub(at) >= pullWindow || len(r.recent) >= r.o.MaxKeys {
					delete(r.recent, k)
				}
			}
		}
		r.recent[rk] = ev.At
	}
	var n int64
	if pull {
		a.pulls++
		n = 1
	}
	if ev.ClientIP != "" {
		if u := a.addrs[ev.ClientIP]; u != nil {
			u.Pulls += n
			if ev.At.Before(u.First) {
				u.First = ev.At
			}
			if ev.At.After(u.Last) {
				u.Last = ev.At
			}
		} else if len(a.addrs) < maxAddresses {
			a.addrs[ev.ClientIP] = &tollgate.AddressUse{Address: ev.ClientIP, Pulls: n, First: ev.At, Last: ev.At}
		}
	}
	if _, ok := a.agents[ev.UserAgent]; ok || len(a.agents) < maxAgents {
		a.agents[ev.UserAgent] += n
	}
}

// take empties the aggregates; r.mu is held.
func (r *Recorder) take() []tollgate.UsageDelta {
	out := make([]tollgate.UsageDelta, 0, len(r.keys))
	for k, a := range r.keys {
		d := tollgate.UsageDelta{UsageKey: k, Pulls: a.pulls, Manifests: a.manifests, Bytes: a.bytes}
		for _, u := range a.addrs {
			d.Addresses = append(d.Addresses, *u)
		}
		for ua, n := range a.agents {
			d.Agents = append(d.Agents, tollgate.AgentUse{UserAgent: ua, Pulls: n})
		}
		out = append(out, d)
	}
	clear(r.keys)
	return out
}

// putBack returns a batch the store refused, within the bounds; r.mu is held.
func (r *Recorder) putBack(batch []tollgate.UsageDelta) {
	for _, d := range batch {
		a := r.keys[d.UsageKey]
		if a == nil {
			if len(r.keys) >= r.o.MaxKeys {
				r.dropped.Add(uint64(max(d.Pulls, 1)))
				continue
			}
			a = &aggregate{addrs: map[string]*tollgate.AddressUse{}, agents: map[string]int64{}}
			r.keys[d.UsageKey] = a
		}
		a.pulls += d.Pulls
		a.manifests += d.Manifests
		a.bytes += d.Bytes
		for _, u := range d.Addresses {
			if cur := a.addrs[u.Address]; cur != nil {
				cur.Pulls += u.Pulls
				cur.First, cur.Last = minTime(cur.First, u.First), maxTime(cur.Last, u.Last)
			} else if len(a.addrs) < maxAddresses {
				cp := u
				a.addrs[u.Address] = &cp
			}
		}
		for _, g := range d.Agents {
			if _, ok := a.agents[g.UserAgent]; ok || len(a.agents) < maxAgents {
				a.agents[g.UserAgent] += g.Pulls
			}
		}
	}
}

// Flush takes what is in the buffer and writes the aggregates in one
// batch. What the store refuses is kept for the next Flush.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.drain()
	r.mu.Lock()
	batch := r.take()
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := r.o.Store.RecordPulls(ctx, batch); err != nil {
		r.flushErrors.Add(1)
		r.mu.Lock()
		r.putBack(batch)
		r.mu.Unlock()
		return err
	}
	r.flushes.Add(1)
	return nil
}

// Close writes what is left (call it after Run has returned, with a
// deadline). The Recorder stays usable.
func (r *Recorder) Close(ctx context.Context) error {
	if err := r.Flush(ctx); err != nil {
		return errors.Join(errors.New("usage: writing pull usage on close"), err)
	}
	return nil
}

// flushStream pushes buffered lines out; r.mu is held.
func (r *Recorder) flushStream() {
	if r.stream != nil && r.stream.Buffered() > 0 {
		if err := r.stream.Flush(); err != nil {
			r.streamErrors.Add(1)
			r.stream.Reset(r.o.Stream)
		}
	}
}

// Line is one event of the raw stream, format version 1 (docs/usage.md).
// Fields are added, never renamed or removed, within a version.
type Line struct {
	V          int       `json:"v"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Token      string    `json:"token,omitempty"`
	Account    string    `json:"account,omitempty"`
	Repository string    `json:"repository"`
	Reference  string    `json:"reference,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	Platform   string    `json:"platform,omitempty"`
	Path       string    `json:"path,omitempty"`
	Status     int       `json:"status"`
	Bytes      int64     `json:"bytes"`
	Complete   bool      `json:"complete"`
	ClientIP   string    `json:"client_ip,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
}

// LineVersion is the version of Line.
const LineVersion = 1

func toLine(ev tollgate.PullEvent) Line {
	return Line{V: LineVersion, Time: ev.At.UTC(), Kind: string(ev.Kind), Token: ev.TokenID, Account: ev.Account,
		Repository: ev.Repository, Reference: ev.Reference, Digest: ev.Digest, Platform: ev.Platform, Path: ev.Path, Status: ev.Status,
		Bytes: ev.Bytes, Complete: ev.Complete, ClientIP: ev.ClientIP, UserAgent: ev.UserAgent}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
