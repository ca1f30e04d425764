//go:build !linux

package load

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"time"
)

// RunEpoll is RunRaw where there is no epoll.
func RunEpoll(ctx context.Context, threads, conns int, d time.Duration, want int, req *http.Request) Result {
	return RunRaw(ctx, conns, d, want, req)
}

func runEpoll(ctx context.Context, j EpollJob) Result {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(j.Wire)))
	if err != nil {
		return Result{Requests: 1, Errors: 1, FirstError: err.Error()}
	}
	req.URL.Scheme, req.URL.Host = "http", j.Addr
	return RunRaw(ctx, j.Conns, j.Duration, j.Want, req)
}
