package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/store/sqlite"
)

const adminKey = "admin-key-for-tests-3f9c1e7a"

// env is one API server on a fresh SQLite store, with an operator client,
// a settable clock and the server's logs captured.
type env struct {
	t     *testing.T
	svc   *tollgate.Service
	srv   *httptest.Server
	op    *api.Client
	logs  *testenv.Buffer
	clock *testenv.Clock
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, tollgate.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newStore(t *testing.T) tollgate.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tollgate.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newEnv starts a server; wrap, if given, wraps the store (to inject
// failures).
func newEnv(t *testing.T, wrap ...func(tollgate.Store) tollgate.Store) *env {
	t.Helper()
	keys, err := tollgate.NewKeys(randomKey(t), randomKey(t))
	if err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	for _, w := range wrap {
		store = w(store)
	}
	svc := tollgate.NewService(store, keys)
	clk := testenv.NewClock(time.Now().UTC().Truncate(time.Second))
	svc.Now = clk.Now
	logs := &testenv.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := &api.Server{
		Service:         svc,
		AdminKey:        adminKey,
		PublicURL:       "https://registry.example.com:8443",
		RegistryService: "registry.example.com",
		Logger:          logger,
	}
	// As cmd/tollgate serves it: behind the one access log.
	srv := httptest.NewServer((&obs.Observer{Logger: logger}).Wrap(s.Handler()))
	t.Cleanup(srv.Close)
	return &env{
		t: t, svc: svc, srv: srv, logs: logs, clock: clk,
		op: &api.Client{BaseURL: srv.URL, Key: adminKey, HTTP: srv.Client()},
	}
}

// client returns a client with the given key.
func (e *env) client(key string) *api.Client {
	return &api.Client{BaseURL: e.srv.URL, Key: key, HTTP: e.srv.Client()}
}

// account signs up an account and returns a client holding its API key.
func (e *env) account(name string) (*api.Client, *api.Token) {
	e.t.Helper()
	ctx := context.Background()
	_, tok, err := e.op.CreateAccount(ctx, name)
	if err != nil {
		e.t.Fatalf("create account %s: %v", name, err)
	}
	key, err := e.op.CreateAccountKey(ctx, name)
	if err != nil {
		e.t.Fatalf("create key for %s: %v", name, err)
	}
	return e.client(key), tok
}

// response is a raw answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes the error envelope, failing unless the body is exactly
// {"error":{"code","message"[,"field"]}}.
func (r response) errorBody(t *testing.T) api.ErrorDetail {
	t.Helper()
	var eb api.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("status %d: body %s is not an error envelope: %v", r.status, r.body, err)
	}
	if eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("status %d: error envelope without code or message: %s", r.status, r.body)
	}
	return eb.Error
}

// do sends a raw request; body is sent as JSON unless it is a string or
// []byte, which are sent as they are.
func (e *env) do(method, path, key string, body any) response {
	return e.doType(method, path, key, "application/json", body)
}

func (e *env) doType(method, path, key, contentType string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// wantError checks an error answer's status, code and field.
func wantError(t *testing.T, r response, status int, code, field string) api.ErrorDetail {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	d := r.errorBody(t)
	if d.Code != code || d.Field != field {
		t.Fatalf("error = %+v, want code %q field %q", d, code, field)
	}
	return d
}

// wantCode checks that err is a *tollgate.Error with the code and field.
func wantCode(t *testing.T, err error, code, field string) *tollgate.Error {
	t.Helper()
	var te *tollgate.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *tollgate.Error", err, err)
	}
	if te.Code != code || te.Field != field {
		t.Fatalf("error %q: code %q field %q, want code %q field %q", err, te.Code, te.Field, code, field)
	}
	return te
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
