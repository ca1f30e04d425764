package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/internal/faultnet"
)

// The faults, in the order of a shuffled round: every round has each.
var faults = []string{"none", "redis-kill", "redis-blackhole", "redis-cut", "store-cut", "writer-killed", "writer-stopped", "restart", "replica-stopped"}

// The narrowing changes, drawn in shuffled rounds of their own: every
// round has each. revoke, expire, expiring, pause and restrict narrow
// one token of the target account; suspend and de-entitle, the account.
//
//	revoke      the token revoked
//	suspend     the account suspended
//	de-entitle  the account's subscription set to images it does not pull
//	expire      the token's expiry moved into the past ("now")
//	expiring    the token's expiry moved to 2-3s ahead: it runs out with
//	            nothing written at that moment (checked from the expiry)
//	pause       the token paused
//	restrict    the token restricted to images it does not pull
var kinds = []string{"revoke", "suspend", "de-entitle", "expire", "expiring", "pause", "restrict"}

// window is a time a fault made the store or Redis unusable for some
// replicas.
type window struct {
	kind       string // for grouping: what without the replica
	what       string // redis killed, redis link of replica 2: reset, ...
	replicas   []int  // nil: all
	start, end time.Time
	// deps: the store or Redis was unusable (else only the replica's own
	// process was: stopped, restarting).
	deps bool
}

func (w *window) affects(r int) bool {
	if w.replicas == nil {
		return true
	}
	for _, i := range w.replicas {
		if i == r {
			return true
		}
	}
	return false
}

// change is one narrowing change and when it was acknowledged.
type change struct {
	n        int
	what     string // one of kinds
	fault    string
	via      int
	target   *target
	narrowed []*cred
	// effective is when the change took hold: the ack, or for expiring
	// the expiry if that came later. Requests are judged from it.
	sent, ack, effective time.Time
	expires              time.Time // expiring: the new expiry
	acked                bool
	err                  error
	denyDetail           string
}

type kill struct {
	replica int
	at      time.Time
}

type schedule struct {
	env *env
	rec *recorder
	rng *rand.Rand
	out io.Writer

	mu      sync.Mutex
	windows []*window
	changes []*change
	kills   []kill
	next    int      // next target
	kinds   []string // the rest of the current round of change kinds
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (s *schedule) run(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	var round []string
	for time.Now().Before(end) && s.next < len(s.env.targets) {
		if len(round) == 0 {
			round = append([]string(nil), faults...)
			s.rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		f := round[0]
		round = round[1:]
		if err := s.episode(ctx, f); err != nil {
			return fmt.Errorf("fault %s: %w", f, err)
		}
	}
	return nil
}

func (s *schedule) open(kind, what string, replicas []int) *window {
	return s.openWindow(kind, what, replicas, true)
}

// openProcess opens a window in which replica r's process was down.
func (s *schedule) openProcess(kind string, r int) *window {
	return s.openWindow(kind, fmt.Sprintf("%s (r%d)", kind, r), []int{r}, false)
}

func (s *schedule) openWindow(kind, what string, replicas []int, deps bool) *window {
	w := &window{kind: kind, what: what, replicas: replicas, start: time.Now(), deps: deps}
	s.mu.Lock()
	s.windows = append(s.windows, w)
	s.mu.Unlock()
	return w
}

func (s *schedule) close(w *window) {
	s.mu.Lock()
	w.end = time.Now()
	s.mu.Unlock()
}

func (s *schedule) mode() faultnet.Mode {
	if s.rng.IntN(2) == 0 {
		return faultnet.Reset
	}
	return faultnet.Blackhole
}

func (s *schedule) episode(ctx context.Context, f string) error {
	e := s.env
	r := s.rng.IntN(len(e.reps))
	rep := e.reps[r]
	switch f {
	case "none":
		s.change(ctx, f, r)
		return sleep(ctx, 3*time.Second)

	case "redis-kill":
		w := s.open("redis killed", "redis killed", nil)
		e.killRedis()
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		s.change(ctx, f, r)
		if err := sleep(ctx, 2500*time.Millisecond); err != nil {
			return err
		}
		if err := e.startRedis(ctx); err != nil {
			return err
		}
		s.close(w)
		return sleep(ctx, 1500*time.Millisecond)

	case "redis-blackhole", "redis-cut":
		m := faultnet.Blackhole
		var cut []*replica
		var which []int
		what := "redis blackholed for every replica"
		if f == "redis-cut" {
			m = s.mode()
			cut, which = []*replica{rep}, []int{r}
			what = fmt.Sprintf("redis link of replica %d: %v", r, m)
		} else {
			cut = e.reps
		}
		w := s.open(strings.Replace(what, fmt.Sprintf("replica %d", r), "one replica", 1), what, which)
		for _, c := range cut {
			c.redisLink.Set(m)
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		s.change(ctx, f, r) // the writer is cut from Redis
		if err := sleep(ctx, 2500*time.Millisecond); err != nil {
			return err
		}
		for _, c := range cut {
			c.redisLink.Set(faultnet.Up)
		}
		s.close(w)
		return sleep(ctx, 1500*time.Millisecond)

	case "store-cut":
		// Revoked before the outage: must stay revoked through it.
		s.change(ctx, f, r)
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
		m := s.mode()
		w := s.open("store link of every replica: "+m.String(), "store link of every replica: "+m.String(), nil)
		for _, c := range e.reps {
			c.pgLk.Set(m)
		}
		if err := sleep(ctx, 3*time.Second); err != nil {
			return err
		}
		for _, c := range e.reps {
			c.pgLk.Set(faultnet.Up)
		}
		s.close(w)
		return sleep(ctx, 2*time.Second)

	case "writer-killed", "writer-stopped":
		how := map[string]string{"writer-killed": "SIGKILL", "writer-stopped": "SIGSTOP"}[f]
		w := s.open("redis killed, writer "+how, fmt.Sprintf("redis killed, writer r%d %s", r, how), nil)
		e.killRedis()
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
		s.change(ctx, f, r)
		p := rep.process()
		rep.setDown(true)
		pw := s.openProcess("writer "+how, r)
		if f == "writer-killed" {
			s.mu.Lock()
			s.kills = append(s.kills, kill{replica: r, at: time.Now()})
			s.mu.Unlock()
			p.Signal(syscall.SIGKILL)
			p.Wait()
		} else {
			p.Signal(syscall.SIGSTOP)
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
		if err := e.startRedis(ctx); err != nil {
			return err
		}
		s.close(w)
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		if f == "writer-killed" {
			if err := rep.start(ctx, e.bin); err != nil {
				return err
			}
		} else {
			p.Signal(syscall.SIGCONT)
			rep.setDown(false)
		}
		s.close(pw)
		return sleep(ctx, 1500*time.Millisecond)

	case "replica-stopped":
		// A replica paused (SIGSTOP: a VM or container freeze) while
		// another revokes: when it resumes, requests that waited in its
		// accept queue must not be judged by what it cached before.
		rep.setDown(true)
		pw := s.openProcess("replica stopped", r)
		p := rep.process()
		p.Signal(syscall.SIGSTOP)
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
		ch := s.change(ctx, f, (r+1)%len(e.reps))
		if err := sleep(ctx, 1200*time.Millisecond); err != nil {
			return err
		}
		// Requests that arrive while it is stopped, well after the ack:
		// answered once it resumes.
		var wg sync.WaitGroup
		for _, c := range ch.narrowed {
			for _, kind := range []string{"token", "pull"} {
				wg.Go(func() { e.send(ctx, s.rec, rep, c, kind) })
			}
		}
		if err := sleep(ctx, 800*time.Millisecond); err != nil {
			return err
		}
		p.Signal(syscall.SIGCONT)
		s.close(pw)
		wg.Wait()
		rep.setDown(false)
		return sleep(ctx, 1500*time.Millisecond)

	case "restart":
		rep.setDown(true)
		pw := s.openProcess("replica restarted", r)
		p := rep.process()
		stopped := make(chan error, 1)
		go func() { stopped <- p.Stop() }()
		s.change(ctx, f, (r+1)%len(e.reps))
		if err := <-stopped; err != nil {
			return fmt.Errorf("replica %d: %w", r, err)
		}
		if err := rep.start(ctx, e.bin); err != nil {
			return err
		}
		s.close(pw)
		return sleep(ctx, 1500*time.Millisecond)
	}
	return fmt.Errorf("unknown fault %q", f)
}

// change narrows the next target through replica via (another live one
// if via fails), and records when it was acknowledged.
func (s *schedule) change(ctx context.Context, fault string, via int) *change {
	e := s.env
	t := e.targets[s.next]
	c := &change{n: s.next + 1, fault: fault, via: via, target: t}
	s.next++
	if len(s.kinds) == 0 {
		s.kinds = append([]string(nil), kinds...)
		s.rng.Shuffle(len(s.kinds), func(i, j int) { s.kinds[i], s.kinds[j] = s.kinds[j], s.kinds[i] })
	}
	c.what, s.kinds = s.kinds[0], s.kinds[1:]
	c.narrowed = t.creds[:1]
	if c.what == "suspend" || c.what == "de-entitle" {
		c.narrowed = t.creds
	}
	e.current.Store(t)
	c.sent = time.Now()
	for _, cr := range c.narrowed {
		cr.narrowedAt.Store(c.sent.UnixNano())
	}
	if c.what == "expiring" {
		// A whole second 2-3s ahead: the API takes RFC 3339.
		c.expires = c.sent.Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	}
	id := t.creds[0].tokenID
	for attempt := 0; attempt < len(e.reps); attempt++ {
		rep := e.reps[(via+attempt)%len(e.reps)]
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		switch c.what {
		case "revoke":
			_, err = rep.api.RevokeToken(actx, id)
		case "suspend":
			_, err = rep.api.SuspendAccount(actx, t.account)
		case "de-entitle":
			_, err = rep.api.SetSubscription(actx, t.account, []string{"other/**"}, nil)
		case "expire":
			now := "now"
			_, err = rep.api.EditToken(actx, id, api.EditTokenRequest{ExpiresAt: &now})
		case "expiring":
			at := c.expires.UTC().Format(time.RFC3339)
			_, err = rep.api.EditToken(actx, id, api.EditTokenRequest{ExpiresAt: &at})
		case "pause":
			_, err = rep.api.PauseToken(actx, id)
		case "restrict":
			_, err = rep.api.EditToken(actx, id, api.EditTokenRequest{RestrictImages: &[]string{"other/**"}})
		default:
			err = fmt.Errorf("unknown change %q", c.what)
		}
		cancel()
		if err == nil {
			c.ack, c.acked, c.via = time.Now(), true, rep.i
			c.effective = c.ack
			if c.expires.After(c.ack) {
				c.effective = c.expires
			}
			break
		}
		c.err = err
	}
	s.mu.Lock()
	s.changes = append(s.changes, c)
	s.mu.Unlock()
	return c
}
