package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// bound is how long after its acknowledgement a change may still let a
// request in (the goal, under any single fault with the store up).
const bound = time.Second

// grace is how long after a fault ends a replica's store and Redis count
// as not yet up again (connections re-dialled, the log read once more).
const grace = 2 * time.Second

type checks struct {
	out            io.Writer
	passed, failed int
}

func (c *checks) check(ok bool, format string, args ...any) {
	mark := "ok  "
	if ok {
		c.passed++
	} else {
		c.failed++
		mark = "FAIL"
	}
	fmt.Fprintf(c.out, "%s %s\n", mark, fmt.Sprintf(format, args...))
}

// report checks the recorded requests and prints what happened; it
// returns the number of failed checks.
func report(out io.Writer, e *env, s *schedule, reqs []*request, logs []map[string]bool, stopErr error) int {
	c := &checks{out: out}
	slices.SortFunc(reqs, func(a, b *request) int { return a.start.Compare(b.start) })
	answered, passes, transport := 0, 0, 0
	for _, q := range reqs {
		if q.status == 0 {
			transport++
			continue
		}
		answered++
		if q.allowed {
			passes++
		}
	}
	elapsed := time.Duration(0)
	if len(reqs) > 0 {
		elapsed = reqs[len(reqs)-1].end.Sub(reqs[0].start)
	}
	fmt.Fprintf(out, "\n%d requests in %v (%d answered, %d let in, %d without an answer: replica killed, stopped or restarting, or a client timeout)\n",
		len(reqs), elapsed.Round(time.Second), answered, passes, transport)

	// Per change: when it was denied everywhere, and nothing later.
	fmt.Fprintf(out, "\nchanges (ack = the API's answer; judged from the ack, or for expiring from the expiry if later; last pass = the latest start of a request it let in, per replica):\n")
	acked := 0
	byKind, byFault := map[string]*kindFigures{}, map[string]*kindFigures{}
	for _, ch := range s.changes {
		if !ch.acked {
			fmt.Fprintf(out, "  #%-3d %-10s %-15s not acknowledged: %v\n", ch.n, ch.what, ch.fault, ch.err)
			continue
		}
		acked++
		last := make([]time.Duration, len(e.reps))
		late := 0
		var firstLate *request
		for _, q := range reqs {
			if !q.allowed || !slices.Contains(ch.narrowed, q.cred) || q.start.Before(ch.effective) {
				continue
			}
			d := q.start.Sub(ch.effective)
			last[q.replica] = max(last[q.replica], d)
			if d > bound {
				late++
				if firstLate == nil {
					firstLate = q
				}
			}
		}
		var parts []string
		worst := time.Duration(0)
		for i, d := range last {
			parts = append(parts, fmt.Sprintf("r%d %v", i, d.Round(time.Millisecond)))
			worst = max(worst, d)
		}
		from := "the ack"
		if ch.effective.After(ch.ack) {
			from = fmt.Sprintf("the expiry (%v after the ack)", ch.effective.Sub(ch.ack).Round(time.Millisecond))
		}
		fmt.Fprintf(out, "  #%-3d %-10s %-15s via r%d, acked in %4dms; denied everywhere %v after %s (%s)\n",
			ch.n, ch.what, ch.fault, ch.via, ch.ack.Sub(ch.sent).Milliseconds(), worst.Round(time.Millisecond), from, strings.Join(parts, ", "))
		detail := ""
		if firstLate != nil {
			detail = fmt.Sprintf(": first %s on r%d started %v after %s, answered %d", firstLate.kind, firstLate.replica,
				firstLate.start.Sub(ch.effective).Round(time.Millisecond), from, firstLate.status)
		}
		c.check(late == 0, "change #%d (%s during %s): %d requests let in later than %s + %v%s", ch.n, ch.what, ch.fault, late, from, bound, detail)
		for _, g := range []struct {
			by  map[string]*kindFigures
			key string
		}{{byKind, ch.what}, {byFault, ch.fault}} {
			by, key := g.by, g.key
			k := by[key]
			if k == nil {
				k = &kindFigures{}
				by[key] = k
			}
			k.denied = append(k.denied, worst)
			k.acked = append(k.acked, ch.ack.Sub(ch.sent))
			k.late += late
		}
	}
	c.check(acked == len(s.changes) && acked > 0, "%d of %d changes acknowledged", acked, len(s.changes))
	printGroups(out, "by change kind (denied everywhere: after the ack, or for expiring after the expiry)", kinds, byKind)
	printGroups(out, "by fault during the change", faults, byFault)

	// Random credentials: never.
	randomIn := 0
	for _, q := range reqs {
		if q.cred.random && q.allowed {
			randomIn++
		}
	}
	c.check(randomIn == 0, "unknown or forged credentials let in: %d", randomIn)

	// Valid credentials refused while the store and Redis were up.
	refused, refusedInFault := 0, 0
	var firstRefused *request
	for _, q := range reqs {
		if q.cred.random || q.status == 0 || q.allowed {
			continue
		}
		if at := q.cred.narrowedAt.Load(); at != 0 && !q.end.Before(time.Unix(0, at)) {
			continue
		}
		if s.faulted(q) {
			refusedInFault++
			continue
		}
		refused++
		if firstRefused == nil {
			firstRefused = q
		}
	}
	detail := ""
	if firstRefused != nil {
		detail = fmt.Sprintf(" (first: %s %s on r%d answered %d at +%v)", firstRefused.kind, firstRefused.cred.name, firstRefused.replica,
			firstRefused.status, firstRefused.start.Sub(reqs[0].start).Round(time.Millisecond))
	}
	c.check(refused == 0, "valid credentials refused while the store and Redis were up: %d%s", refused, detail)
	fmt.Fprintf(out, "     (refused during a store or Redis fault or within %v after it: %d; a store outage refuses tokens not confirmed within max_stale)\n", grace, refusedInFault)

	// Every answered request has its access-log line.
	missing := 0
	var firstMissing *request
	for _, q := range reqs {
		if q.status == 0 || logs[q.replica][q.id] || s.killedSoonAfter(q) {
			continue
		}
		missing++
		if firstMissing == nil {
			firstMissing = q
		}
	}
	detail = ""
	if firstMissing != nil {
		detail = fmt.Sprintf(" (first: %s on r%d)", firstMissing.id, firstMissing.replica)
	}
	c.check(missing == 0, "answered requests missing from the access log: %d of %d%s", missing, answered, detail)
	c.check(stopErr == nil, "every replica stopped cleanly with SIGTERM at the end: %v", errText(stopErr))
	c.check(passes > 100, "the load let valid credentials in (%d passes)", passes)

	recovery(out, e, s, reqs)
	latency(out, s, reqs)
	fmt.Fprintf(out, "\n%d passed, %d failed\n", c.passed, c.failed)
	return c.failed
}

// kindFigures are the figures of the changes of one kind, or made
// during one fault, over the run.
type kindFigures struct {
	denied, acked []time.Duration // per change: denied everywhere after it took effect; the API's answer
	late          int             // requests let in later than the bound
}

// printGroups prints, per group (change kind or fault), how long after
// the change took effect every replica denied it (median and worst), how
// fast the API answered, and the requests let in past the bound.
func printGroups(out io.Writer, title string, order []string, by map[string]*kindFigures) {
	fmt.Fprintf(out, "\n%s:\n", title)
	for _, k := range order {
		f := by[k]
		if f == nil {
			fmt.Fprintf(out, "  %-15s none in this run\n", k)
			continue
		}
		slices.Sort(f.denied)
		slices.Sort(f.acked)
		fmt.Fprintf(out, "  %-15s n=%-3d denied everywhere: median %v, worst %v; API answered within %v; let in past the bound: %d\n",
			k, len(f.denied), f.denied[len(f.denied)/2].Round(time.Millisecond), f.denied[len(f.denied)-1].Round(time.Millisecond),
			f.acked[len(f.acked)-1].Round(time.Millisecond), f.late)
	}
}

func errText(err error) string {
	if err == nil {
		return "yes"
	}
	return err.Error()
}

// faulted reports whether q ran while a fault (or its grace) made the
// store or Redis unusable for its replica.
func (s *schedule) faulted(q *request) bool {
	return s.condition(q, true) != nil
}

// condition is the fault q ran under for its replica, nil for none; with
// deps, only faults of the store or Redis. A fault that was on while q
// ran comes before one whose grace q fell in, and a replica's own
// process fault before a shared one.
func (s *schedule) condition(q *request, deps bool) *window {
	var best *window
	rank := 0
	for _, w := range s.windows {
		if (deps && !w.deps) || !w.affects(q.replica) {
			continue
		}
		end := w.end
		if end.IsZero() {
			end = q.end
		}
		if !q.end.After(w.start) || !q.start.Before(end.Add(grace)) {
			continue
		}
		r := 1
		if q.start.Before(end) {
			r = 2
			if !w.deps {
				r = 3
			}
		}
		if r > rank {
			best, rank = w, r
		}
	}
	return best
}

// killedSoonAfter: a SIGKILL within a second of the answer may take the
// access-log line with it.
func (s *schedule) killedSoonAfter(q *request) bool {
	for _, k := range s.kills {
		if k.replica == q.replica && !k.at.Before(q.start) && k.at.Sub(q.end) < time.Second {
			return true
		}
	}
	return false
}

// recovery prints, for every fault window, how long after its end each
// affected replica let the control account in again.
func recovery(out io.Writer, e *env, s *schedule, reqs []*request) {
	fmt.Fprintf(out, "\nrecovery (from the end of each fault to the first control-token pass on each affected replica):\n")
	for _, w := range s.windows {
		if !w.deps {
			continue
		}
		var parts []string
		for r := range e.reps {
			if !w.affects(r) {
				continue
			}
			first := time.Duration(-1)
			for _, q := range reqs {
				if q.replica == r && q.allowed && slices.Contains(e.control, q.cred) && !q.start.Before(w.end) {
					first = q.end.Sub(w.end)
					break
				}
			}
			if first < 0 {
				parts = append(parts, fmt.Sprintf("r%d none", r))
			} else {
				parts = append(parts, fmt.Sprintf("r%d %v", r, first.Round(time.Millisecond)))
			}
		}
		fmt.Fprintf(out, "  %-40s %5.1fs: %s\n", w.what, w.end.Sub(w.start).Seconds(), strings.Join(parts, ", "))
	}
}

// latency prints /token latency percentiles of the control account by
// the condition its replica was in.
func latency(out io.Writer, s *schedule, reqs []*request) {
	by := map[string][]time.Duration{}
	for _, q := range reqs {
		if q.kind != "token" || !q.allowed || q.cred.random || q.cred.narrowedAt.Load() != 0 {
			continue
		}
		cond := "normal"
		if w := s.condition(q, false); w != nil {
			cond = w.kind
		}
		by[cond] = append(by[cond], q.end.Sub(q.start))
	}
	fmt.Fprintf(out, "\n/token latency of valid tokens by condition of the answering replica (client side, loopback, shared CPUs):\n")
	conds := make([]string, 0, len(by))
	for k := range by {
		conds = append(conds, k)
	}
	slices.Sort(conds)
	pct := func(ds []time.Duration, p float64) time.Duration {
		return ds[min(len(ds)-1, int(float64(len(ds))*p))]
	}
	var normal99 time.Duration
	if n := by["normal"]; len(n) > 0 {
		slices.Sort(n)
		normal99 = pct(n, 0.99)
	}
	for _, k := range conds {
		ds := by[k]
		slices.Sort(ds)
		ratio := ""
		if normal99 > 0 {
			ratio = fmt.Sprintf("  p99 %.1f× normal", float64(pct(ds, 0.99))/float64(normal99))
		}
		slow := len(ds) - sort.Search(len(ds), func(i int) bool { return ds[i] >= 500*time.Millisecond })
		fmt.Fprintf(out, "  %-40s n=%-6d p50 %6.2fms  p99 %7.2fms  p99.9 %7.2fms  max %7.2fms  ≥500ms %-3d%s\n", k, len(ds),
			ms(pct(ds, 0.5)), ms(pct(ds, 0.99)), ms(pct(ds, 0.999)), ms(ds[len(ds)-1]), slow, ratio)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
