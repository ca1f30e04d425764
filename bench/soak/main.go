// Command soak is the fault soak of issue #17 (`scripts/soak`): three real
// `tollgate serve` replicas on one PostgreSQL schema and their own
// redis-server, each reaching both through a link it can break
// (internal/faultnet: reset or blackhole), an in-process upstream
// registry, steady authorized pulls (HEAD manifest with an earlier JWT)
// and /token requests from every replica, and, one after another, faults
// drawn from a seed with a narrowing change through one replica's API in
// each (drawn in shuffled rounds too: revoke, pause or restrict a token,
// move its expiry into the past or 2-3s ahead, suspend or de-entitle an
// account; see kinds):
//
//	none            the change alone (Redis and store up)
//	redis-kill      redis-server killed; the change; Redis restarted
//	redis-cut       the writer's Redis link reset or blackholed; the change through it
//	store-cut       the change; then every replica's PostgreSQL link reset or blackholed
//	writer-killed   Redis killed; the change; the writer SIGKILLed; Redis back; writer restarted
//	writer-stopped  Redis killed; the change; the writer SIGSTOPped; Redis back; SIGCONT
//	restart         a replica stopped (SIGTERM) and started again; the change through another
//
// Every request is recorded (start, end, replica, credential, answer) and
// checked: no request started later than the change's acknowledgement
// (for an expiry moved ahead, the expiry if later) + 1s is let in with a
// credential it narrowed; no random credential is
// ever let in; no valid credential is refused while the store and Redis
// are up for that replica; every answered request has its access-log
// line. It prints each change's time to denial everywhere (and per
// change kind and per fault: median, worst), /token
// latency by condition, and `N passed, M failed`; it exits 1 on a
// failure. Loopback only; load is bounded (-workers, a pause between
// requests).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	duration time.Duration
	seed     uint64
	workers  int
	tollgate string
	postgres string
	keep     bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	failed, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	var o options
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "how long faults and load go on")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the fault schedule (0: random, printed)")
	fs.IntVar(&o.workers, "workers", 2, "request loops per replica (each pauses 2ms between requests)")
	fs.StringVar(&o.tollgate, "tollgate", "", "use this tollgate binary instead of building ./cmd/tollgate")
	fs.StringVar(&o.postgres, "postgres", "", "PostgreSQL DSN of a database to create a schema in (default: TOLLGATE_TEST_POSTGRES_DSN, else database test on 127.0.0.1:5432)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (logs, configs) and print it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.duration < 10*time.Second {
		return o, errors.New("-duration: at least 10s (one fault takes about 6s)")
	}
	if o.workers < 1 || o.workers > 16 {
		return o, errors.New("-workers: between 1 and 16")
	}
	if o.seed == 0 {
		o.seed = rand.Uint64N(1 << 20)
	}
	return o, nil
}

func run(ctx context.Context, o options, out io.Writer) (failed int, err error) {
	fmt.Fprintf(out, "soak: %v, seed %d, %d request loops per replica (rerun: scripts/soak -duration %v -seed %d)\n", o.duration, o.seed, o.workers, o.duration, o.seed)
	env, err := startEnv(ctx, o, out)
	if env != nil {
		defer func() { err = errors.Join(err, env.close()) }()
	}
	if err != nil {
		return 0, err
	}
	if err := env.setup(ctx, int(o.duration/(3*time.Second))+2); err != nil { // the shortest fault takes 3s
		return 0, err
	}
	rec := &recorder{}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := env.drive(loadCtx, rec, o.workers)
	time.Sleep(time.Second) // every replica warm before the first fault
	sched := &schedule{env: env, rec: rec, rng: rand.New(rand.NewPCG(o.seed, o.seed^0x5eed)), out: out}
	serr := sched.run(ctx, o.duration)
	time.Sleep(time.Second) // the last requests after the last recovery
	stopLoad()
	<-loadDone
	if serr != nil {
		return 0, serr
	}
	stopErr := env.stopReplicas()
	logs, err := env.accessLogs()
	if err != nil {
		return 0, err
	}
	failed = report(out, env, sched, rec.all(), logs, stopErr)
	if failed > 0 {
		// Kept for whoever looks into it: the replicas' JSON logs (every
		// request by its X-Request-Id), configs, redis.log.
		env.keep = true
		fmt.Fprintf(out, "logs and configs kept in %s\n", env.dir)
	}
	return failed, nil
}
