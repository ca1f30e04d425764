package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/console"
	"github.com/tollgate/tollgate/internal/password"
	"github.com/tollgate/tollgate/store/sqlite"
)

// gatedHasher holds every Verify until the gate opens, so that a test can
// line up concurrent sign-ins inside the password check.
type gatedHasher struct {
	verifying atomic.Int32
	gate      chan struct{}
}

func (h *gatedHasher) Hash(pw string) (string, error) { return password.Fast.Hash(pw) }

func (h *gatedHasher) Verify(encoded, pw string) (bool, error) {
	h.verifying.Add(1)
	<-h.gate
	return password.Fast.Verify(encoded, pw)
}

// TestConcurrentSignInsCannotOutrunTheLimit sends a burst of wrong
// passwords for one email at once. The limit (5 per email per window) must
// bound how many of them reach the password check: counting a failure only
// after the (slow) check let every attempt of the burst pass the limit.
func TestConcurrentSignInsCannotOutrunTheLimit(t *testing.T) {
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
	h := &gatedHasher{gate: make(chan struct{})}
	opened := false
	open := func() {
		if !opened {
			opened = true
			close(h.gate)
		}
	}
	t.Cleanup(open)
	svc := tollgate.NewService(db, keys)
	users := &tollgate.Users{Store: db, Keys: keys, Hasher: h, Now: time.Now}
	if _, _, _, err := svc.CreateAccount(ctx, "operator", "acme"); err != nil {
		t.Fatal(err)
	}
	_, link, err := users.CreateUser(ctx, "operator", tollgate.UserCreate{Account: "acme", Email: "ann@acme.example", Role: tollgate.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.SetPassword(ctx, link.Reveal(), goodPassword); err != nil {
		t.Fatal(err)
	}
	c := &console.Console{Service: svc, Users: users, PublicURL: "http://registry.test"}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/console/sign-in")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(body)
	var pre *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "tollgate_csrf" {
			pre = ck
		}
	}
	if m == nil || pre == nil {
		t.Fatalf("sign-in page without a CSRF token or cookie")
	}
	form := url.Values{"csrf": {string(m[1])}, "email": {"ann@acme.example"}, "password": {"not the password"}}.Encode()

	const burst = 30
	var returned atomic.Int32
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			defer returned.Add(1)
			req, _ := http.NewRequest("POST", srv.URL+"/console/sign-in", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(pre)
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	// Every attempt either came back or waits in the password check.
	deadline := time.Now().Add(10 * time.Second)
	for returned.Load()+h.verifying.Load() < burst && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	checked := h.verifying.Load()
	open()
	wg.Wait()
	if checked > 5 {
		t.Fatalf("%d of %d concurrent wrong passwords reached the password check; the limit is 5", checked, burst)
	}
}
