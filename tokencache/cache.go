// Package tokencache owns the read-through cache in front of the store
// that answers, on every request, "which token is this, and what is its
// account now": by secret lookup hash (the token endpoint, Basic auth) and
// by token id (the sub of a bearer JWT, re-checked on every request).
//
// Layers, looked at in order:
//
//   - L1, in process: bounded maps with a short freshness (l1_ttl).
//   - L2, Redis (optional; none in `tollgate dev`), shared by replicas,
//     with a TTL (redis_ttl) and kept right by invalidation.
//   - The store, the source of truth. Concurrent misses of one key make
//     one query (singleflight).
//
// Layout: the secret hash → token id mapping never changes (a rotation
// gives a token a new hash; the old one still names the same token), so
// it is cached long and never invalidated. Which of a token's hashes are
// live is token data (SecretHash, Previous), judged by authz.Decide. Token
// data (by token id) and account data with the subscription (by account
// id) are what writes change, and what invalidation drops. Unknown hashes
// are remembered in L1 only (negative_ttl, at most negative_size of them),
// so that a flood of bad tokens reaches the store once per hash and cannot
// grow memory, in-process or in Redis. Keys are hashes and ids, never
// secrets; values never hold a secret (Token has none).
//
// Invalidation has two feeds. Service appends every change to the
// store's invalidation log in the change's own transaction (a Seq that
// orders commits), then calls Changed = Invalidate: local entries drop
// at once, Redis generations are bumped, entries deleted, and the Seq
// published to every replica's Run (milliseconds). Run also reads the
// log every heartbeat_interval (250 ms), before trusting Redis after a
// (re)subscription, and at start (the latest 10,000 entries): what Redis
// did not bring (writer cut from it, Redis down, writer dead with its
// retry queue) is applied from the log, counted as replayed, and
// replayed into Redis. The retry queue only speeds things up. Run prunes
// log entries older than log_retention (24h) on every replica, always a
// prefix of the log; a replica that finds its last applied entry pruned
// and a gap after it drops its whole L1 and distrusts older Redis stamps
// (a gap after an entry still there is a rolled-back append).
//
// Races: a Redis entry carries a stamp, the log head read before the row
// in the same View; a replica uses it only if the stamp is not below the
// Seq of the last invalidation of that key it applied, so an entry written
// before a revocation (or put back by a lagging replica) is never used
// after it. setIfGen keeps a loader from writing a row read before an
// invalidation into Redis; Cache.epoch keeps it from L1.
//
// Faults: either feed alone keeps entries trusted for l1_ttl (a writer cut
// from Redis still writes the log; a replica cut from the store still
// hears Redis). With neither (log unread for revalidate_after = 500 ms and
// no subscription), L1 entries older than 500 ms and Redis entries are
// revalidated with the store, one query per key at a time. So with the
// store up a write is applied everywhere within one heartbeat plus a
// query, whatever happens to Redis. Store down (Mode stale): an entry
// confirmed within max_stale is served; anything else fails with
// EUNAVAILABLE (503), never EUNAUTHORIZED and never a pass; a revoked
// token stays revoked (its stamp rule holds without the store). A replica
// that never read the log does not trust Redis. Redis down costs one log
// line and the Redis layer: each Redis command of a lookup (and of a
// write's Invalidate) is bounded by 250ms, the first failure stops them
// on the request path, and Run probes Redis in the background until it is
// back. A process that did not run for longer than revalidate_after
// (SIGSTOP, a frozen VM: Run's pulse, on the real clock, shows the gap)
// trusts no feed until it has read the log again.
//
// Usage: RecordUse aggregates last-used data in memory; Run writes it in
// batches through Store.RecordUsage, once per usage_interval.
//
// Wiring (cmd/tollgate), with the client from config.Config.RedisOptions
// (nil when no Redis is configured):
//
//	cache, err := tokencache.New(tokencache.Options{Store: store, Redis: rdb, KeyPrefix: cfg.Redis.KeyPrefix, ...})
//	svc.Changed = cache.Invalidate
//	go cache.Run(ctx)          // log reader, subscriber, usage writer, retries
//	...                        // serve with cache as proxy.Lookup and proxy.UsageRecorder
//	cache.Close(shutdownCtx)   // after Run returned: last usage write
package tokencache

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/tollgate/tollgate"
)

// Defaults of Options, the same as config's.
const (
	DefaultKeyPrefix     = "tollgate:"
	DefaultL1Size        = 100_000
	DefaultL1TTL         = 30 * time.Second
	DefaultRedisTTL      = 5 * time.Minute
	DefaultNegativeTTL   = 10 * time.Second
	DefaultNegativeSize  = 10_000
	DefaultMaxStale      = 10 * time.Minute
	DefaultUsageInterval = 30 * time.Second
	DefaultLoadTimeout   = 5 * time.Second
)

// Recovery pacing: after a failure, Redis gets one probe per redisRetry,
// from Run in the background (from the request path only without Run);
// a failed store is not waited for, for storeRetry,
// by requests that have a usable stale entry. Both are measured on the
// cache's clock (Options.Now), so a test advances it instead of sleeping.
const (
	redisRetry = time.Second
	storeRetry = time.Second
)

// redisLookupTimeout bounds each Redis command of a lookup (Redis answers
// in well under a millisecond): a Redis that stopped answering costs the
// lookup that finds out at most this, then none until Run's probe finds
// it back (the rate limiter uses the same bound).
const redisLookupTimeout = 250 * time.Millisecond

// Options configure a Cache. Zero fields take the defaults.
type Options struct {
	// Store is the source of truth. Required.
	Store tollgate.Store
	// Redis is the shared layer and invalidation bus; nil runs in process
	// only, as in `tollgate dev` (one replica).
	Redis redis.UniversalClient
	// KeyPrefix starts every Redis key and channel; FormatVersion follows
	// it. It must not contain '{' or '}' (Cluster hash tags).
	KeyPrefix string
	// Logger gets the few lines the cache logs (Redis or store lost and
	// back). Nil discards them.
	Logger *slog.Logger
	// Now is the clock that judges freshness and staleness and paces
	// recovery (when Redis is probed again, when a failed store is tried
	// again). Nil is time.Now.
	Now func() time.Time
	// After waits on the same clock in the background work: the backoff
	// between subscription attempts and the retry of invalidations Redis
	// refused. Nil is time.After. Tests pass a fake clock's Now and After
	// together, and advance it rather than sleep.
	After func(time.Duration) <-chan time.Time

	L1Size        int           // entries per in-process map (hashes, tokens, accounts)
	L1TTL         time.Duration // how long an L1 entry is used without asking further
	RedisTTL      time.Duration // TTL of token and account entries in Redis
	NegativeTTL   time.Duration // how long an unknown hash stays known unknown
	NegativeSize  int           // how many unknown hashes are remembered
	MaxStale      time.Duration // how long an entry may be served while the store is down
	UsageInterval time.Duration // how often usage is written to the store
	// LoadTimeout bounds one load from Redis and the store; it runs
	// detached from the request that started it, since other requests may
	// wait for it too.
	LoadTimeout time.Duration
	// HeartbeatInterval is how often Run reads the store's invalidation
	// log (DefaultHeartbeatInterval): how late, at worst, a replica applies
	// a write that Redis did not bring it, with the store up.
	HeartbeatInterval time.Duration
	// RevalidateAfter is how long an entry is trusted without asking the
	// store while neither feed of invalidations is known to be live: the
	// log not read within it, and no live Redis subscription
	// (DefaultRevalidateAfter). It is also how recent a log read must be
	// to count as live.
	RevalidateAfter time.Duration
	// LogRetention is how long entries stay in the store's invalidation
	// log (DefaultLogRetention); Run prunes older ones. A replica that
	// finds the log pruned past its last read drops its whole cache.
	LogRetention time.Duration
}

// hashKey is a secret's lookup hash (HMAC-SHA256).
type hashKey [32]byte

// Cache answers token lookups from memory, Redis and the store. It is
// safe for concurrent use. Its methods start no goroutine; Run does the
// background work.
type Cache struct {
	store tollgate.Store
	rdb   redis.UniversalClient
	log   *slog.Logger
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	keys  keyspace

	l1TTL, redisTTL, negTTL, maxStale  time.Duration
	usageInterval, loadTimeout         time.Duration
	heartbeatInterval, revalidateAfter time.Duration
	logRetention                       time.Duration

	hashes   *l1[hashKey, string] // lookup hash → token id
	negative *l1[hashKey, struct{}]
	tokens   *l1[string, *tollgate.Token]
	accounts *l1[string, *tollgate.Account]

	tokenEntity   entity[*tollgate.Token]
	accountEntity entity[*tollgate.Account]

	// epoch changes on every invalidation this replica applies (its own or
	// heard) and on every flush. A load notes it before reading Redis or
	// the store and puts its result into L1 only if it has not changed, so
	// a value read before an invalidation never lands in L1 after it: the
	// check and the insert happen under the shard lock, and invalidation
	// bumps the epoch before deleting under that lock. One counter for the
	// whole cache (rather than one per key) is simple and costs only a few
	// refused inserts around the rare writes.
	epoch atomic.Uint64

	sf singleflight.Group

	// The invalidation log as this replica has applied it (see invLog),
	// and when (injected clock, ns) a read of it last reached the head.
	invLog      invLog
	catchMu     sync.Mutex // one catch-up at a time
	lastCatchUp atomic.Int64
	initialized atomic.Bool  // the log was read once
	lastPulse   atomic.Int64 // real clock, ns: when Run last noted the process running (see pulse)

	redisDown  atomic.Bool
	redisProbe atomic.Int64 // c.now, ns: next probe while down
	subscribed atomic.Bool
	running    atomic.Bool

	storeDown      atomic.Bool
	storeDownUntil atomic.Int64 // c.now, ns

	pendingMu sync.Mutex
	pending   []tollgate.Invalidation // not yet delivered to Redis

	usage usageBuffer
	stats counters

	// testHookStoreRead, if set, runs after a load read the store and
	// before it caches what it read.
	testHookStoreRead func(tag, id string)
}

// New returns a Cache. It does not connect to anything.
func New(o Options) (*Cache, error) {
	if o.Store == nil {
		return nil, errors.New("tokencache: a store is required")
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return nil, errors.New("tokencache: the key prefix must not contain '{' or '}'")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	setDefault(&o.L1Size, DefaultL1Size)
	setDefault(&o.NegativeSize, DefaultNegativeSize)
	setDefault(&o.L1TTL, DefaultL1TTL)
	setDefault(&o.RedisTTL, DefaultRedisTTL)
	setDefault(&o.NegativeTTL, DefaultNegativeTTL)
	setDefault(&o.MaxStale, DefaultMaxStale)
	setDefault(&o.UsageInterval, DefaultUsageInterval)
	setDefault(&o.LoadTimeout, DefaultLoadTimeout)
	setDefault(&o.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&o.RevalidateAfter, DefaultRevalidateAfter)
	setDefault(&o.LogRetention, DefaultLogRetention)
	if o.L1Size < 0 || o.NegativeSize < 0 || o.L1TTL < 0 || o.RedisTTL < 0 || o.NegativeTTL < 0 ||
		o.MaxStale < 0 || o.UsageInterval < 0 || o.LoadTimeout < 0 || o.HeartbeatInterval < 0 || o.RevalidateAfter < 0 || o.LogRetention < 0 {
		return nil, errors.New("tokencache: sizes and durations must not be negative")
	}
	if o.MaxStale < o.L1TTL {
		o.MaxStale = o.L1TTL
	}
	c := &Cache{
		store:             o.Store,
		rdb:               o.Redis,
		log:               o.Logger,
		now:               o.Now,
		after:             o.After,
		keys:              newKeyspace(o.KeyPrefix),
		l1TTL:             o.L1TTL,
		redisTTL:          o.RedisTTL,
		negTTL:            o.NegativeTTL,
		maxStale:          o.MaxStale,
		usageInterval:     o.UsageInterval,
		loadTimeout:       o.LoadTimeout,
		heartbeatInterval: o.HeartbeatInterval,
		revalidateAfter:   o.RevalidateAfter,
		logRetention:      o.LogRetention,
		hashes:            newL1[hashKey, string](o.L1Size, hashOfHash),
		negative:          newL1[hashKey, struct{}](o.NegativeSize, hashOfHash),
		tokens:            newL1[string, *tollgate.Token](o.L1Size, hashString),
		accounts:          newL1[string, *tollgate.Account](o.L1Size, hashString),
	}
	c.usage.init(max(o.L1Size, minUsageEntries))
	c.tokenEntity = entity[*tollgate.Token]{
		c: c, tag: "t", l1: c.tokens, encode: encodeToken, decode: decodeToken,
		fromStore: func(ctx context.Context, tx tollgate.Tx, id string) (*tollgate.Token, error) {
			t, err := tx.TokenByID(ctx, id)
			if err != nil {
				return nil, err
			}
			return withoutUsage(t), nil
		},
	}
	c.accountEntity = entity[*tollgate.Account]{
		c: c, tag: "a", l1: c.accounts, encode: encodeAccount, decode: decodeAccount,
		fromStore: func(ctx context.Context, tx tollgate.Tx, id string) (*tollgate.Account, error) {
			return tx.AccountByID(ctx, id, false)
		},
	}
	return c, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// withoutUsage clears the fields RecordUsage changes on every pull: they
// are not cached (no invalidation follows them), and the user agent is
// the largest field of a token.
func withoutUsage(t *tollgate.Token) *tollgate.Token {
	t.LastUsedAt, t.LastUsedIP, t.LastUsedUA, t.Pulls = nil, "", "", 0
	if t.Previous != nil {
		t.Previous.LastUsedAt, t.Previous.LastUsedIP, t.Previous.LastUsedUA = nil, "", ""
	}
	return t
}

// errUnknown is the answer for a token that does not exist.
func errUnknown() error {
	return &tollgate.Error{Code: tollgate.EUNAUTHORIZED, Message: "invalid credentials"}
}

// Token returns the token whose secret has the lookup hash hash, and its
// account with its subscription, whatever their state: judging them is
// authz.Decide's job. The values are shared with the cache and with other
// callers: read them, never modify them. The usage fields of the token
// (LastUsed*, Pulls) are zero.
//
// Errors: EUNAUTHORIZED if no token has this hash; EUNAVAILABLE if the
// store cannot be reached and nothing usable is cached.
func (c *Cache) Token(ctx context.Context, hash []byte) (*tollgate.Token, *tollgate.Account, error) {
	if len(hash) != len(hashKey{}) {
		// Not a lookup hash, so no token has it.
		return nil, nil, errUnknown()
	}
	id, err := c.resolve(ctx, hashKey(hash))
	if err != nil {
		return nil, nil, err
	}
	return c.tokenAndAccount(ctx, id)
}

// TokenByID is Token by token id, for the subject of a bearer JWT.
func (c *Cache) TokenByID(ctx context.Context, id string) (*tollgate.Token, *tollgate.Account, error) {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "{}") {
		return nil, nil, errUnknown()
	}
	return c.tokenAndAccount(ctx, id)
}

func (c *Cache) tokenAndAccount(ctx context.Context, id string) (*tollgate.Token, *tollgate.Account, error) {
	t, err := c.tokenEntity.get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	a, err := c.accountEntity.get(ctx, t.AccountID)
	if err != nil {
		return nil, nil, err
	}
	return t, a, nil
}

// resolve maps a lookup hash to its token id.
func (c *Cache) resolve(ctx context.Context, h hashKey) (string, error) {
	now := c.now().UnixNano()
	if v, at, ok := c.hashes.get(h); ok {
		c.stats.l1.hit.Add(1)
		if time.Duration(now-at) > c.l1TTL {
			// Keep a mapping in use from being evicted as old.
			c.hashes.touch(h, now)
		}
		return v, nil
	}
	c.stats.l1.miss.Add(1)
	if _, at, ok := c.negative.get(h); ok && time.Duration(now-at) < c.negTTL {
		c.stats.negative.hit.Add(1)
		return "", errUnknown()
	}
	c.stats.negative.miss.Add(1)
	return c.resolveMiss(ctx, h)
}

// resolveMiss is resolve's slow path, apart so that h does not escape
// (and cost an allocation) on the fast one.
func (c *Cache) resolveMiss(ctx context.Context, h hashKey) (string, error) {
	v, err := c.load(ctx, "h:"+string(h[:]), func(ctx context.Context) (any, error) {
		return c.loadHash(ctx, h)
	})
	if err != nil {
		if tollgate.ErrorCode(err) != tollgate.EUNAUTHORIZED {
			c.stats.unavailable.Add(1)
		}
		return "", err
	}
	return v.(string), nil
}

func (c *Cache) loadHash(ctx context.Context, h hashKey) (string, error) {
	key := c.keys.hash(h)
	if c.redisUsable() {
		rctx, cancel := context.WithTimeout(ctx, redisLookupTimeout)
		data, err := c.rdb.Get(rctx, key).Bytes()
		cancel()
		switch {
		case err == nil:
			c.redisOK()
			var w wireHash
			if json.Unmarshal(data, &w) == nil && w.V == FormatVersion && w.TokenID != "" {
				c.stats.l2.hit.Add(1)
				c.hashes.put(h, w.TokenID, c.now().UnixNano())
				return w.TokenID, nil
			}
			c.stats.l2.miss.Add(1) // undecodable: overwritten below
		case errors.Is(err, redis.Nil):
			c.redisOK()
			c.stats.l2.miss.Add(1)
		default:
			c.stats.l2.error.Add(1)
			c.redisFailed(err)
		}
	}
	var t *tollgate.Token
	err := c.store.View(ctx, func(tx tollgate.Tx) (err error) {
		t, err = tx.TokenByHash(ctx, h[:])
		return err
	})
	if err != nil {
		return "", c.storeError(err, func() { c.negative.put(h, struct{}{}, c.now().UnixNano()) })
	}
	c.storeOK()
	// The mapping never changes, so no generation guards it.
	if c.redisUsable() {
		data, _ := json.Marshal(wireHash{V: FormatVersion, TokenID: t.ID})
		rctx, cancel := context.WithTimeout(ctx, redisLookupTimeout)
		err := c.rdb.Set(rctx, key, data, hashTTL).Err()
		cancel()
		if err != nil {
			c.redisFailed(err)
		} else {
			c.redisOK()
		}
	}
	c.hashes.put(h, t.ID, c.now().UnixNano())
	return t.ID, nil
}

// storeError counts a failed store read and turns it into the caller's
// error: EUNAUTHORIZED for a row that is not there (after notFound ran),
// EUNAVAILABLE for anything else.
func (c *Cache) storeError(err error, notFound func()) error {
	if tollgate.ErrorCode(err) == tollgate.ENOTFOUND {
		c.storeUp()
		c.stats.store.miss.Add(1)
		if notFound != nil {
			notFound()
		}
		return errUnknown()
	}
	c.stats.store.error.Add(1)
	c.storeDownUntil.Store(c.now().Add(storeRetry).UnixNano())
	if c.storeDown.CompareAndSwap(false, true) {
		c.log.Warn("tokencache: store unavailable, serving cached tokens up to max_stale", "err", err)
	}
	if tollgate.ErrorCode(err) == tollgate.EUNAVAILABLE {
		return err
	}
	return tollgate.Unavailable("store", err)
}

// storeOK counts a store read that found its row.
func (c *Cache) storeOK() {
	c.stats.store.hit.Add(1)
	c.storeUp()
}

// storeUp records that the store answered.
func (c *Cache) storeUp() {
	if c.storeDown.Load() && c.storeDown.CompareAndSwap(true, false) {
		c.log.Info("tokencache: store available again")
	}
}

// storeRecentlyFailed reports whether the store failed within storeRetry.
func (c *Cache) storeRecentlyFailed() bool {
	return c.storeDown.Load() && c.now().UnixNano() < c.storeDownUntil.Load()
}

var errStoreDown = tollgate.Unavailable("store", errors.New("store failed recently; serving stale entry"))

// load runs fn once for all concurrent callers with the same key. fn runs
// detached from ctx (with its own timeout): one caller giving up must not
// fail the others. A caller whose ctx ends stops waiting.
func (c *Cache) load(ctx context.Context, key string, fn func(ctx context.Context) (any, error)) (any, error) {
	ch := c.sf.DoChan(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.loadTimeout)
		defer cancel()
		return fn(lctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, tollgate.Unavailable("token cache", ctx.Err())
	}
}

// entity is one kind of invalidated entry: tokens by id, accounts by id.
type entity[V any] struct {
	c         *Cache
	tag       string // in Redis keys and singleflight keys
	l1        *l1[string, V]
	encode    func(v V, stamp int64) ([]byte, error)
	decode    func(data []byte, id string) (v V, stamp int64, ok bool)
	fromStore func(ctx context.Context, tx tollgate.Tx, id string) (V, error)
}

// get returns the entity: from L1 while fresh, else loaded; if loading
// fails for any reason but "not found", an L1 entry confirmed within
// max_stale is served. Fresh means younger than l1_ttl, and, while no
// feed of invalidations is live, younger than revalidate_after.
func (e *entity[V]) get(ctx context.Context, id string) (V, error) {
	c := e.c
	now := c.now().UnixNano()
	v, at, ok := e.l1.get(id)
	age := time.Duration(now - at)
	if ok && age < c.l1TTL && (age < c.revalidateAfter || c.feedLive(now)) {
		c.stats.l1.hit.Add(1)
		return v, nil
	}
	c.stats.l1.miss.Add(1)
	stale := ok && age < c.maxStale
	lv, err := c.load(ctx, e.tag+":"+id, func(ctx context.Context) (any, error) {
		return e.load(ctx, id, stale)
	})
	if err == nil {
		return lv.(V), nil
	}
	var zero V
	if tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
		e.l1.del(id)
		return zero, err
	}
	// Checked again: the entry may have aged past max_stale while loading.
	if stale && time.Duration(c.now().UnixNano()-at) < c.maxStale {
		c.stats.stale.Add(1)
		return v, nil
	}
	c.stats.unavailable.Add(1)
	return zero, err
}

// load reads the entity from Redis, else from the store, and caches it.
// If an invalidation came while it read (the entity's generation in Redis
// or this replica's epoch moved), what it read is not cached and it reads
// once more, so that a caller who started before a write and is answered
// after it most likely sees it too. The second read is not cached either
// if it races again; it is returned all the same.
func (e *entity[V]) load(ctx context.Context, id string, haveStale bool) (V, error) {
	c := e.c
	var zero V
	dataKey, genKey := c.keys.entity(e.tag, id)
	for attempt := 0; ; attempt++ {
		epoch := c.epoch.Load()
		unchanged := func() bool { return c.epoch.Load() == epoch }
		gen, haveGen := "", false
		if c.redisUsable() {
			// A Redis hit confirms the entry as of when Redis was asked,
			// not when the answer was handled: the entry was alive then,
			// so with the store down the entry is served at most
			// redis_ttl + max_stale after the store read that wrote it,
			// however late this goroutine runs.
			asked := c.now().UnixNano()
			rctx, cancel := context.WithTimeout(ctx, redisLookupTimeout)
			data, g, err := c.l2Get(rctx, dataKey, genKey)
			cancel()
			if err != nil {
				c.stats.l2.error.Add(1)
				c.redisFailed(err)
			} else {
				c.redisOK()
				if data != nil {
					if v, stamp, ok := e.decode(data, id); ok && c.l2Current(e.tag, id, stamp) {
						c.stats.l2.hit.Add(1)
						// Refused: an invalidation came while we read,
						// maybe of this entry; read again once.
						if e.l1.putIf(id, v, asked, unchanged) || attempt > 0 {
							return v, nil
						}
						continue
					} else if ok {
						// Older than an invalidation this replica
						// applied (Redis missed it), or no feed is live
						// to tell: read the store and overwrite it.
						c.stats.l2Ignored.Add(1)
					}
				}
				c.stats.l2.miss.Add(1)
				gen, haveGen = g, true
			}
		}
		if haveStale && c.storeRecentlyFailed() {
			// Serve the stale entry now rather than wait for a store that
			// just failed.
			return zero, errStoreDown
		}
		var v V
		var stamp int64
		err := c.store.View(ctx, func(tx tollgate.Tx) (err error) {
			// The head first: the row then reflects every entry up to it.
			if stamp, err = tx.LastInvalidation(ctx); err != nil {
				return err
			}
			v, err = e.fromStore(ctx, tx, id)
			return err
		})
		if err != nil {
			return zero, c.storeError(err, nil)
		}
		c.storeOK()
		if c.testHookStoreRead != nil {
			c.testHookStoreRead(e.tag, id)
		}
		current := true
		if haveGen {
			data, err := e.encode(v, stamp)
			if err != nil {
				return zero, tollgate.Internal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, redisLookupTimeout)
			set, err := c.l2SetIfGen(rctx, dataKey, genKey, gen, data)
			cancel()
			switch {
			case err != nil:
				c.redisFailed(err)
			case !set:
				current = false
			default:
				c.redisOK()
			}
		}
		if current {
			current = e.l1.putIf(id, v, c.now().UnixNano(), unchanged)
		}
		if current || attempt > 0 {
			return v, nil
		}
	}
}
