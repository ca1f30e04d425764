package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/api"
)

const (
	service = "registry.soak.test"
	repo    = "demo/hello"
)

// cred is one credential the load uses: a registry token (secret, and a
// JWT fetched from it at setup), or a random secret or forged JWT.
type cred struct {
	name    string
	secret  string
	jwt     string
	tokenID string
	random  bool
	// narrowedAt is when the change that narrowed it was sent (zero:
	// never); only requests that ended before it count as valid.
	narrowedAt atomic.Int64
}

// target is an account narrowed by one change.
type target struct {
	account string
	creds   []*cred
}

// setup creates, through replica 0's API, the control account, one target
// account per change with two tokens each, and the random credentials.
func (e *env) setup(ctx context.Context, changes int) error {
	c := e.reps[0].api
	newAccount := func(name string) ([]*cred, error) {
		_, tok, err := c.CreateAccount(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("create account %s: %w", name, err)
		}
		if _, err := c.SetSubscription(ctx, name, []string{"demo/**"}, nil); err != nil {
			return nil, err
		}
		second, err := c.CreateToken(ctx, name, api.CreateTokenRequest{Name: "ci"})
		if err != nil {
			return nil, err
		}
		var out []*cred
		for i, t := range []*api.Token{tok, second} {
			cr := &cred{name: fmt.Sprintf("%s/%d", name, i), secret: t.Secret, tokenID: t.ID}
			if cr.jwt, err = e.fetchJWT(ctx, cr.secret); err != nil {
				return nil, fmt.Errorf("%s: %w", cr.name, err)
			}
			out = append(out, cr)
		}
		return out, nil
	}
	var err error
	if e.control, err = newAccount("control"); err != nil {
		return err
	}
	for i := range changes {
		name := fmt.Sprintf("target-%03d", i)
		creds, err := newAccount(name)
		if err != nil {
			return err
		}
		e.targets = append(e.targets, &target{account: name, creds: creds})
	}
	forged := e.control[0].jwt
	dot := strings.LastIndexByte(forged, '.')
	e.random = []*cred{
		{name: "random-secret-1", secret: "tg_" + randomHex(20), random: true},
		{name: "random-secret-2", secret: "tg_" + randomHex(24), random: true},
		{name: "forged-jwt", jwt: forged[:dot+1] + base64.RawURLEncoding.EncodeToString([]byte(randomHex(32))), random: true},
		{name: "garbage-jwt", jwt: "eyJ" + randomHex(40), random: true},
	}
	e.allCreds = append(e.allCreds, e.control...)
	for _, t := range e.targets {
		e.allCreds = append(e.allCreds, t.creds...)
	}
	e.allCreds = append(e.allCreds, e.random...)
	fmt.Fprintf(e.out, "set up: %d replicas, %d accounts, %d credentials (%d random)\n", len(e.reps), len(e.targets)+1, len(e.allCreds), len(e.random))
	return nil
}

func (e *env) fetchJWT(ctx context.Context, secret string) (string, error) {
	r := e.reps[0]
	req, err := tokenRequest(ctx, r, secret, "")
	if err != nil {
		return "", err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	jwt, ok := tokenGrants(resp)
	if !ok {
		return "", fmt.Errorf("GET /token: %s", resp.Status)
	}
	return jwt, nil
}

func tokenRequest(ctx context.Context, r *replica, secret, id string) (*http.Request, error) {
	q := url.Values{"service": {service}, "scope": {"repository:" + repo + ":pull"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/token?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("soak", secret)
	if id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	return req, nil
}

// tokenGrants reads a /token answer and returns its JWT if it grants
// pull on the repository: an answer that grants nothing lets nothing in.
func tokenGrants(resp *http.Response) (string, bool) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", false
	}
	var tr struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(body, &tr) != nil || tr.Token == "" {
		return "", false
	}
	parts := strings.Split(tr.Token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var claims struct {
		Access []struct {
			Type, Name string
			Actions    []string
		} `json:"access"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return "", false
	}
	for _, a := range claims.Access {
		if a.Type == "repository" && a.Name == repo && slices.Contains(a.Actions, "pull") {
			return tr.Token, true
		}
	}
	return "", false
}

// request is one recorded request.
type request struct {
	id         string
	cred       *cred
	replica    int
	kind       string // token, pull
	start, end time.Time
	status     int // 0: no HTTP answer
	allowed    bool
	err        string
}

type recorder struct {
	mu   sync.Mutex
	reqs []*request
	n    atomic.Int64
}

func (r *recorder) add(q *request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, q)
	r.mu.Unlock()
}

func (r *recorder) all() []*request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// drive runs workers request loops per replica until ctx ends (loops of
// their own, so that a stopped replica holds up only its own); the
// channel closes when they have all returned.
func (e *env) drive(ctx context.Context, rec *recorder, workers int) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range e.reps {
		for range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					e.once(ctx, rec, r)
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

func (e *env) once(ctx context.Context, rec *recorder, r *replica) {
	var c *cred
	switch p := rand.IntN(10); {
	case p == 0:
		c = e.random[rand.IntN(len(e.random))]
	case p < 4:
		c = e.control[rand.IntN(len(e.control))]
	default:
		t := e.targets[rand.IntN(len(e.targets))]
		if cur := e.current.Load(); cur != nil && rand.IntN(2) == 0 {
			t = cur
		}
		c = t.creds[rand.IntN(len(t.creds))]
	}
	kind := "token"
	if c.jwt != "" && (c.secret == "" || rand.IntN(2) == 0) {
		kind = "pull"
	}
	e.send(ctx, rec, r, c, kind)
}

// send sends one request of kind with c to r and records it.
func (e *env) send(ctx context.Context, rec *recorder, r *replica, c *cred, kind string) {
	q := &request{id: fmt.Sprintf("soak-%d", rec.n.Add(1)), cred: c, replica: r.i, kind: kind}
	var req *http.Request
	var err error
	if kind == "token" {
		req, err = tokenRequest(ctx, r, c.secret, q.id)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodHead, r.url+"/v2/"+repo+"/manifests/latest", nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+c.jwt)
			req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
			req.Header.Set("X-Request-Id", q.id)
		}
	}
	if err != nil {
		return
	}
	q.start = time.Now()
	resp, err := r.http.Do(req)
	if err != nil {
		q.end = time.Now()
		if ctx.Err() != nil {
			return // the soak is over: not a request that counts
		}
		q.err = err.Error()
		rec.add(q)
		return
	}
	q.status = resp.StatusCode
	if kind == "token" {
		_, q.allowed = tokenGrants(resp)
	} else {
		io.Copy(io.Discard, resp.Body)
		q.allowed = resp.StatusCode == http.StatusOK
	}
	resp.Body.Close()
	q.end = time.Now()
	rec.add(q)
}
