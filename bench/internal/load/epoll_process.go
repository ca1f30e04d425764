package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"time"
)

// EpollJob is one RunEpoll run, as handed to another process.
type EpollJob struct {
	Addr           string // host:port
	Wire           []byte // the request, as sent
	Head           bool
	Threads, Conns int
	Duration       time.Duration
	Want           int // the status every answer must have
}

func newEpollJob(threads, conns int, d time.Duration, want int, req *http.Request) EpollJob {
	wire, head := rawRequest(req)
	return EpollJob{Addr: req.URL.Host, Wire: wire, Head: head, Threads: threads, Conns: conns, Duration: d, Want: want}
}

// RunEpollProcess is RunEpoll in a process of its own, as wrk is: cmd
// must run ServeEpollJob. The job, credentials included, goes to its
// standard input, never onto its command line.
func RunEpollProcess(ctx context.Context, cmd *exec.Cmd, threads, conns int, d time.Duration, want int, req *http.Request) (Result, error) {
	job, err := json.Marshal(newEpollJob(threads, conns, d, want, req))
	if err != nil {
		return Result{}, err
	}
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(job), &out, &errOut
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("load driver: %w: %s", err, bytes.TrimSpace(errOut.Bytes()))
	}
	var res Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return Result{}, fmt.Errorf("load driver: %w", err)
	}
	return res, nil
}

// ServeEpollJob runs the job read from r and writes its Result to w.
func ServeEpollJob(ctx context.Context, r io.Reader, w io.Writer) error {
	var j EpollJob
	if err := json.NewDecoder(r).Decode(&j); err != nil {
		return fmt.Errorf("load driver: reading the job: %w", err)
	}
	return json.NewEncoder(w).Encode(runEpoll(ctx, j))
}
