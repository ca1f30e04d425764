package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/dev/upstream"
	"github.com/tollgate/tollgate/internal/testenv"
)

// startReplicas runs n tollgate servers sharing one PostgreSQL schema, one
// Redis (with a key prefix of their own) and one upstream registry, as a
// deployment's replicas do.
func startReplicas(t testing.TB, n int) []*Main {
	t.Helper()
	return startReplicasWith(t, n, nil)
}

// startReplicasWith is startReplicas with tweak applied to every
// replica's config (nil: none) before it is validated.
func startReplicasWith(t testing.TB, n int, tweak func(*config.Config)) []*Main {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	redisAddr := testenv.RedisAddr(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if err := config.GenerateKeys(keys); err != nil {
		t.Fatal(err)
	}
	up, err := upstream.Start(context.Background(), upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	if _, err := upstream.SeedDemo(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "tgtest-" + hex.EncodeToString(b) + ":"

	var ms []*Main
	for i := range n {
		cfg := config.Default()
		cfg.Listen = "127.0.0.1:0"
		cfg.PublicURL = "https://registry.example.com" // the service name all replicas share
		cfg.Store.Driver = config.DriverPostgres
		cfg.Store.Postgres.DSN = tollgate.Secret(dsn)
		cfg.Keys.Dir = keys
		cfg.Upstream.URL = up.URL
		cfg.Redis.Mode = "single"
		cfg.Redis.Addrs = []string{redisAddr}
		cfg.Redis.KeyPrefix = prefix
		if tweak != nil {
			tweak(cfg)
		}
		cfg.Normalize()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		m := &Main{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
		if err := m.Run(context.Background()); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { m.Close() })
		ms = append(ms, m)
	}
	return ms
}

func jwtFrom(t testing.TB, m *Main, secret, scope string) string {
	t.Helper()
	q := url.Values{"service": {m.Config.Service}, "scope": {scope}}
	req, _ := http.NewRequest("GET", m.URL+"/token?"+q.Encode(), nil)
	req.SetBasicAuth("tollgate", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token from %s: %d %v", m.URL, resp.StatusCode, err)
	}
	return tr.Token
}

func manifestStatus(t *testing.T, m *Main, jwt string) int {
	t.Helper()
	req, _ := http.NewRequest("HEAD", m.URL+"/v2/demo/hello/manifests/latest", nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestRevocationReachesEveryReplica revokes a token through replica 1's
// API and measures how long replicas 2 and 3 keep honouring JWTs they
// issued before. Their L1 entries are fresh for 30 s, so only the Redis
// invalidation can make them deny in time.
func TestRevocationReachesEveryReplica(t *testing.T) {
	ms := startReplicas(t, 3)
	ctx := context.Background()
	cl := &api.Client{BaseURL: ms[0].URL, Key: ms[0].AdminKey.Reveal()}
	if _, _, err := cl.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetSubscription(ctx, "acme", []string{"demo/**"}, nil); err != nil {
		t.Fatal(err)
	}
	const runs = 20
	var worst []time.Duration
	for run := range runs {
		tok, err := cl.CreateToken(ctx, "acme", api.CreateTokenRequest{Name: fmt.Sprintf("r%d", run)})
		if err != nil {
			t.Fatal(err)
		}
		jwts := map[*Main]string{}
		for _, m := range ms[1:] {
			jwts[m] = jwtFrom(t, m, tok.Secret, "repository:demo/hello:pull")
			if st := manifestStatus(t, m, jwts[m]); st != 200 {
				t.Fatalf("run %d: pull before revoke = %d", run, st)
			}
		}
		start := time.Now()
		if _, err := cl.RevokeToken(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		var slowest time.Duration
		for _, m := range ms[1:] {
			for {
				if manifestStatus(t, m, jwts[m]) == http.StatusUnauthorized {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("run %d: replica %s still honours a revoked token after 1 s", run, m.URL)
				}
				time.Sleep(time.Millisecond)
			}
			slowest = max(slowest, time.Since(start))
		}
		worst = append(worst, slowest)
	}
	slices.Sort(worst)
	t.Logf("revocation propagation to 2 other replicas over %d runs (from the revoke call): median %v, worst %v",
		runs, worst[runs/2].Round(10*time.Microsecond), worst[runs-1].Round(10*time.Microsecond))
}
