package tokencache

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate"
)

// FormatVersion is the version of everything this package writes to
// Redis: key layout, value encoding and invalidation messages. It is part
// of every key and of the channel name ("<prefix>v1:..."), so replicas of
// two versions sharing a Redis never read each other's entries.
//
// Bump it whenever any of them changes. Replicas of the old and the new
// version then also stop hearing each other's invalidations; for the
// rolling upgrade that follows, the new version must keep deleting the
// previous version's keys and publishing on its channel (or the upgrade
// must accept revocations taking up to l1_ttl on old replicas).
// Version 2: tokens carry their policy (restrictions, networks, pause,
// valid-from). A version-1 entry would read as a token without a policy,
// that is, wider than it is.
// Version 3: accounts carry their policy (networks every token is
// limited to); a version-2 entry would read as an account without one.
const FormatVersion = 3

// Redis layout, under base = <prefix>v<FormatVersion>:
//
//	base{t:<token id>}     token (JSON), TTL redis_ttl
//	base{t:<token id>}:g   the token's generation (INCR on invalidation)
//	base{a:<account id>}   account with its subscription (JSON), TTL redis_ttl
//	base{a:<account id>}:g the account's generation
//	baseh:<hex lookup hash> token id (JSON), TTL hashTTL
//	baseinvalidate         the invalidation channel
//
// The braces are Cluster hash tags: an entry and its generation live in
// one slot, so the conditional set below is one atomic script on one node.
type keyspace struct{ base string }

func newKeyspace(prefix string) keyspace {
	return keyspace{base: prefix + "v" + strconv.Itoa(FormatVersion) + ":"}
}

func (k keyspace) entity(tag, id string) (data, gen string) {
	data = k.base + "{" + tag + ":" + id + "}"
	return data, data + ":g"
}

func (k keyspace) hash(h hashKey) string { return k.base + "h:" + hex.EncodeToString(h[:]) }

func (k keyspace) channel() string { return k.base + "invalidate" }

// hashTTL is how long a secret hash → token id mapping lives in Redis. The
// mapping never changes (a token keeps its secret for life), so it is kept
// long; it expires only so that Redis does not keep mappings of tokens no
// one uses.
const hashTTL = 24 * time.Hour

// genTTL is how long a generation outlives its last invalidation. It must
// exceed the longest load (loadTimeout), or a load that read a generation
// which then expired could set an outdated value; an hour is ample.
const genTTL = time.Hour

// setIfGen sets KEYS[1] to ARGV[2] with a TTL of ARGV[3] ms only if the
// generation KEYS[2] still has the value ARGV[1] ("" for none) that the
// loader read before it queried the store.
//
// This closes the race between a reader and a revocation: a reader reads
// the generation, then the old row from the store; the writer commits,
// INCRs the generation, DELs the entry and publishes; the reader's set
// then comes after the INCR and is refused (or came before the DEL and is
// deleted). Deleting alone cannot close it, since the reader's set may
// come after the delete. A per-key generation refuses only sets of the
// key that changed.
var setIfGen = redis.NewScript(`
local g = redis.call('GET', KEYS[2]) or ''
if g ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

// Values are JSON with the format version inside as well, and with field
// names of their own: a domain type that gains or renames a field cannot
// silently change what an older replica decodes.

type wireToken struct {
	V           int        `json:"v"`
	Seq         int64      `json:"seq,omitempty"` // the stamp: the log head read before the row
	ID          string     `json:"id"`
	AccountID   string     `json:"account_id"`
	AccountName string     `json:"account_name"`
	Name        string     `json:"name"`
	Description string     `json:"description,omitempty"`
	Scope       uint8      `json:"scope"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Policy      wirePolicy `json:"policy"`
	// Rotation: the two secrets' lookup hashes (never secrets) and the
	// previous one's grace. An entry without SecretHash (written before
	// rotation existed) is not used: Decide needs the hash.
	SecretVersion int           `json:"secret_version,omitempty"`
	SecretHash    []byte        `json:"secret_hash,omitempty"`
	Previous      *wirePrevious `json:"previous,omitempty"`
	// Identity: an ephemeral credential's workload (see tollgate.Identity).
	Identity *wireIdentity `json:"identity,omitempty"`
}

type wireIdentity struct {
	PolicyID string            `json:"policy_id"`
	Issuer   string            `json:"issuer"`
	Subject  string            `json:"subject"`
	Claims   map[string]string `json:"claims,omitempty"`
}

type wirePolicy struct {
	Images    []string       `json:"images,omitempty"`
	Packages  []string       `json:"packages,omitempty"`
	Networks  []netip.Prefix `json:"networks,omitempty"`
	ValidFrom *time.Time     `json:"valid_from,omitempty"`
	PausedAt  *time.Time     `json:"paused_at,omitempty"`
	MaxPulls  int64          `json:"max_pulls,omitempty"`
	MaxBytes  int64          `json:"max_bytes,omitempty"`
}

type wirePrevious struct {
	Hash         []byte    `json:"hash"`
	Version      int       `json:"version"`
	RotatedAt    time.Time `json:"rotated_at"`
	ValidUntil   time.Time `json:"valid_until"`
	ExpiredNoted bool      `json:"expired_noted,omitempty"`
}

type wireAccountPolicy struct {
	MaxLifetime         time.Duration  `json:"max_lifetime,omitempty"`
	Networks            []netip.Prefix `json:"networks,omitempty"`
	AutoPauseAfter      time.Duration  `json:"auto_pause_after,omitempty"`
	RequireRestrictions bool           `json:"require_restrictions,omitempty"`
}

type wireAccount struct {
	V             int               `json:"v"`
	Seq           int64             `json:"seq,omitempty"` // the stamp, as in wireToken
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Status        string            `json:"status"`
	PackageAccess string            `json:"package_access"`
	Images        []string          `json:"images,omitempty"`
	Packages      []string          `json:"packages,omitempty"`
	Policy        wireAccountPolicy `json:"policy"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
}

type wireHash struct {
	V       int    `json:"v"`
	TokenID string `json:"token_id"`
}

type wireInvalidation struct {
	V         int      `json:"v"`
	Seq       int64    `json:"seq,omitempty"` // its invalidation log entry; 0: not logged
	AccountID string   `json:"account_id,omitempty"`
	TokenIDs  []string `json:"token_ids,omitempty"`
}

func encodeToken(t *tollgate.Token, seq int64) ([]byte, error) {
	return json.Marshal(wireToken{
		V: FormatVersion, Seq: seq, ID: t.ID, AccountID: t.AccountID, AccountName: t.AccountName,
		Name: t.Name, Description: t.Description, Scope: uint8(t.Scope),
		ExpiresAt: t.ExpiresAt, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, RevokedAt: t.RevokedAt,
		Policy: wirePolicy{Images: t.Policy.Images, Packages: t.Policy.Packages, Networks: t.Policy.Networks,
			ValidFrom: t.Policy.ValidFrom, PausedAt: t.Policy.PausedAt, MaxPulls: t.Policy.MaxPulls, MaxBytes: t.Policy.MaxBytes},
		SecretVersion: t.SecretVersion, SecretHash: t.SecretHash, Previous: encodePrevious(t.Previous),
		Identity: (*wireIdentity)(t.Identity),
	})
}

func encodePrevious(p *tollgate.PreviousSecret) *wirePrevious {
	if p == nil {
		return nil
	}
	return &wirePrevious{Hash: p.Hash, Version: p.Version, RotatedAt: p.RotatedAt, ValidUntil: p.ValidUntil, ExpiredNoted: p.ExpiredNoted}
}

func decodePrevious(w *wirePrevious) *tollgate.PreviousSecret {
	if w == nil {
		return nil
	}
	return &tollgate.PreviousSecret{Hash: w.Hash, Version: w.Version, RotatedAt: w.RotatedAt.UTC(), ValidUntil: w.ValidUntil.UTC(), ExpiredNoted: w.ExpiredNoted}
}

// decodeToken returns the token in data, and its stamp, if it is of this
// format version and is the token asked for. An entry without a secret
// hash (written before rotation existed) is not used: Decide needs it.
func decodeToken(data []byte, id string) (*tollgate.Token, int64, bool) {
	var w wireToken
	if json.Unmarshal(data, &w) != nil || w.V != FormatVersion || w.ID != id || w.AccountID == "" || len(w.SecretHash) == 0 {
		return nil, 0, false
	}
	return &tollgate.Token{
		SecretVersion: w.SecretVersion, SecretHash: w.SecretHash, Previous: decodePrevious(w.Previous),
		ID: w.ID, AccountID: w.AccountID, AccountName: w.AccountName, Name: w.Name,
		Description: w.Description, Scope: tollgate.Scope(w.Scope), ExpiresAt: utcPtr(w.ExpiresAt),
		CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC(), RevokedAt: utcPtr(w.RevokedAt),
		Policy: tollgate.TokenPolicy{Images: w.Policy.Images, Packages: w.Policy.Packages, Networks: w.Policy.Networks,
			ValidFrom: utcPtr(w.Policy.ValidFrom), PausedAt: utcPtr(w.Policy.PausedAt), MaxPulls: w.Policy.MaxPulls, MaxBytes: w.Policy.MaxBytes},
		Identity: (*tollgate.Identity)(w.Identity),
	}, w.Seq, true
}

func encodeAccount(a *tollgate.Account, seq int64) ([]byte, error) {
	return json.Marshal(wireAccount{
		V: FormatVersion, Seq: seq, ID: a.ID, Name: a.Name, Status: string(a.Status), PackageAccess: string(a.PackageAccess),
		Images: a.Subscription.Images, Packages: a.Subscription.Packages,
		Policy: wireAccountPolicy{MaxLifetime: a.Policy.MaxLifetime, Networks: a.Policy.Networks,
			AutoPauseAfter: a.Policy.AutoPauseAfter, RequireRestrictions: a.Policy.RequireRestrictions},
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
	})
}

func decodeAccount(data []byte, id string) (*tollgate.Account, int64, bool) {
	var w wireAccount
	if json.Unmarshal(data, &w) != nil || w.V != FormatVersion || w.ID != id || w.Status == "" {
		return nil, 0, false
	}
	return &tollgate.Account{
		ID: w.ID, Name: w.Name, Status: tollgate.AccountStatus(w.Status),
		PackageAccess: tollgate.PackageAccess(w.PackageAccess),
		Subscription:  tollgate.Subscription{Images: w.Images, Packages: w.Packages},
		Policy: tollgate.AccountPolicy{MaxLifetime: w.Policy.MaxLifetime, Networks: w.Policy.Networks,
			AutoPauseAfter: w.Policy.AutoPauseAfter, RequireRestrictions: w.Policy.RequireRestrictions},
		CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC(),
	}, w.Seq, true
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// redisFailed counts a failed Redis command and stops sending commands on
// the request path until a probe succeeds (see redisUsable). The first failure after success logs
// one line; requests go on from L1 and the store meanwhile.
func (c *Cache) redisFailed(err error) {
	c.stats.redisErrors.Add(1)
	c.redisProbe.Store(c.now().Add(redisRetry).UnixNano())
	if c.redisDown.CompareAndSwap(false, true) {
		c.log.Warn("tokencache: redis unavailable, serving from memory and the store until it is back", "err", err)
	}
}

// redisOK records a Redis command that succeeded.
func (c *Cache) redisOK() {
	if c.redisDown.Load() && c.redisDown.CompareAndSwap(true, false) {
		c.log.Info("tokencache: redis available again")
	}
}

// redisUsable reports whether to send a command now: always while Redis
// works; while it does not, never from the request path when Run is
// running (Run's probeRedis pings it in the background: a blackholed
// Redis would hold a probing request for the whole I/O timeout), and for
// one probe per redisRetry without Run.
func (c *Cache) redisUsable() bool {
	if c.rdb == nil {
		return false
	}
	if !c.redisDown.Load() {
		return true
	}
	if c.running.Load() {
		return false
	}
	next := c.redisProbe.Load()
	now := c.now().UnixNano()
	return now >= next && c.redisProbe.CompareAndSwap(next, now+int64(redisRetry))
}

// probeRedis pings Redis once it has been taken for down for redisRetry,
// off the request path, and takes it for up again if it answers.
func (c *Cache) probeRedis(ctx context.Context) {
	if c.rdb == nil || !c.redisDown.Load() || c.now().UnixNano() < c.redisProbe.Load() {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, invalidateTimeout)
	defer cancel()
	if err := c.rdb.Ping(pctx).Err(); err != nil {
		if ctx.Err() == nil {
			c.redisFailed(err)
		}
		return
	}
	c.redisOK()
}

// isTimeout reports whether err is a read deadline passing, which on a
// subscription only means that nothing was published.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// l2Get reads an entity and its generation in one round trip (they share
// a slot). It returns the value (nil if absent) and the generation ("" if
// absent).
func (c *Cache) l2Get(ctx context.Context, data, gen string) ([]byte, string, error) {
	vals, err := c.rdb.MGet(ctx, data, gen).Result()
	if err != nil {
		return nil, "", err
	}
	var v []byte
	var g string
	if len(vals) == 2 {
		if s, ok := vals[0].(string); ok {
			v = []byte(s)
		}
		if s, ok := vals[1].(string); ok {
			g = s
		}
	}
	return v, g, nil
}

// l2SetIfGen sets data to v unless its generation moved from gen. It
// reports false when the entry was invalidated meanwhile.
func (c *Cache) l2SetIfGen(ctx context.Context, data, gen, genValue string, v []byte) (bool, error) {
	n, err := setIfGen.Run(ctx, c.rdb, []string{data, gen}, genValue, v, c.redisTTL.Milliseconds()).Int()
	return n == 1, err
}
