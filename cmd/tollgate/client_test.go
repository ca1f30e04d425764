package main

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientConnectionErrorsNameTheCause: an untrusted certificate, a
// refused connection and a plain-HTTP server each say what went wrong,
// and --ca-file (or TOLLGATE_CA_FILE) makes the certificate trusted.
func TestClientConnectionErrorsNameTheCause(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"public_url":"https://r.example","service":"r.example"}`))
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	info := func(url, caFile string, env map[string]string) string {
		t.Helper()
		f := &clientFlags{url: url, key: "k", caFile: caFile, output: "table", env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
		cl, err := f.client()
		if err != nil {
			return errorText(err)
		}
		if _, err := cl.Info(context.Background()); err != nil {
			return errorText(err)
		}
		return ""
	}
	for _, tt := range []struct {
		name, url, ca string
		env           map[string]string
		want          string // "" means it works
	}{
		{"UntrustedCertificate", srv.URL, "", nil, "TLS: the server's certificate is not trusted"},
		{"CAFileFlag", srv.URL, ca, nil, ""},
		{"CAFileEnv", srv.URL, "", map[string]string{"TOLLGATE_CA_FILE": ca}, ""},
		{"MissingCAFile", srv.URL, ca + ".nope", nil, "ca-file"},
		{"Refused", closedURL, "", nil, "connection refused"},
		{"PlainHTTPServer", strings.Replace(plain.URL, "http://", "https://", 1), "", nil, "TLS: the server answered in plain HTTP"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := info(tt.url, tt.ca, tt.env)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("error = %q, want %q", got, tt.want)
			}
			if tt.want != "" && !strings.Contains(got, "cannot reach the tollgate API") && tt.name != "MissingCAFile" {
				t.Fatalf("error = %q does not say what it tried", got)
			}
		})
	}
}
