// Package testenv gives tests the real services of the machine
// (PostgreSQL, Redis) or skips them when a service is not there, the
// one settable Clock tests inject instead of sleeping, and the one Buffer
// that captures logs and process output while a test reads them.
//
// A missing service skips the test, unless TOLLGATE_TEST_REQUIRE_SERVICES=1
// (as CI sets it), in which case the test fails: CI must never pass by
// skipping.
//
// Environment:
//
//	TOLLGATE_TEST_POSTGRES_DSN     default postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	                               (then the current user, for trust auth set up that way)
//	TOLLGATE_TEST_REDIS_ADDR       default 127.0.0.1:6379
//	TOLLGATE_TEST_REQUIRE_SERVICES 1: fail instead of skip
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	requireEnv     = "TOLLGATE_TEST_REQUIRE_SERVICES"
	postgresEnv    = "TOLLGATE_TEST_POSTGRES_DSN"
	redisEnv       = "TOLLGATE_TEST_REDIS_ADDR"
	defaultRedis   = "127.0.0.1:6379"
	connectTimeout = 5 * time.Second
)

// Required reports whether missing services fail tests instead of
// skipping them.
func Required() bool { return os.Getenv(requireEnv) == "1" }

// unavailable skips or fails t because service is not there.
func unavailable(t testing.TB, service string, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required (%s=1) but unavailable: %v", service, requireEnv, err)
	}
	t.Skipf("%s unavailable, skipping (set %s=1 to fail instead): %v", service, requireEnv, err)
}

// PostgresCandidates are the DSNs tried for the test database, in order:
// TOLLGATE_TEST_POSTGRES_DSN alone if set, else the postgres user and the
// current user on 127.0.0.1:5432, database test.
func PostgresCandidates() []string {
	if dsn := os.Getenv(postgresEnv); dsn != "" {
		return []string{dsn}
	}
	dsns := []string{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable"}
	if u, err := user.Current(); err == nil && u.Username != "postgres" {
		dsns = append(dsns, "postgres://"+url.PathEscape(u.Username)+"@127.0.0.1:5432/test?sslmode=disable")
	}
	return dsns
}

// PostgresDSN returns a DSN for a fresh, empty schema of its own in the
// test database: the schema (tg_test_<random>) is created now, named in
// the DSN's search_path, and dropped with everything in it when t ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()

	var (
		conn *pgx.Conn
		base string
		err  error
	)
	for _, dsn := range PostgresCandidates() {
		if conn, err = pgx.Connect(ctx, dsn); err == nil {
			base = dsn
			break
		}
	}
	if conn == nil {
		unavailable(t, "PostgreSQL", err)
	}
	defer conn.Close(context.Background())

	schema := "tg_test_" + randomHex(8)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("testenv: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("testenv: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("testenv: drop schema %s: %v", schema, err)
		}
	})
	return WithSearchPath(base, schema)
}

// WithSearchPath returns dsn (URL or key=value form) with its search_path
// runtime parameter set to schema.
func WithSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return strings.TrimSpace(dsn) + " search_path=" + schema
}

// RedisAddr returns the address of a Redis server that answers PING. Tests
// sharing it must keep to their own keys (prefix them with t.Name() or a
// random string) or use a database of their own.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(redisEnv)
	if addr == "" {
		addr = defaultRedis
	}
	if err := pingRedis(addr); err != nil {
		unavailable(t, "Redis at "+addr, err)
	}
	return addr
}

func pingRedis(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, connectTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(connectTimeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	// "+PONG", or "-NOAUTH ..." from a server that wants a password: it is
	// there, and the test's client will say what is wrong.
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected answer to PING: %q", strings.TrimSpace(line))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
