package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/bench/internal/proc"
)

// The control proxies put tollgate's figures in context: a pull through
// any proxy on the same two CPUs pays for an extra hop. Each runs in its
// own process (this program re-executed), as tollgate does.
const (
	// controlReverseProxy is a bare httputil.ReverseProxy with tollgate's
	// transport settings and 256 KiB buffers, and nothing else: the floor
	// for an HTTP proxy that reads and writes the body in user space.
	controlReverseProxy = "reverseproxy"
	// controlTCP relays TCP connections with io.Copy between
	// *net.TCPConn, which Linux turns into splice(2): the floor for any
	// proxy at all.
	controlTCP = "tcprelay"
	// controlConstant answers every request with the same small JSON
	// token answer: the ceiling of an HTTP server on these CPUs.
	controlConstant = "constant"

	controlEnv = "BENCHPULL_CONTROL"
	// driverEnv makes this program the HEAD load driver process
	// (load.ServeEpollJob), as wrk is one for GET.
	driverEnv          = "BENCHPULL_DRIVER"
	controlListenEnv   = "BENCHPULL_CONTROL_LISTEN"
	controlUpstreamEnv = "BENCHPULL_CONTROL_UPSTREAM"
)

// startControl runs a control proxy in front of upstreamURL and returns
// it with its base URL.
func startControl(ctx context.Context, dir, mode, upstreamURL string) (*proc.Process, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), controlEnv+"="+mode, controlListenEnv+"="+addr, controlUpstreamEnv+"="+upstreamURL)
	p, err := proc.Start(ctx, cmd, addr, filepath.Join(dir, mode+".log"))
	if err != nil {
		return nil, "", fmt.Errorf("control proxy %s: %w", mode, err)
	}
	return p, "http://" + addr, nil
}

// serveControl is the control proxy process: it serves until SIGTERM.
func serveControl(mode, addr, upstreamURL string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	u, err := url.Parse(upstreamURL)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	switch mode {
	case controlReverseProxy:
		srv := &http.Server{Handler: &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = u.Host },
			Transport: &http.Transport{
				DisableCompression:  true,
				MaxIdleConnsPerHost: 128,
				ReadBufferSize:      64 << 10,
				WriteBufferSize:     64 << 10,
			},
			BufferPool: pool{},
		}}
		go func() { <-ctx.Done(); srv.Close() }()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case controlConstant:
		body := []byte(`{"token":"` + strings.Repeat("x", 600) + `","access_token":"` + strings.Repeat("x", 600) + `","expires_in":900,"issued_at":"2026-01-01T00:00:00Z"}`)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})}
		go func() { <-ctx.Done(); srv.Close() }()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case controlTCP:
		go func() { <-ctx.Done(); ln.Close() }()
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			go relay(c.(*net.TCPConn), u.Host)
		}
	}
	return fmt.Errorf("unknown control proxy %q", mode)
}

func relay(c *net.TCPConn, upstream string) {
	defer c.Close()
	uc, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	u := uc.(*net.TCPConn)
	defer u.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(u, c)
		u.CloseWrite()
	}()
	io.Copy(c, u)
	c.CloseWrite()
	wg.Wait()
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

type pool struct{}

func (pool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (pool) Put(b []byte) { buffers.Put(&b) }
