package tokencache

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
	store := sqliteStore(t)
	if _, err := New(Options{Store: store, KeyPrefix: "{tg}:"}); err == nil {
		t.Error("New with a hash tag in the prefix succeeded")
	}
	if _, err := New(Options{Store: store, L1TTL: -time.Second}); err == nil {
		t.Error("New with a negative TTL succeeded")
	}
}

// TestLayers follows one token through the layers: the store first, then
// L1; a second replica on the same Redis finds it in L2.
func TestLayers(t *testing.T) {
	rdb, prefix := sharedRedis(t)
	f := newFixture(t, sqliteStore(t))
	clk := newClock()
	cs1 := &countingStore{Store: f.store}
	c1 := newCache(t, Options{Store: cs1, Redis: rdb, KeyPrefix: prefix, Now: clk.Now})

	tok, acct := mustToken(t, c1, f.hash())
	if tok.ID != f.tok.ID || tok.AccountID != f.acct.ID || tok.AccountName != f.acct.Name || tok.Name != "default" ||
		tok.Scope != tollgate.ScopeImages || tok.RevokedAt != nil || acct.ID != f.acct.ID || acct.Status != tollgate.AccountActive {
		t.Fatalf("token %+v, account %+v", tok, acct)
	}
	if s := c1.Stats(); s.Store.Hit != 3 || s.L2.Miss != 3 || s.L1.Miss != 3 || cs1.views.Load() != 3 {
		t.Errorf("first lookup: %+v, views %d", s, cs1.views.Load())
	}

	for range 10 {
		mustToken(t, c1, f.hash())
		if _, _, err := c1.TokenByID(context.Background(), f.tok.ID); err != nil {
			t.Fatal(err)
		}
	}
	if s := c1.Stats(); s.Store.Hit != 3 || s.L1.Hit != 50 || cs1.views.Load() != 3 {
		t.Errorf("warm lookups reached beyond L1: %+v", s)
	}

	cs2 := &countingStore{Store: f.store}
	c2 := newCache(t, Options{Store: cs2, Redis: rdb, KeyPrefix: prefix, Now: clk.Now})
	tok2, acct2 := mustToken(t, c2, f.hash())
	if s := c2.Stats(); s.L2.Hit != 3 || s.Store.Hit != 0 || cs2.views.Load() != 0 {
		t.Errorf("second replica: %+v, views %d", s, cs2.views.Load())
	}
	if fmt.Sprint(*tok2) != fmt.Sprint(*tok) || acct2.Name != acct.Name || acct2.Status != acct.Status {
		t.Errorf("from Redis: %+v %+v\nfrom store: %+v %+v", tok2, acct2, tok, acct)
	}

	// Past l1_ttl, L1 asks Redis again, not the store.
	clk.Add(DefaultL1TTL)
	mustToken(t, c2, f.hash())
	if s := c2.Stats(); s.L2.Hit != 5 || cs2.views.Load() != 0 {
		t.Errorf("after l1_ttl: %+v", s)
	}
}

func TestWithoutRedis(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	c := newCache(t, Options{Store: f.store})
	run(t, c)
	mustToken(t, c, f.hash())
	mustToken(t, c, f.hash())
	if s := c.Stats(); s.Store.Hit != 3 || s.L1.Hit != 3 || s.L2 != (LayerStats{}) || s.RedisUp || s.Subscribed {
		t.Errorf("stats %+v", s)
	}
	// Invalidation without Redis drops the local entry.
	f.svc.Changed = c.Invalidate
	if _, err := f.svc.RevokeToken(context.Background(), "test", f.tok.ID); err != nil {
		t.Fatal(err)
	}
	if tok, _ := mustToken(t, c, f.hash()); tok.RevokedAt == nil {
		t.Error("revoked token served as valid")
	}
}

func TestUsageFieldsAreNotCached(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	ctx := context.Background()
	if err := f.store.RecordUsage(ctx, []tollgate.TokenUsage{{TokenID: f.tok.ID, At: time.Now(), IP: "192.0.2.1", UA: "docker/27", Pulls: 3}}); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, Options{Store: f.store})
	tok, _ := mustToken(t, c, f.hash())
	if tok.LastUsedAt != nil || tok.LastUsedIP != "" || tok.LastUsedUA != "" || tok.Pulls != 0 {
		t.Errorf("usage fields cached: %+v", tok)
	}
}

func TestUnknownTokens(t *testing.T) {
	rdb, prefix := sharedRedis(t)
	f := newFixture(t, sqliteStore(t))
	cs := &countingStore{Store: f.store}
	clk := newClock()
	c := newCache(t, Options{Store: cs, Redis: rdb, KeyPrefix: prefix, Now: clk.Now})
	ctx := context.Background()

	t.Run("unknown hash is unauthorized and asked once", func(t *testing.T) {
		unknown := randomBytes(32)
		for range 100 {
			_, _, err := c.Token(ctx, unknown)
			wantCode(t, err, tollgate.EUNAUTHORIZED)
		}
		if n := cs.views.Load(); n != 1 {
			t.Errorf("store asked %d times", n)
		}
		if s := c.Stats(); s.Negative.Hit != 99 || s.Store.Miss != 1 {
			t.Errorf("stats %+v", s)
		}
		// Unknown hashes are not written to Redis.
		if keys, _ := rdb.Keys(ctx, prefix+"*h:"+hex.EncodeToString(unknown)).Result(); len(keys) != 0 {
			t.Errorf("negative entry in Redis: %v", keys)
		}
		clk.Add(DefaultNegativeTTL)
		_, _, err := c.Token(ctx, unknown)
		wantCode(t, err, tollgate.EUNAUTHORIZED)
		if n := cs.views.Load(); n != 2 {
			t.Errorf("after negative_ttl, store asked %d times in all", n)
		}
	})
	t.Run("unknown id is unauthorized", func(t *testing.T) {
		for _, id := range []string{"tok_doesnotexist00", "", "{t:x}", strings.Repeat("x", 100)} {
			_, _, err := c.TokenByID(ctx, id)
			wantCode(t, err, tollgate.EUNAUTHORIZED)
		}
	})
	t.Run("malformed hash is unauthorized without a lookup", func(t *testing.T) {
		before := cs.views.Load()
		for _, h := range [][]byte{nil, {}, randomBytes(31), randomBytes(64)} {
			_, _, err := c.Token(ctx, h)
			wantCode(t, err, tollgate.EUNAUTHORIZED)
		}
		if cs.views.Load() != before {
			t.Error("a malformed hash reached the store")
		}
	})
}

// TestNegativeCacheIsBounded floods the cache with random tokens: memory
// stays bounded, and each one reaches the store once.
func TestNegativeCacheIsBounded(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	cs := &countingStore{Store: f.store}
	c := newCache(t, Options{Store: cs, NegativeSize: 100})
	ctx := context.Background()
	for range 2000 {
		_, _, err := c.Token(ctx, randomBytes(32))
		wantCode(t, err, tollgate.EUNAUTHORIZED)
	}
	if s := c.Stats(); s.NegativeEntries > 100 || s.L1Hashes != 0 {
		t.Errorf("%d negative entries (bound 100), %d hashes", s.NegativeEntries, s.L1Hashes)
	}
	if n := cs.views.Load(); n != 2000 {
		t.Errorf("store asked %d times for 2000 distinct hashes", n)
	}
	// The newest are remembered.
	recent := randomBytes(32)
	c.Token(ctx, recent)
	c.Token(ctx, recent)
	if n := cs.views.Load(); n != 2001 {
		t.Errorf("a repeated unknown hash reached the store again (%d)", n)
	}
}

func TestL1IsBounded(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	c := newCache(t, Options{Store: f.store, L1Size: 5})
	hashes := [][]byte{f.hash()}
	for range 19 {
		_, h := f.newToken(t)
		hashes = append(hashes, h)
	}
	for _, h := range hashes {
		mustToken(t, c, h)
	}
	if s := c.Stats(); s.L1Tokens > 5 || s.L1Hashes > 5 || s.L1Accounts != 1 {
		t.Errorf("L1 holds %d tokens, %d hashes, %d accounts; bound 5", s.L1Tokens, s.L1Hashes, s.L1Accounts)
	}
	// Everything still answers.
	for _, h := range hashes {
		mustToken(t, c, h)
	}
}

// TestConcurrentMissesShareOneQuery: 64 requests for a cold token make one
// query per key.
func TestConcurrentMissesShareOneQuery(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	cs := &countingStore{Store: f.store, delay: 50 * time.Millisecond}
	c := newCache(t, Options{Store: cs})
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			<-start
			tok, _, err := c.Token(context.Background(), f.hash())
			if err == nil && tok.ID != f.tok.ID {
				err = fmt.Errorf("got token %s", tok.ID)
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.views.Load(); n != 3 {
		t.Errorf("64 concurrent lookups made %d store queries, want 3 (hash, token, account)", n)
	}
}

// TestCallerGivingUpDoesNotFailOthers: the shared load runs detached from
// the context of the request that started it.
func TestCallerGivingUpDoesNotFailOthers(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	cs := &countingStore{Store: f.store, delay: 100 * time.Millisecond}
	c := newCache(t, Options{Store: cs})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error)
	go func() {
		_, _, err := c.Token(context.Background(), f.hash())
		done <- err
	}()
	_, _, err := c.Token(ctx, f.hash())
	wantCode(t, err, tollgate.EUNAVAILABLE)
	if err := <-done; err != nil {
		t.Fatalf("the patient caller failed: %v", err)
	}
}

func TestNoSecretsInRedis(t *testing.T) {
	rdb, prefix := sharedRedis(t)
	f := newFixture(t, sqliteStore(t))
	c := newCache(t, Options{Store: f.store, Redis: rdb, KeyPrefix: prefix})
	mustToken(t, c, f.hash())
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Errorf("keys %v, want the hash mapping, the token and the account", keys)
	}
	secret := f.secret.Reveal()
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix+"v"+strconv.Itoa(FormatVersion)+":") {
			t.Errorf("key %q lacks the format version", k)
		}
		v, _ := rdb.Get(ctx, k).Result()
		for _, s := range []string{k, v} {
			if strings.Contains(s, secret) || strings.Contains(s, secret[len(tollgate.TokenPrefix):]) {
				t.Errorf("a secret is in Redis: %q", k)
			}
		}
		if !strings.Contains(v, `"v":`+strconv.Itoa(FormatVersion)+`,`) {
			t.Errorf("value of %s has no format version: %s", k, v)
		}
	}
}

// TestFormatVersion: an entry of another format version under the key is
// not read; another prefix does not see this one's entries.
func TestFormatVersion(t *testing.T) {
	rdb, prefix := sharedRedis(t)
	f := newFixture(t, sqliteStore(t))
	ctx := context.Background()
	key, _ := newKeyspace(prefix).entity("t", f.tok.ID)
	if key != prefix+"v"+strconv.Itoa(FormatVersion)+":{t:"+f.tok.ID+"}" {
		t.Fatalf("key %q", key)
	}
	// A value a future version might write under an old key by mistake.
	future := `{"v":` + strconv.Itoa(FormatVersion+1) + `,"id":"` + f.tok.ID + `","account_id":"` + f.acct.ID + `","scope":0}`
	if err := rdb.Set(ctx, key, future, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, Options{Store: f.store, Redis: rdb, KeyPrefix: prefix})
	tok, _, err := c.TokenByID(ctx, f.tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Scope != tollgate.ScopeImages || c.Stats().Store.Hit != 2 {
		t.Errorf("read the other version's entry: %+v %+v", tok, c.Stats())
	}
	if v, _ := rdb.Get(ctx, key).Result(); !strings.Contains(v, `"v":`+strconv.Itoa(FormatVersion)+`,`) {
		t.Errorf("entry not replaced: %s", v)
	}

	other := newCache(t, Options{Store: f.store, Redis: rdb, KeyPrefix: prefix + "other:"})
	if _, _, err := other.TokenByID(ctx, f.tok.ID); err != nil {
		t.Fatal(err)
	}
	if s := other.Stats(); s.L2.Hit != 0 {
		t.Errorf("another prefix read this one's entries: %+v", s)
	}
	rdb.Del(ctx, prefix+"other:v"+strconv.Itoa(FormatVersion)+":{t:"+f.tok.ID+"}", prefix+"other:v"+strconv.Itoa(FormatVersion)+":{a:"+f.acct.ID+"}")
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes
		{"é", 1, ""},
	} {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestRedisEntryKeepsTheTokenPolicy: another replica reads a token from
// Redis. Losing its policy on the way would make a restricted, paused or
// network-bound token unrestricted there.
func TestRedisEntryKeepsTheTokenPolicy(t *testing.T) {
	from, paused := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	nets, err := tollgate.ParseNetworks("networks", []string{"10.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	in := &tollgate.Token{ID: "tok_1", AccountID: "acc_1", Scope: tollgate.ScopeImages, SecretHash: []byte("hash"),
		Policy: tollgate.TokenPolicy{Images: []string{"team-a/*"}, Packages: []string{"os"}, Networks: nets, ValidFrom: &from, PausedAt: &paused}}
	data, err := encodeToken(in, 7)
	if err != nil {
		t.Fatal(err)
	}
	out, seq, ok := decodeToken(data, "tok_1")
	if !ok || seq != 7 {
		t.Fatalf("not decoded (seq %d)", seq)
	}
	p := out.Policy
	if !slices.Equal(p.Images, in.Policy.Images) || !slices.Equal(p.Packages, in.Policy.Packages) || !slices.Equal(p.Networks, nets) ||
		p.ValidFrom == nil || !p.ValidFrom.Equal(from) || p.PausedAt == nil || !p.PausedAt.Equal(paused) {
		t.Fatalf("policy after Redis: %+v", p)
	}
}

// TestRedisEntryKeepsTheWorkloadIdentity: an ephemeral credential read
// from Redis by another replica is still ephemeral (no expiry warnings,
// its identity in the access log).
func TestRedisEntryKeepsTheWorkloadIdentity(t *testing.T) {
	in := &tollgate.Token{ID: "tok_1", AccountID: "acc_1", Scope: tollgate.ScopeImages, SecretHash: []byte("hash"),
		Identity: &tollgate.Identity{PolicyID: "tp_1", Issuer: "https://issuer", Subject: "repo:acme/app", Claims: map[string]string{"repository": "acme/app"}}}
	data, err := encodeToken(in, 7)
	if err != nil {
		t.Fatal(err)
	}
	out, _, ok := decodeToken(data, "tok_1")
	if !ok || !out.Ephemeral() || out.Identity.Subject != "repo:acme/app" || out.Identity.PolicyID != "tp_1" || out.Identity.Claims["repository"] != "acme/app" {
		t.Fatalf("identity after Redis: %+v", out.Identity)
	}
}
