package notify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/notify"
)

// realSMTP is Debian's aiosmtpd (testdata/smtpd.py) on a free port,
// requiring STARTTLS with a throw-away certificate and AUTH as user.
type realSMTP struct {
	addr string
	tls  *tls.Config // trusts the server's certificate
	out  *testenv.Buffer
}

const smtpUser, smtpPassword = "tollgate", "s3cret-smtp-password"

func startRealSMTP(t *testing.T) *realSMTP {
	t.Helper()
	python := "/usr/bin/python3" // Debian's, where python3-aiosmtpd installs
	if _, err := os.Stat(python); err != nil {
		python = needProgram(t, "python3")
	}
	if err := exec.Command(python, "-c", "import aiosmtpd").Run(); err != nil {
		if testenv.Required() {
			t.Fatalf("python3-aiosmtpd is required (TOLLGATE_TEST_REQUIRE_SERVICES=1): apt-get install -y python3-aiosmtpd")
		}
		t.Skip("python3-aiosmtpd not installed")
	}
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)

	port := freePort(t)
	s := &realSMTP{addr: "127.0.0.1:" + strconv.Itoa(port), tls: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, out: &testenv.Buffer{}}
	script, _ := filepath.Abs(filepath.Join("testdata", "smtpd.py"))
	cmd := exec.Command(python, script, strconv.Itoa(port), certFile, keyFile, smtpUser, smtpPassword)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(t, s.addr)
	return s
}

type mailLine struct {
	From          string   `json:"from"`
	To            []string `json:"to"`
	TLS           bool     `json:"tls"`
	Authenticated bool     `json:"authenticated"`
	Data          string   `json:"data"`
}

func (s *realSMTP) messages(t *testing.T) []mailLine {
	t.Helper()
	var out []mailLine
	for _, l := range s.out.Lines() {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var m mailLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("smtpd printed %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestExpiryEmailThroughARealSMTPServerWithStartTLSAndAuth: the expiry
// warning reaches the account's admins (not its viewers) through a real
// SMTP server, over STARTTLS, authenticated, with the token's name, its
// expiry and the link to its card; a wrong password fails the delivery
// with the server's code and without the password in the log.
func TestExpiryEmailThroughARealSMTPServerWithStartTLSAndAuth(t *testing.T) {
	srv := startRealSMTP(t)
	s, c := newService(t)
	ctx := t.Context()
	a, _, _, err := s.CreateAccount(ctx, "operator", "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ email, role string }{{"boss@acme.example", "admin"}, {"cto@acme.example", "admin"}, {"dev@acme.example", "viewer"}} {
		if err := s.Store.Update(ctx, func(tx tollgate.Tx) error {
			return tx.InsertUser(ctx, &tollgate.User{ID: tollgate.NewID("usr_"), AccountID: a.ID, Email: u.email, Role: tollgate.Role(u.role), CreatedAt: c.Now(), UpdatedAt: c.Now()})
		}); err != nil {
			t.Fatal(err)
		}
	}
	expires := c.Now().Add(5 * 24 * time.Hour)
	tok, _, err := s.CreateToken(ctx, "operator", tollgate.TokenCreate{Account: a.Name, Name: "ci-pull", Expiry: tollgate.Expiry{At: expires}})
	if err != nil {
		t.Fatal(err)
	}
	mail := &notify.SMTP{Addr: srv.addr, From: "tollgate@registry.example.com", Username: smtpUser, Password: smtpPassword, TLS: srv.tls}
	sweepExpiry(t, s)
	if _, err := deliverer(t, s, c, mail).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := srv.messages(t)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2 (the admins); smtpd said %q", len(msgs), srv.out.Lines())
	}
	var to []string
	for _, m := range msgs {
		to = append(to, m.To...)
		if !m.TLS || !m.Authenticated || m.From != "tollgate@registry.example.com" {
			t.Errorf("message over TLS %v, authenticated %v, from %q", m.TLS, m.Authenticated, m.From)
		}
		for _, want := range []string{"Subject: Registry token ci-pull expires on " + expires.Format("2006-01-02"),
			"expires on " + expires.Format("2006-01-02 15:04 UTC"), "https://registry.example.com/console/tokens#" + tok.ID} {
			if !strings.Contains(m.Data, want) {
				t.Errorf("message lacks %q:\n%s", want, m.Data)
			}
		}
	}
	if strings.Join(to, " ") != "boss@acme.example cto@acme.example" && strings.Join(to, " ") != "cto@acme.example boss@acme.example" {
		t.Errorf("recipients %v", to)
	}

	// Wrong credentials: the delivery fails with the server's reply code.
	c.Add(7 * 24 * time.Hour) // expired: another e-mail is due
	bad := &notify.SMTP{Addr: srv.addr, From: "tollgate@registry.example.com", Username: smtpUser, Password: "wrong-password", TLS: srv.tls}
	sweepExpiry(t, s)
	if _, err := deliverer(t, s, c, bad).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	ds, _ := s.ListDeliveries(ctx, a.Name, 10)
	if ds[0].Event.Type != tollgate.EventTokenExpired || ds[0].Status != tollgate.DeliveryPending || ds[0].LastCode != 535 ||
		strings.Contains(ds[0].LastError, "wrong-password") {
		t.Fatalf("delivery with a wrong password: %s %s %d %q", ds[0].Event.Type, ds[0].Status, ds[0].LastCode, ds[0].LastError)
	}
}
