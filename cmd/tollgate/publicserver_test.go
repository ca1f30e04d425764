package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/dev/upstream"
)

// shortTimeouts makes the public server's client timeouts short enough
// for tests to watch them fire.
const testBodyTimeout, testHeaderTimeout = 300 * time.Millisecond, 400 * time.Millisecond

func shortTimeouts(c *config.Config) {
	c.Limits.BodyTimeout = config.Duration(testBodyTimeout)
	c.Limits.HeaderTimeout = config.Duration(testHeaderTimeout)
}

// waitClosed reads (and drops any response) until the server closes
// conn, and fails if it is still open after limit.
func waitClosed(t *testing.T, conn net.Conn, limit time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %v", limit)
	}
}

func dial(t *testing.T, host string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSlowClientsCannotHoldConnections: a client that sends headers and
// then withholds, or trickles, the body it declared — or never finishes
// its headers — is disconnected within the timeouts, on every route,
// without credentials. Before, nothing bounded the body: one socket per
// request held a goroutine and a connection for ever.
func TestSlowClientsCannotHoldConnections(t *testing.T) {
	e := newOpsEnv(t, shortTimeouts)
	limit := 10 * testBodyTimeout // generous: the machine is shared
	routes := []string{
		"POST /token",
		"GET /token",
		"POST /v2/",
		"PUT /v2/demo/hello/blobs/uploads/",
		"POST /api/v1/accounts",
		"POST /console/sign-in",
		"POST /apk/os/x86_64/APKINDEX.tar.gz",
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt, " ")
		head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n", method, path, e.host)
		t.Run(rt+"/body declared, never sent", func(t *testing.T) {
			t.Parallel()
			conn := dial(t, e.host)
			io.WriteString(conn, head+"Content-Length: 100\r\n\r\n")
			waitClosed(t, conn, limit)
		})
		t.Run(rt+"/chunked body, never sent", func(t *testing.T) {
			t.Parallel()
			conn := dial(t, e.host)
			io.WriteString(conn, head+"Transfer-Encoding: chunked\r\n\r\n")
			waitClosed(t, conn, limit)
		})
		t.Run(rt+"/body trickled", func(t *testing.T) {
			t.Parallel()
			conn := dial(t, e.host)
			io.WriteString(conn, head+"Content-Length: 100000\r\n\r\n")
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := io.WriteString(conn, "a"); err != nil {
						return
					}
					select {
					case <-time.After(testBodyTimeout / 10):
					case <-t.Context().Done():
						return
					}
				}
			}()
			waitClosed(t, conn, limit)
			conn.Close()
			<-done
		})
		t.Run(rt+"/headers never finished", func(t *testing.T) {
			t.Parallel()
			conn := dial(t, e.host)
			io.WriteString(conn, head)
			waitClosed(t, conn, 10*testHeaderTimeout)
		})
	}
}

// TestBodyDeadlineDoesNotOutliveTheBody: a keep-alive connection that
// sent a body in time goes on serving requests after the body timeout.
func TestBodyDeadlineDoesNotOutliveTheBody(t *testing.T) {
	e := newOpsEnv(t, shortTimeouts)
	conn := dial(t, e.host)
	br := bufio.NewReader(conn)
	form := "grant_type=password&username=u&password=tg_nope&scope="
	fmt.Fprintf(conn, "POST /token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", e.host, len(form), form)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Close {
		t.Fatalf("POST /token with bad credentials: %d (close %v), want 401 on a kept connection", resp.StatusCode, resp.Close)
	}
	time.Sleep(2 * testBodyTimeout)
	fmt.Fprintf(conn, "GET /v2/ HTTP/1.1\r\nHost: %s\r\n\r\n", e.host)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("second request on the connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v2/: %d, want 401", resp.StatusCode)
	}
}

// TestResponseAfterABodyIsNotCutByTheBodyTimeout: a handler that reads
// the body and then streams for longer than the body timeout finishes;
// the deadline ends with the body.
func TestResponseAfterABodyIsNotCutByTheBodyTimeout(t *testing.T) {
	const d = 100 * time.Millisecond
	h := bodyDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for range 8 {
			io.WriteString(w, strings.Repeat("x", 1000))
			http.NewResponseController(w).Flush()
			select {
			case <-time.After(d / 2):
			case <-r.Context().Done():
				return
			}
		}
	}), d)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	resp, err := http.Post("http://"+ln.Addr().String(), "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != 8000 {
		t.Fatalf("got %d of 8000 bytes: %v", n, err)
	}
}

// TestSlowBlobDownloadOutlastsTheBodyTimeout: the body timeout bounds
// what a client sends, never a pull. A blob read slowly, for many times
// the timeout, arrives whole — also on a request that declared a body.
func TestSlowBlobDownloadOutlastsTheBodyTimeout(t *testing.T) {
	e := newOpsEnv(t, shortTimeouts)
	const size = 4 << 20
	digest, err := upstream.PushBlob(context.Background(), e.up, "demo/big", size)
	if err != nil {
		t.Fatal(err)
	}
	secret := e.demoToken(t)
	q := url.Values{"service": {e.m.Config.Service}, "scope": {"repository:demo/big:pull"}}
	code, body, _ := get(t, "http://"+e.host+"/token?"+q.Encode(), map[string]string{"Authorization": "Basic " + basic("u", secret)})
	var tr struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tr); code != 200 || err != nil {
		t.Fatalf("/token: %d %s", code, body)
	}
	// A small receive buffer keeps the server writing (its handler
	// running) while the client reads slowly, past the body timeout.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(16 << 10)
		}
		return c, err
	}}}
	for _, withBody := range []bool{false, true} {
		t.Run(fmt.Sprintf("declares a body: %v", withBody), func(t *testing.T) {
			var reqBody io.Reader
			if withBody {
				reqBody = strings.NewReader("{}")
			}
			req, _ := http.NewRequest("GET", "http://"+e.host+"/v2/demo/big/blobs/"+digest, reqBody)
			req.Header.Set("Authorization", "Bearer "+tr.Token)
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("blob GET: %v %v", resp, err)
			}
			defer resp.Body.Close()
			start := time.Now()
			var n int64
			buf := make([]byte, 64<<10)
			for {
				m, err := resp.Body.Read(buf)
				n += int64(m)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d of %d bytes (%v): %v", n, size, time.Since(start), err)
				}
				time.Sleep(testBodyTimeout / 16) // 64 reads or more: 4 body timeouts or more
			}
			if n != size {
				t.Fatalf("got %d of %d bytes", n, size)
			}
		})
	}
}

// TestSecretsInPathsNeverReachTheLog: whatever route a secret is pasted
// into, wrapped in whatever punctuation or encoding, no log line of the
// whole server holds it.
func TestSecretsInPathsNeverReachTheLog(t *testing.T) {
	e := newOpsEnv(t, nil)
	routes := []string{"/token/%s", "/v2/demo/%s/manifests/latest", "/apt/os/dists/%s/InRelease", "/apk/os/%s/APKINDEX.tar.gz", "/console/tokens/%s",
		"/api/v1/tokens/%s", "/api/v1/accounts/%s/tokens"}
	var bodies []string
	for _, prefix := range []string{tollgate.TokenPrefix, tollgate.AccountKeyPrefix, tollgate.PasswordLinkPrefix, tollgate.SessionPrefix} {
		s := tollgate.NewSecret(prefix).Reveal()
		bodies = append(bodies, s[len(prefix):len(prefix)+12])
		for _, route := range routes {
			for _, seg := range []string{s, "x" + s, url.PathEscape(`Bearer "` + s + `"`), "password=" + s, url.PathEscape(url.PathEscape(s[:3])) + s[3:], s[:len(prefix)+10]} {
				resp, err := http.Get("http://" + e.host + fmt.Sprintf(route, seg))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "[REDACTED]") {
		t.Fatalf("no request was logged:\n%s", logs)
	}
	for _, b := range bodies {
		if strings.Contains(logs, b) {
			t.Fatalf("a secret is in the log:\n%s", logs)
		}
	}
}

// TestSlowBodiesOverHTTP2AreCutToo: with tls set, clients speak HTTP/2;
// a stream whose body never comes gets its answer (and its handler ends)
// within the body timeout.
func TestSlowBodiesOverHTTP2AreCutToo(t *testing.T) {
	ca, err := upstream.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	_, certFile, keyFile, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newOpsEnv(t, func(c *config.Config) {
		shortTimeouts(c)
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.PublicURL = strings.Replace(c.PublicURL, "http:", "https:", 1)
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}}
	t.Cleanup(client.CloseIdleConnections)
	for _, length := range []int64{-1, 100} {
		t.Run(fmt.Sprintf("Content-Length %d", length), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*testBodyTimeout)
			defer cancel()
			body, w := io.Pipe()
			defer w.Close()
			req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+e.host+"/token", body)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.ContentLength = length
			resp, err := client.Do(req)
			if ctx.Err() != nil {
				t.Fatalf("no answer after %v: %v", 10*testBodyTimeout, err)
			}
			if err == nil {
				resp.Body.Close()
				if resp.ProtoMajor != 2 {
					t.Fatalf("spoke %s, want HTTP/2", resp.Proto)
				}
			}
		})
	}
}
