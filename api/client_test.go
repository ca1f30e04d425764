package api_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// newServer serves h and returns its URL.
func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestClientUnreachableServerIsUnavailable(t *testing.T) {
	// A port nothing listens on: take one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	c := &api.Client{BaseURL: "http://operator:hunter2@" + addr + "/", Key: adminKey}
	_, err = c.Info(context.Background())
	te := wantCode(t, err, tollgate.EUNAVAILABLE, "")
	msg := err.Error()
	if !strings.Contains(te.Message, "http://"+addr+"/api/v1/info") {
		t.Fatalf("message %q does not name the URL", te.Message)
	}
	if strings.Contains(msg, "hunter2") || strings.Contains(msg, "operator@") || strings.Contains(msg, adminKey) {
		t.Fatalf("error %q leaks credentials", msg)
	}
}

func TestClientBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "registry.example.com", "ftp://x:pw@host/"} {
		_, err := (&api.Client{BaseURL: u}).Info(context.Background())
		wantCode(t, err, tollgate.EINVALID, "url")
		if strings.Contains(err.Error(), "pw@") {
			t.Fatalf("error %q leaks userinfo", err)
		}
	}
}

func TestClientBaseURLWithPath(t *testing.T) {
	e := newEnv(t)
	mux := http.NewServeMux()
	mux.Handle("/tollgate/", http.StripPrefix("/tollgate", e.srv.Config.Handler))
	url := newServer(t, mux)
	c := &api.Client{BaseURL: url + "/tollgate/", Key: adminKey}
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestClientNonEnvelopeErrors(t *testing.T) {
	url := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/info":
			http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
		case "/api/v1/accounts":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"accounts":[` + strings.Repeat(`{"name":"xxxxxxxxxxxxxxxx"},`, 1<<16) + `{}]}`))
		default:
			w.Write([]byte("not json"))
		}
	}))
	c := &api.Client{BaseURL: url, Key: adminKey}
	_, err := c.Info(context.Background())
	wantCode(t, err, tollgate.EUNAVAILABLE, "")
	_, err = c.ListAccounts(context.Background())
	te := wantCode(t, err, tollgate.EINTERNAL, "")
	if !strings.Contains(te.Message, "larger than 1 MiB") {
		t.Fatalf("message = %q", te.Message)
	}
	_, err = c.GetAccount(context.Background(), "acme")
	wantCode(t, err, tollgate.EINTERNAL, "")
}

func TestClientSendsNoKeyWhenEmpty(t *testing.T) {
	url := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Authorization"]; ok {
			t.Errorf("Authorization sent: %q", r.Header.Get("Authorization"))
		}
		w.Write([]byte(`{}`))
	}))
	if _, err := (&api.Client{BaseURL: url}).Info(context.Background()); err != nil {
		t.Fatal(err)
	}
}
