package proxy

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/internal/bounded"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
	"github.com/tollgate/tollgate/quota"
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
	// warnBefore: answers to a token expiring this soon carry a Warning.
	warnBefore time.Duration
	quota      *quota.Counter // nil: caps are not counted
	platforms  *platforms     // what indexes said of their manifests (events.go)
	exchanger  Exchanger      // nil: OIDC tokens are not accepted (keyless pulls off)
}

func newFront(o Options) *front {
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &front{
		responder: responder{log: o.Logger, metrics: o.Metrics, refusals: o.Refusals, now: o.Now},
		lookup:    o.Lookup, keys: o.Keys, usage: o.Usage, events: o.Events, limiter: o.Limiter, now: o.Now,
		recent: newRecentFailures(o.Now), warnBefore: o.WarnBefore, quota: o.Quota, platforms: newPlatforms(o.Now),
		exchanger: o.Exchanger,
	}
}

// caller is who is behind a request: a registry token (with its account),
// the claims of a JWT from /token, or neither (anonymous).
type caller struct {
	token   *tollgate.Token
	account *tollgate.Account
	claims  *authz.Claims // nil when the request used a secret directly
	// version is which of the token's secrets was presented (directly or
	// through a JWT's "sv" claim); 0: not known (the current one).
	version int
	// month is the token's usage this month, read only for a capped
	// token on a fetch (nil: caps are not judged).
	month *quota.Usage
	// pull: this request counts as a pull against the caps.
	pull bool
}

// resource is what the caller asks for, with what Decide needs to know
// about the request: the client address and the secret presented.
func (c caller) resource(r *http.Request, kind authz.Kind, name string) authz.Resource {
	res := authz.Resource{Kind: kind, Name: name, Client: clientAddr(r), SecretVersion: c.version}
	if c.month != nil {
		res.MonthPulls, res.MonthBytes, res.Pull = c.month.Pulls, c.month.Bytes, c.pull
	}
	return res
}

// metered reads the month's usage of a capped token into c, for a fetch
// (pull: it counts as one), so that Decide judges the caps.
func (f *front) metered(r *http.Request, c *caller, pull bool) {
	if f.quota == nil || c.token == nil || !c.token.Policy.Capped() {
		return
	}
	u := f.quota.Get(r.Context(), c.token.ID)
	c.month, c.pull = &u, pull
}

// count adds what a served fetch cost to a capped token's month: the pull
// at once, the bytes when the response has ended (through the writer
// count returns; call done after serving).
func (f *front) count(w http.ResponseWriter, r *http.Request, c caller) (http.ResponseWriter, func()) {
	if c.month == nil {
		return w, func() {}
	}
	if c.pull {
		f.quota.Add(r.Context(), c.token.ID, 1, 0)
	}
	cw := &countingWriter{ResponseWriter: w}
	return cw, func() { f.quota.Add(r.Context(), c.token.ID, 0, cw.n) }
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// capRefusal says which cap is reached and when it resets.
func (f *front) capRefusal(c caller) *refusal {
	p, reset := c.token.Policy, tollgate.CapResetsAt(f.now()).Format("2006-01-02")
	msg := "registry token " + c.token.Name + " reached its monthly pull cap (" + strconv.FormatInt(p.MaxPulls, 10) + "); it resets on " + reset + " UTC"
	if p.MaxBytes > 0 && c.month.Bytes >= p.MaxBytes {
		msg = "registry token " + c.token.Name + " reached its monthly download cap (" + strconv.FormatInt(p.MaxBytes, 10) + " bytes); it resets on " + reset + " UTC"
	}
	return refuse(errcode.ErrorCodeDenied, string(authz.CapReached), msg)
}

// bySecret authenticates a registry token secret (a Basic password, the
// /token password) and checks that the token is usable at all now. Its
// errors are refusals (401 or 429) or the lookup's EUNAVAILABLE/EINTERNAL.
func (f *front) bySecret(r *http.Request, secret string) (caller, error) {
	if f.exchanger != nil && f.exchanger.IsOIDC(secret) {
		return f.byOIDC(r, secret)
	}
	tok, acct, hash, err := f.find(r.Context(), secret)
	switch tollgate.ErrorCode(err) {
	case "":
	case tollgate.EUNAUTHORIZED, tollgate.EINVALID:
		return caller{}, f.guess(r, secret, "invalid credentials")
	default:
		return caller{}, err
	}
	f.known(r, tok)
	res := authz.Resource{Kind: authz.Any, Client: clientAddr(r), SecretHash: hash}
	if reason := authz.Decide(tok, acct, f.now(), res); !reason.Allowed() {
		if reason == authz.AddressNotAllowed {
			return caller{}, denied(reason) // a valid secret in the wrong place: no guess
		}
		return caller{}, f.unusable(r, tok, reason)
	}
	return caller{token: tok, account: acct, version: tok.PresentedVersion(hash)}, nil
}

// clientAddr is the client's address as ops.trusted_proxies defines it;
// the zero Addr when it cannot be parsed (refused by any network rule).
func clientAddr(r *http.Request) netip.Addr {
	a, _ := netip.ParseAddr(obs.ClientIP(r))
	return a.Unmap()
}

// denied is the refusal of a decision against a known token: 403 for
// what the token's own policy forbids (docker shows "denied: …"), 401
// with the reason otherwise.
func denied(reason authz.Reason) *refusal {
	switch reason {
	case authz.AddressNotAllowed, authz.Restricted:
		return refuse(errcode.ErrorCodeDenied, string(reason), denyMessage(reason))
	}
	return refuse(errcode.ErrorCodeUnauthorized, string(reason), denyMessage(reason))
}

// find looks a secret up by its lookup hash, which it returns too (Decide
// tells a rotated-out secret by it); malformed secrets never reach the
// lookup.
func (f *front) find(ctx context.Context, secret string) (*tollgate.Token, *tollgate.Account, []byte, error) {
	s, err := tollgate.ParseCredential(secret)
	if err != nil {
		return nil, nil, nil, err
	}
	hash := f.keys.Hash(s)
	tok, acct, err := f.lookup.Token(ctx, hash)
	return tok, acct, hash, err
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
	f.known(r, tok)
	// The registry token behind the JWT must still be usable now, from
	// here. The JWT was issued to it, so this is no guess: nothing is
	// charged.
	c := caller{token: tok, account: acct, claims: claims, version: claims.SecretVersion}
	if reason := authz.Decide(tok, acct, f.now(), c.resource(r, authz.Any, "")); !reason.Allowed() {
		return caller{}, denied(reason)
	}
	return c, nil
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

// known names the token behind the request in its Info as soon as it is
// found: the access log line shows whose request was refused, and the
// responder records the refusal on the token (its public id only).
func (f *front) known(r *http.Request, tok *tollgate.Token) {
	info := obs.FromContext(r.Context())
	info.TokenID, info.Account = tok.ID, tok.AccountName
}

// allow records a positive decision and who made the request.
func (f *front) allow(r *http.Request, tok *tollgate.Token) {
	f.metrics.Decision("ok")
	if tok != nil {
		f.known(r, tok)
	}
}

// used records a use of c's token (a pull: a manifest GET, a package
// download), telling the previous secret's uses apart after a rotation.
func (f *front) used(r *http.Request, c caller) {
	if f.usage == nil || c.token == nil {
		return
	}
	if su, ok := f.usage.(SecretUsageRecorder); ok {
		su.RecordSecretUse(c.token.ID, c.token.IsPrevious(c.version), obs.ClientIP(r), r.UserAgent(), f.now())
		return
	}
	f.usage.RecordUse(c.token.ID, obs.ClientIP(r), r.UserAgent(), f.now())
}

// warn sets the Warning header (RFC 9111 §5.5, code 299, which the OCI
// distribution spec lets registries send) on an answer served with c's
// token when it expires within warnBefore or the secret presented is the
// previous one. The text names the token, never its secret.
func (f *front) warn(w http.ResponseWriter, c caller) {
	if c.token == nil {
		return
	}
	if text := c.token.ExpiryWarning(f.now(), f.warnBefore, c.version); text != "" {
		w.Header().Set("Warning", `299 - `+strconv.Quote(text))
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
	case authz.Paused:
		return "registry token paused: resume it to pull again"
	case authz.NotYetValid:
		return "registry token not valid yet (see its valid-from date)"
	case authz.AddressNotAllowed:
		return "registry token may not be used from this address (its allowed-networks rule)"
	case authz.Restricted:
		return "repository outside this registry token's restrictions"
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
	m   *bounded.Map[[16]byte, time.Time]
}

func newRecentFailures(now func() time.Time) *recentFailures {
	return &recentFailures{now: now, m: bounded.New(bounded.Options[[16]byte, time.Time]{
		MaxEntries: maxRecentFailures,
		Now:        now,
		Rank: func(now time.Time, _ [16]byte, at time.Time) bounded.Rank {
			if now.Sub(at) >= failureWindow {
				return bounded.Expired
			}
			return bounded.Keep
		},
	})}
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
	if at, ok := rf.m.Get(k); ok && now.Sub(at) < failureWindow {
		return false
	}
	rf.m.Put(k, now)
	return true
}
