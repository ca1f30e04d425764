package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/password"
	"github.com/tollgate/tollgate/store/sqlite"
)

// TestSignInEmailsCannotBloatTheLimiter: the per-email bucket was keyed by
// the email field as posted, unchecked, so every failed sign-in could
// leave a 16 KiB key in memory for the whole window (an address with many
// client addresses, IPv6 say, multiplies that). No valid email is longer
// than 254 characters.
func TestSignInEmailsCannotBloatTheLimiter(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := tollgate.NewKeys([]byte(strings.Repeat("k", 32)), []byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	c := &Console{Service: tollgate.NewService(db, keys), Users: &tollgate.Users{Store: db, Keys: keys, Hasher: password.Fast, Now: nil}}
	c.Users.Now = c.now
	h := c.Handler()
	get := httptest.NewRecorder()
	h.ServeHTTP(get, httptest.NewRequest("GET", "/console/sign-in", nil))
	var pre *http.Cookie
	for _, ck := range get.Result().Cookies() {
		if ck.Name == preCookie {
			pre = ck
		}
	}
	if pre == nil {
		t.Fatal("no pre-session cookie")
	}
	for i := range 10 {
		email := strings.Repeat(string(rune('a'+i)), 15<<10) + "@acme.example"
		form := url.Values{"csrf": {c.csrfToken("pre", pre.Value)}, "email": {email}, "password": {"x"}}.Encode()
		req := httptest.NewRequest("POST", "/console/sign-in", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(pre)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	c.limiter.mu.Lock()
	defer c.limiter.mu.Unlock()
	if len(c.limiter.buckets) < 2 {
		t.Fatalf("the sign-ins were not counted: %d buckets", len(c.limiter.buckets))
	}
	size := 0
	for k := range c.limiter.buckets {
		size += len(k)
	}
	if size > 10*300+100 {
		t.Fatalf("10 failed sign-ins keep %d bytes of keys in the limiter", size)
	}
}

// TestSignInLimiterStaysBoundedAndKeepsBlockedKeys floods the limiter with
// one failure from each of many addresses: memory stays bounded and the
// email under attack stays blocked.
func TestSignInLimiterStaysBoundedAndKeepsBlockedKeys(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLimiter(5, 15*time.Minute, func() time.Time { return now })
	for range 5 {
		l.take("email:victim@example.com", 1)
	}
	for i := range maxBuckets + 5000 {
		l.take(fmt.Sprintf("ip:2001:db8::%x", i), 1)
	}
	if n := len(l.buckets); n > maxBuckets {
		t.Fatalf("%d buckets, bound %d", n, maxBuckets)
	}
	if blocked, _ := l.take("email:victim@example.com", 1); !blocked {
		t.Fatal("the flood evicted the blocked email's bucket")
	}
}
