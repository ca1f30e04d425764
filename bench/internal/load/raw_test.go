package load

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The raw drivers read whole answers on kept-alive connections: HEAD
// answers that announce a body (what wrk cannot read), GET bodies, and
// they count wrong statuses and unreadable answers as errors.
func TestRunRaw(t *testing.T) {
	t.Run("goroutines", func(t *testing.T) { testRawDriver(t, RunRaw) })
	t.Run("epoll", func(t *testing.T) {
		testRawDriver(t, func(ctx context.Context, conns int, d time.Duration, want int, req *http.Request) Result {
			return RunEpoll(ctx, 2, conns, d, want, req)
		})
	})
	t.Run("epoll process", func(t *testing.T) {
		testRawDriver(t, func(ctx context.Context, conns int, d time.Duration, want int, req *http.Request) Result {
			cmd := exec.CommandContext(ctx, os.Args[0])
			cmd.Env = append(os.Environ(), "LOAD_TEST_EPOLL_JOB=1")
			res, err := RunEpollProcess(ctx, cmd, 2, conns, d, want, req)
			if err != nil {
				t.Fatal(err)
			}
			return res
		})
	})
}

// TestMain is also the driver process of TestRunRaw/epoll_process.
func TestMain(m *testing.M) {
	if os.Getenv("LOAD_TEST_EPOLL_JOB") != "" {
		if err := ServeEpollJob(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testRawDriver(t *testing.T, run func(ctx context.Context, conns int, d time.Duration, want int, req *http.Request) Result) {
	var heads, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/manifest":
			if r.Method == http.MethodHead && r.Header.Get("Accept") == "application/json" {
				heads.Add(1)
			}
			w.Header().Set("Content-Length", "5000")
			if r.Method != http.MethodHead {
				w.Write([]byte(strings.Repeat("m", 5000)))
			}
		case "/refused":
			http.Error(w, "no", http.StatusForbidden)
		case "/chunked":
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			w.Write([]byte("b"))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	req := func(method, path string) *http.Request {
		r, _ := http.NewRequest(method, srv.URL+path, nil)
		r.Header.Set("Accept", "application/json")
		return r
	}
	ctx := context.Background()

	res := run(ctx, 4, 500*time.Millisecond, http.StatusOK, req(http.MethodHead, "/manifest"))
	if res.Requests < 10 || res.Errors != 0 || res.P99 < res.P50 || res.P50 <= 0 {
		t.Errorf("HEAD: %+v", res)
	}
	if heads.Load() < int64(res.Requests) {
		t.Errorf("the server saw %d HEADs with the header for %d requests", heads.Load(), res.Requests)
	}
	if c := conns.Load(); c != 4 {
		t.Errorf("%d connections for 4 kept alive", c)
	}
	res = run(ctx, 2, 300*time.Millisecond, http.StatusOK, req(http.MethodGet, "/manifest"))
	if res.Requests < 10 || res.Errors != 0 {
		t.Errorf("GET with a body: %+v", res)
	}
	res = run(ctx, 2, 300*time.Millisecond, http.StatusOK, req(http.MethodGet, "/refused"))
	if res.Requests == 0 || res.Errors != res.Requests || res.FirstError != "status 403" {
		t.Errorf("refused: %+v", res)
	}
	res = run(ctx, 1, 300*time.Millisecond, http.StatusOK, req(http.MethodGet, "/chunked"))
	if res.Requests == 0 || res.Errors != res.Requests {
		t.Errorf("chunked: %+v", res)
	}
}

// At a fixed offered rate the driver never sends ahead of its schedule
// (the closed-loop driver would send thousands here).
func TestRunRawAtKeepsToItsSchedule(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	const rate, conns = 200.0, 4
	d := 500 * time.Millisecond
	res := RunRawAt(context.Background(), conns, d, rate, http.StatusOK, req)
	if limit := int(rate*d.Seconds()) + conns; res.Requests > limit || res.Requests < 10 || res.Errors != 0 {
		t.Errorf("%d requests (%d errors) at %v/s for %v: want at most %d", res.Requests, res.Errors, rate, d, limit)
	}
}
