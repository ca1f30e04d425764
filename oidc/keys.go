package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// staleKeysFor is how long the keys an issuer last published keep
// verifying while it cannot be fetched (down, slow, or asked too
// recently): an issuer's outage does not refuse its workloads at once,
// and a key it drops during one is honoured no longer than this after
// the last fetch that published it. One default credential lifetime.
const staleKeysFor = 15 * time.Minute

// remoteKeys is an issuer's published key set (go-oidc's KeySet). The
// keys fetched are trusted for maxAge (Options.MinInterval); after that
// the set is fetched again before a token is verified, so a key the
// issuer dropped stops verifying within maxAge, whichever key the next
// token names. An unknown "kid" fetches at once (the fetch limiter
// permitting). Concurrent verifications share one fetch.
type remoteKeys struct {
	url    string
	client *http.Client // carries the bounds of every fetch
	now    func() time.Time
	maxAge time.Duration

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	at       time.Time // when keys were fetched; zero before the first fetch
	inflight *keyFetch
}

type keyFetch struct {
	done chan struct{}
	keys []jose.JSONWebKey
	err  error
}

// VerifySignature verifies raw's signature with a published key and
// returns its payload; the claims are go-oidc's to check.
func (r *remoteKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, asymmetric)
	if err != nil {
		return nil, fmt.Errorf("oidc: malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("oidc: token without exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	r.mu.Lock()
	keys, at := r.keys, r.at
	r.mu.Unlock()
	age := r.now().Sub(at)
	if !at.IsZero() && age < r.maxAge {
		if p, ok := verifyWith(jws, keys, kid); ok {
			return p, nil
		}
	}
	fetched, err := r.fetch(ctx)
	if err != nil {
		if !at.IsZero() && age < staleKeysFor {
			if p, ok := verifyWith(jws, keys, kid); ok {
				return p, nil
			}
		}
		return nil, err
	}
	if p, ok := verifyWith(jws, fetched, kid); ok {
		return p, nil
	}
	return nil, errors.New("oidc: no key the issuer publishes verifies the token")
}

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) ([]byte, bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true
		}
	}
	return nil, false
}

// fetch fetches the set, or waits for the fetch under way.
func (r *remoteKeys) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	f := r.inflight
	if f == nil {
		f = &keyFetch{done: make(chan struct{})}
		r.inflight = f
		// The fetch is shared: one caller's cancellation must not fail
		// the others. The client's timeout bounds it.
		go func(ctx context.Context) {
			keys, err := r.get(ctx)
			r.mu.Lock()
			if err == nil {
				r.keys, r.at = keys, r.now()
			}
			r.inflight = nil
			r.mu.Unlock()
			f.keys, f.err = keys, err
			close(f.done)
		}(context.WithoutCancel(ctx))
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.keys, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// get reads the JWKS: its public signing keys; a key of a type or
// algorithm go-jose does not know is skipped, not fatal (issuers publish
// keys for other uses too).
func (r *remoteKeys) get(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("oidc: JWKS: %w", err)
	}
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oidc: JWKS: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("oidc: JWKS: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oidc: JWKS: %s", resp.Status)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("oidc: JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if json.Unmarshal(raw, &k) != nil || !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}
