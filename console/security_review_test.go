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

// endlessBody is a multipart form whose one part never seems to end:
// size bytes in all, counted as they are read.
type endlessBody struct {
	head, tail string
	size, read int64
	mu         sync.Mutex
}

func newEndlessBody(size int64) *endlessBody {
	return &endlessBody{
		head: "--B\r\nContent-Disposition: form-data; name=\"csrf\"; filename=\"x\"\r\n\r\n",
		tail: "\r\n--B--\r\n",
		size: size,
	}
}

func (b *endlessBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read >= b.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), b.size-b.read)
	for i := range n {
		at := b.read + i
		switch {
		case at < int64(len(b.head)):
			p[i] = b.head[at]
		case at >= b.size-int64(len(b.tail)):
			p[i] = b.tail[at-(b.size-int64(len(b.tail)))]
		default:
			p[i] = 'a'
		}
	}
	b.read += n
	return int(n), nil
}

func (b *endlessBody) consumed() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// postHuge posts a 64 MiB multipart form to path and reports how much of
// it the server read.
func postHuge(t *testing.T, client *http.Client, u string, cookie *http.Cookie) int64 {
	t.Helper()
	body := newEndlessBody(64 << 20)
	req, _ := http.NewRequest("POST", u, body)
	req.ContentLength = body.size
	req.Header.Set("Content-Type", "multipart/form-data; boundary=B")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if resp, err := client.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return body.consumed()
}

// TestSignOutCannotBeMadeToReadAHugeBody: anyone can post to the sign-out
// form with any session cookie; its CSRF check parsed the whole form, so a
// 64 MiB multipart body was read (32 MiB of it into memory, the rest into
// a temporary file) before anything was refused. Signed-in forms parsed
// their body the same way, before their own size limits applied.
func TestSignOutCannotBeMadeToReadAHugeBody(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if n := postHuge(t, noRedirect, e.srv.URL+"/console/sign-out", &http.Cookie{Name: "tollgate_session", Value: "tgs_whatever"}); n > 8<<20 {
		t.Errorf("sign-out read %d MiB of a 64 MiB body", n>>20)
	}
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	if n := postHuge(t, b.c, e.srv.URL+"/console/account/request-packages", nil); n > 8<<20 {
		t.Errorf("a signed-in form read %d MiB of a 64 MiB body", n>>20)
	}
}

// TestConsoleLogCannotLeakASecretPastedIntoThePath: the console's own
// request line logged the path as it came; a token pasted where its id
// belongs ended up in the log.
func TestConsoleLogCannotLeakASecretPastedIntoThePath(t *testing.T) {
	e := newEnv(t, "http://registry.test")
	b := e.signedIn("ann@acme.example", tollgate.RoleAdmin)
	secret := tollgate.NewSecret(tollgate.TokenPrefix).Reveal()
	b.get("/console/tokens/" + secret + "/edit")
	if logs := e.logs.String(); strings.Contains(logs, secret[3:23]) || !strings.Contains(logs, "/console/tokens/[REDACTED]/edit") {
		t.Fatalf("the console log holds the secret, or not the redacted path:\n%s", logs)
	}
}
