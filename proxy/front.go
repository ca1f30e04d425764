package proxy

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
)

// front is the one core every route shares: the image routes, the package
// routes and /token all authenticate, limit, look up, decide and record
// through it, so a rule added here holds for all of them.
//
//	credentials → look up (cache) → authz.Decide → record use → upstream
//	                  └ on failure only: failed-auth limiter (429 when empty)
//
// The failed-auth limiter is consulted only for attempts that fail: a
// request with a valid token always passes, even from an address whose
// bucket someone else has emptied (a cluster behind one NAT). Unknown or
// malformed credentials are charged to the client address, once per
// credential within failureWindow (containerd POSTs /token and then GETs
// it with the same credential); a known secret that is revoked, expired or
// suspended is not a guess and is charged to its token instead.
type front struct {
	responder
	lookup  Lookup
	keys    *tollgate.Keys
	usage   UsageRecorder
	events  EventSink
	limiter *ratelimit.Limiter
	now     func() time.Time
	recent  *recentFailures
}

func newFront(o Options) *front {
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &front{
		responder: responder{log: o.Logger, metrics: o.Metrics},
		lookup:    o.Lookup, keys: o.Keys, usage: o.Usage, events: o.Events, limiter: o.Limiter, now: o.Now,
		recent: newRecentFailures(o.Now),
	}
}

// caller is who is behind a request: a registry token (with its account),
// the claims of a JWT from /token, or neither (anonymous).
type caller struct {
	token   *tollgate.Token
	account *tollgate.Account
	claims  *authz.Claims // nil when the request used a secret directly
}

// bySecret authenticates a registry token secret (a Basic password, the
// /token password) and checks that the token is usable at all now. Its
// errors are refusals (401 or 429) or the lookup's EUNAVAILABLE/EINTERNAL.
func (f *front) bySecret(r *http.Request, secret string) (caller, error) {
	tok, acct, err := f.find(r.Context(), secret)
	switch tollgate.ErrorCode(err) {
	case "":
	case tollgate.EUNAUTHORIZED, tollgate.EINVALID:
		return caller{}, f.guess(r, secret, "invalid credentials")
	default:
		return caller{}, err
	}
	if reason := authz.Decide(tok, acct, f.now(), authz.Resource{Kind: authz.Any}); !reason.Allowed() {
		return caller{}, f.unusable(r, tok, reason)
	}
	return caller{token: tok, account: acct}, nil
}

// find looks a secret up; malformed secrets never reach the lookup.
func (f *front) find(ctx context.Context, secret string) (*tollgate.Token, *tollgate.Account, error) {
	s, err := tollgate.ParseToken(secret)
	if err != nil {
		return nil, nil, err
	}
	return f.lookup.Token(ctx, f.keys.Hash(s))
}

// byJWT checks a bearer JWT from /token and the registry token behind it.
func (f *front) byJWT(r *http.Request, verifier *authz.Verifier, raw string) (caller, error) {
	claims, err := verifier.Check(raw)
	if err != nil {
		f.log.Debug("bearer token refused", "err", err)
		return caller{}, f.guess(r, raw, "invalid token")
	}
	if claims.Subject == anonymousSubject {
		return caller{claims: claims}, nil
	}
	tok, acct, err := f.lookup.TokenByID(r.Context(), claims.Subject)
	if err != nil {
		return caller{}, err
	}
	// The registry token behind the JWT must still be usable now. The JWT
	// was issued to it, so this is no guess: nothing is charged.
	if reason := authz.Decide(tok, acct, f.now(), authz.Resource{Kind: authz.Any}); !reason.Allowed() {
		return caller{}, refuse(errcode.ErrorCodeUnauthorized, string(reason), denyMessage(reason))
	}
	return caller{token: tok, account: acct, claims: claims}, nil
}

// guess charges a credential that matched nothing to the client address
// and refuses it; an address whose bucket is empty gets 429.
func (f *front) guess(r *http.Request, credential, message string) error {
	ip := obs.ClientIP(r)
	if blocked, retry := f.limiter.Blocked(r.Context(), ip); blocked {
		return tooMany(retry)
	}
	if f.recent.first(ip, credential) {
		f.limiter.Fail(r.Context(), ip)
	}
	return refuse(errcode.ErrorCodeUnauthorized, reasonBadCredentials, message)
}

// unusable refuses a known token that may not be used now (revoked,
// expired, suspended), charging its own bucket, not the address's.
func (f *front) unusable(r *http.Request, tok *tollgate.Token, reason authz.Reason) error {
	key := "token:" + tok.ID
	if blocked, retry := f.limiter.Blocked(r.Context(), key); blocked {
		return tooMany(retry)
	}
	if f.recent.first(key, "") {
		f.limiter.Fail(r.Context(), key)
	}
	return refuse(errcode.ErrorCodeUnauthorized, string(reason), denyMessage(reason))
}

// allow records a positive decision and who made the request.
func (f *front) allow(r *http.Request, tok *tollgate.Token) {
	f.metrics.Decision("ok")
	if tok != nil {
		info := obs.FromContext(r.Context())
		info.TokenID, info.Account = tok.ID, tok.AccountName
	}
}

// used records a use of tok (a pull: a manifest GET, a package download).
func (f *front) used(r *http.Request, tok *tollgate.Token) {
	if f.usage != nil && tok != nil {
		f.usage.RecordUse(tok.ID, obs.ClientIP(r), r.UserAgent(), f.now())
	}
}

// denyMessage tells the token's owner why it does not work. Only the holder
// of a valid secret ever sees it.
func denyMessage(r authz.Reason) string {
	switch r {
	case authz.Revoked:
		return "registry token revoked"
	case authz.Expired:
		return "registry token expired"
	case authz.Suspended:
		return "account suspended"
	case authz.WrongScope:
		return "registry token lacks the images scope"
	}
	return "access denied"
}

// failureWindow is how long a failed credential is remembered per client,
// so that a client's retry of the same credential counts once.
const failureWindow = 10 * time.Second

// maxRecentFailures bounds recentFailures (48 bytes an entry).
const maxRecentFailures = 50_000

// recentFailures remembers (client, credential) pairs that failed lately,
// as hashes: it never holds a secret.
type recentFailures struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[16]byte]time.Time
}

func newRecentFailures(now func() time.Time) *recentFailures {
	return &recentFailures{now: now, m: map[[16]byte]time.Time{}}
}

// first reports whether (client, credential) has not failed within the
// window, and remembers it.
func (rf *recentFailures) first(client, credential string) bool {
	sum := sha256.Sum256([]byte(client + "\x00" + credential))
	var k [16]byte
	copy(k[:], sum[:])
	now := rf.now()
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if at, ok := rf.m[k]; ok && now.Sub(at) < failureWindow {
		return false
	}
	if len(rf.m) >= maxRecentFailures {
		sweep(rf.m, maxRecentFailures, func(at time.Time) bool { return now.Sub(at) >= failureWindow })
	}
	rf.m[k] = now
	return true
}

// sweep bounds a map: it drops the entries stale says may go, then, if
// that freed too little, arbitrary ones until the map is 7/8 of limit, so
// a full map is swept once per many inserts.
func sweep[K comparable, V any](m map[K]V, limit int, stale func(V) bool) {
	for k, v := range m {
		if stale(v) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) < limit-limit/8 {
			break
		}
		delete(m, k)
	}
}
