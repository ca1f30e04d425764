package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/bounded"
)

// upstreamAuth is tollgate's own client of the upstream registry's
// credentials: Basic when the upstream accepts it, or the registry token
// exchange when the upstream answers with a Bearer challenge (tokens
// cached per repository, bounded in bytes).
//
// The challenge comes from the upstream's answer, so it is only as
// trustworthy as that answer: tollgate's credentials go only to a realm on
// the upstream's own origin or on a host the operator named (RealmHosts),
// and never over plain http when the upstream is https. Any other realm is
// asked for a token without credentials (an anonymous pull token), so a
// foreign realm gets nothing.
type upstreamAuth struct {
	next       http.RoundTripper
	user, pass string
	origin     *url.URL // the upstream's scheme://host:port
	realmHosts []string // further hosts trusted with the credentials
	now        func() time.Time

	mu     sync.Mutex
	tokens *bounded.Map[string, cachedToken] // by repository path
	bearer bool                              // the upstream asked for bearer tokens
}

type cachedToken struct {
	token   string
	expires time.Time
}

// Bounds of the upstream token cache: the keys are repository paths that
// callers choose, the values tokens the upstream chooses.
const (
	maxUpstreamTokenBytes = 8 << 20
	maxUpstreamTokenLen   = 16 << 10 // longer tokens are used once, not kept
	upstreamTokenOverhead = 64
)

func newUpstreamAuth(next http.RoundTripper, origin *url.URL, user, pass string, realmHosts []string, now func() time.Time) *upstreamAuth {
	if now == nil {
		now = time.Now
	}
	return &upstreamAuth{next: next, user: user, pass: pass, origin: origin, realmHosts: realmHosts, now: now,
		tokens: bounded.New(bounded.Options[string, cachedToken]{
			MaxBytes: maxUpstreamTokenBytes,
			Cost: func(scope string, t cachedToken) int64 {
				return int64(len(scope) + len(t.token) + upstreamTokenOverhead)
			},
			Rank: func(now time.Time, _ string, t cachedToken) bounded.Rank {
				if !now.Before(t.expires) {
					return bounded.Expired
				}
				return bounded.Keep
			},
			Now: now,
		})}
}

func (a *upstreamAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	scope := upstreamScope(req.URL.Path)
	a.mu.Lock()
	bearer := a.bearer
	tok, ok := a.tokens.Get(scope)
	a.mu.Unlock()
	out := req.Clone(req.Context())
	switch {
	case bearer && ok && a.now().Before(tok.expires):
		out.Header.Set("Authorization", "Bearer "+tok.token)
	case a.user != "" && a.sameOrigin(req.URL):
		out.SetBasicAuth(a.user, a.pass)
	}
	resp, err := a.next.RoundTrip(out)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || req.Body != nil && req.Body != http.NoBody {
		return resp, err
	}
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(strings.ToLower(ch), "bearer ") {
		return resp, nil
	}
	token, ttl, err := a.fetchToken(req.Context(), ch)
	if err != nil {
		return resp, nil // the 401 stands; the proxy reports it
	}
	drain(resp.Body)
	a.remember(scope, token, ttl)
	out = req.Clone(req.Context())
	out.Header.Set("Authorization", "Bearer "+token)
	return a.next.RoundTrip(out)
}

func (a *upstreamAuth) remember(scope, token string, ttl time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bearer = true
	if len(token) > maxUpstreamTokenLen {
		a.tokens.Delete(scope)
		return
	}
	a.tokens.Put(scope, cachedToken{token: token, expires: a.now().Add(ttl - ttl/5)})
}

// upstreamScope is the cache key for a path's bearer token: its repository.
func upstreamScope(p string) string {
	for _, s := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.Index(p, s); i > 0 {
			return p[:i]
		}
	}
	return p
}

func (a *upstreamAuth) sameOrigin(u *url.URL) bool {
	return u.Scheme == a.origin.Scheme && strings.EqualFold(u.Host, a.origin.Host)
}

// realmTrusted says whether tollgate's credentials may go to realm.
func (a *upstreamAuth) realmTrusted(realm *url.URL) bool {
	if a.sameOrigin(realm) {
		return true
	}
	if a.origin.Scheme == "https" && realm.Scheme != "https" {
		return false
	}
	return slices.ContainsFunc(a.realmHosts, func(h string) bool { return strings.EqualFold(h, realm.Host) })
}

var errRealm = errors.New("upstream challenge has no usable realm")

func (a *upstreamAuth) fetchToken(ctx context.Context, challenge string) (string, time.Duration, error) {
	params := parseChallengeParams(challenge[len("bearer "):])
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "http" && realm.Scheme != "https") || realm.Host == "" || realm.User != nil {
		return "", 0, errRealm
	}
	if a.origin.Scheme == "https" && realm.Scheme != "https" {
		return "", 0, errRealm // a downgrade: not even an anonymous token
	}
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", 0, err
	}
	if a.user != "" && a.realmTrusted(realm) {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.user+":"+a.pass)))
	}
	resp, err := a.next.RoundTrip(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("upstream token endpoint: status %d", resp.StatusCode)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tr); err != nil {
		return "", 0, err
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", 0, errors.New("upstream token endpoint returned no token")
	}
	ttl := max(time.Duration(tr.ExpiresIn)*time.Second, time.Minute)
	return tok, ttl, nil
}

// parseChallengeParams parses `k="v",k2="v2"` (quoted or bare values).
func parseChallengeParams(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(strings.TrimSpace(s), ",") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var v string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			v, s = b.String(), rest[min(i+1, len(rest)):]
		} else {
			v, s, _ = strings.Cut(rest, ",")
		}
		out[k] = strings.TrimSpace(v)
	}
	return out
}
