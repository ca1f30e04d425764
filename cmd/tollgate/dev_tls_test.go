package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/dev/upstream"
)

// TestDevTLSPrintoutVerifiesTLS: with --tls-cert, no command of the
// printout turns certificate verification off (each one is given the CA
// instead), and dev.env names the CA, so the printed CLI lines reach the
// API over TLS. scripts/e2e-clients.sh (section dev) runs the lines.
func TestDevTLSPrintoutVerifiesTLS(t *testing.T) {
	ca, err := upstream.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	d := &devServer{Data: t.TempDir(), Listen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile, TLSCA: caFile, Out: out}
	d.logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Main.Close() })

	text := out.String()
	for _, off := range []string{"--tls-verify=false", "--insecure", "skip_verify", "insecure-registries"} {
		if strings.Contains(text, off) {
			t.Errorf("the TLS printout turns verification off (%s):\n%s", off, text)
		}
	}
	trusted := d.Env["TOLLGATE_CA_FILE"]
	for _, want := range []string{
		"install -D -m 644 " + trusted + " /etc/docker/certs.d/",
		"podman pull --cert-dir ",
		"SSL_CERT_FILE=" + trusted + " crane pull ",
		"/etc/containerd/certs.d/",
		"update-ca-certificates",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the TLS printout lacks %q:\n%s", want, text)
		}
	}
	if pem, err := os.ReadFile(trusted); err != nil || !bytes.Equal(pem, ca.CertPEM) {
		t.Fatalf("dev.env TOLLGATE_CA_FILE=%q is not the CA (%v)", trusted, err)
	}

	// The CLI with nothing but dev.env's settings.
	f := &clientFlags{output: "table", env: func(k string) (string, bool) { v, ok := d.Env[k]; return v, ok }}
	f.url, f.key = d.Env["TOLLGATE_URL"], d.Env["TOLLGATE_ADMIN_KEY"]
	cl, err := f.client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Info(context.Background()); err != nil {
		t.Fatalf("the CLI with dev.env: %s", errorText(err))
	}
}
