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
	"github.com/tollgate/tollgate/internal/ratelimit"
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
	ipBuckets, ipBytes := c.IPLimiter.Stats()
	emailBuckets, emailBytes := c.EmailLimiter.Stats()
	if ipBuckets < 1 || emailBuckets < 2 {
		t.Fatalf("the sign-ins were not counted: %d address and %d e-mail buckets", ipBuckets, emailBuckets)
	}
	if size := ipBytes + emailBytes; size > 10*300+100 {
		t.Fatalf("10 failed sign-ins keep %d bytes of keys in the limiter", size)
	}
}

// TestSignInLimiterStaysBoundedAndKeepsBlockedKeys floods the sign-in
// limiter with one failure from each of many addresses: memory stays
// bounded and the e-mail under attack stays blocked. (The limiter is
// internal/ratelimit's, whose TestFloodCannotEvictABlockedBucket holds the
// same for every user of it.)
func TestSignInLimiterStaysBoundedAndKeepsBlockedKeys(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := &Console{}
	c.SignInLimit = 5
	ipOpts, emailOpts := SignInLimiterOptions(5, 15*time.Minute)
	ipOpts.Now, emailOpts.Now = func() time.Time { return now }, func() time.Time { return now }
	c.IPLimiter, c.EmailLimiter = ratelimit.New(ipOpts), ratelimit.New(emailOpts)
	ctx := context.Background()
	for range 5 {
		c.EmailLimiter.Take(ctx, "console-email:victim@example.com")
	}
	for i := range 120_000 {
		c.EmailLimiter.Take(ctx, fmt.Sprintf("console-ip:2001:db8::%x", i))
	}
	if n, _ := c.EmailLimiter.Stats(); n > 100_000 {
		t.Fatalf("%d buckets, bound 100000", n)
	}
	if blocked, _ := c.EmailLimiter.Take(ctx, "console-email:victim@example.com"); !blocked {
		t.Fatal("the flood evicted the blocked email's bucket")
	}
}
