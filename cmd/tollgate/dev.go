package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/dev/upstream"
)

// The demo account `tollgate dev` seeds.
const (
	demoAccount = "demo"
	devActor    = "system:dev"
)

func newDevCmd(lookup env) *cobra.Command {
	var data, listen, tlsCert, tlsKey, tlsCA string
	cmd := &cobra.Command{
		Use:   "dev [--data DIR] [--listen ADDR]",
		Short: "Run tollgate on this machine with no outside services, seeded with a demo account",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			d := &devServer{Data: data, Listen: listen, TLSCert: tlsCert, TLSKey: tlsKey, TLSCA: tlsCA, Out: c.OutOrStdout()}
			if err := d.Start(c.Context()); err != nil {
				return err
			}
			err := d.Main.Wait(c.Context())
			return errors.Join(err, d.Main.Close())
		},
	}
	cmd.Flags().StringVar(&data, "data", "./tollgate-data", "data directory (SQLite database, keys, dev.env); reused on the next start")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:5000", "address to listen on")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (with --tls-key); containerd and crane want TLS")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	cmd.Flags().StringVar(&tlsCA, "tls-ca", "", "PEM CA certificate that signed --tls-cert, for the printed commands to verify TLS with (default: --tls-cert itself, right for a self-signed one)")
	return cmd
}

// devServer is `tollgate dev`: the embedded defaults in a data directory.
type devServer struct {
	Data    string
	Listen  string
	TLSCert string
	TLSKey  string
	TLSCA   string // what clients verify TLSCert with; "": TLSCert
	Out     io.Writer
	Main    *Main
	Env     map[string]string // what was written to dev.env

	logger *slog.Logger // tests capture the logs; nil means stderr
}

func (d *devServer) Start(ctx context.Context) error {
	if err := os.MkdirAll(d.Data, 0o700); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	keysDir := filepath.Join(d.Data, "keys")
	if err := config.EnsureKeys(keysDir); err != nil {
		return err
	}
	logger := d.logger
	if logger == nil {
		logger = config.Default().Log.NewLogger(logOut)
	}
	// The embedded upstream registry, seeded on first start.
	reg, err := upstream.Start(ctx, upstream.Options{Dir: filepath.Join(d.Data, "registry"), Logger: logger})
	if err != nil {
		return fmt.Errorf("embedded registry: %w", err)
	}
	demo, err := upstream.SeedDemo(ctx, reg)
	if err != nil {
		reg.Close()
		return fmt.Errorf("embedded registry: seeding the demo images: %w", err)
	}
	ln, err := net.Listen("tcp", d.Listen)
	if err != nil {
		reg.Close()
		return fmt.Errorf("listen: %w", err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = "http://" + publicHostPort(ln.Addr())
	if d.TLSCert != "" || d.TLSKey != "" {
		cfg.TLS = config.TLSConfig{CertFile: d.TLSCert, KeyFile: d.TLSKey}
		cfg.PublicURL = "https://" + publicHostPort(ln.Addr())
	}
	cfg.Store.SQLite.Path = filepath.Join(d.Data, "tollgate.db")
	cfg.Keys.Dir = keysDir
	cfg.Upstream.URL = reg.URL
	// The package repositories, served from the data directory.
	pk, err := seedDevPackages(d.Data)
	if err != nil {
		ln.Close()
		reg.Close()
		return err
	}
	cfg.Packages.Repositories = pk.Repositories
	// Webhooks to a receiver on this machine, sent within seconds.
	cfg.Notify.AllowPrivateWebhooks = true
	cfg.Notify.Interval = config.Duration(2 * time.Second)
	cfg.Notify.RetryFor = config.Duration(24 * time.Hour)
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		ln.Close()
		reg.Close()
		pk.Close()
		return err
	}
	d.Main = &Main{Config: cfg, Listener: ln, Logger: logger, OnClose: []func() error{reg.Close, pk.Close}}
	if err := d.Main.Run(ctx); err != nil {
		return err
	}
	secret, err := d.seed(ctx)
	if err == nil {
		err = pk.grantDemo(ctx, d.Main.Service, demoAccount)
	}
	if err != nil {
		d.Main.Close()
		return err
	}
	d.Env = map[string]string{
		"TOLLGATE_URL":          cfg.PublicURL,
		"TOLLGATE_ADMIN_KEY":    d.Main.AdminKey.Reveal(), // to the developer's env file, 0600
		"TOLLGATE_DEMO_ACCOUNT": demoAccount,
		"TOLLGATE_DEMO_TOKEN":   secret.Reveal(),
		"TOLLGATE_DEMO_IMAGE":   cfg.Service + "/" + demo.Hello.Repo + ":" + demo.Hello.Tag,
		"TOLLGATE_DENIED_IMAGE": cfg.Service + "/" + demo.Secret.Repo + ":" + demo.Secret.Tag,
	}
	for k, v := range pk.env(cfg.PublicURL) {
		d.Env[k] = v
	}
	consoleNote, err := d.seedConsole(ctx)
	if err != nil {
		d.Main.Close()
		return err
	}
	caFile := ""
	if cfg.TLS.Enabled() {
		if caFile, err = d.writeCertsDir(cfg.Service); err != nil {
			d.Main.Close()
			return err
		}
		// The CLI lines of the printout load dev.env: they trust the CA.
		d.Env["TOLLGATE_CA_FILE"] = caFile
	}
	envPath := filepath.Join(d.Data, "dev.env")
	if err := writeEnvFile(envPath, d.Env); err != nil {
		d.Main.Close()
		return err
	}
	d.printout(cfg, envPath, secret, consoleNote, pk, caFile)
	return nil
}

// printout tells the developer what runs and how to use it: the same
// set-up commands as `tollgate token show --reveal` (tollgate.Setup),
// verifying TLS with the CA when there is TLS.
func (d *devServer) printout(cfg *config.Config, envPath string, secret tollgate.Secret, consoleNote string, pk *devPackages, caFile string) {
	w := d.Out
	image, denied := d.Env["TOLLGATE_DEMO_IMAGE"], d.Env["TOLLGATE_DENIED_IMAGE"]
	fmt.Fprintf(w, `
tollgate dev is running at %[1]s
  data:        %[2]s (reused on the next start)
  settings:    %[3]s  (load them with: set -a; . %[3]s; set +a)

demo account %[4]q, default token:
  %[5]s

pull and run the demo image (%[6]s is not entitled: that pull is denied):
`, cfg.PublicURL, d.Data, envPath, demoAccount, secret.Reveal(), denied)
	creds := "tollgate:" + secret.Reveal()
	login := func(client string) string {
		return fmt.Sprintf("echo '%s' | %s login %s -u tollgate --password-stdin", secret.Reveal(), client, cfg.Service)
	}
	// Each line runs as printed (scripts/e2e-clients.sh runs them).
	// `podman run` uses the image just pulled: Debian's podman 4.3 has
	// neither --creds nor --cert-dir on run.
	var lines []string
	if caFile != "" {
		certs := filepath.Dir(caFile)
		lines = []string{
			"$(command -v sudo) install -D -m 644 " + caFile + " /etc/docker/certs.d/" + cfg.Service + "/ca.crt",
			login("docker"),
			"docker run --rm " + image,
			fmt.Sprintf("podman pull --cert-dir %s --creds %s %s", certs, creds, image),
			"podman run --rm " + image,
			fmt.Sprintf("$(command -v sudo) ctr images pull --hosts-dir %s --user %s %s", filepath.Dir(certs), creds, image),
			login("crane auth"),
			fmt.Sprintf("SSL_CERT_FILE=%s crane pull %s demo.tar", caFile, image),
		}
	} else {
		// Plain http: clients must be told that this registry has no TLS
		// (dockerd allows plain http to 127.0.0.0/8 by itself).
		lines = []string{
			login("docker"),
			"docker run --rm " + image,
			fmt.Sprintf("podman pull --tls-verify=false --creds %s %s", creds, image),
			"podman run --rm " + image,
			login("crane auth"),
			fmt.Sprintf("crane pull --insecure %s demo.tar", image),
		}
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
	fmt.Fprintf(w, `
try the CLI:
  set -a; . %[1]s; set +a
  tollgate account list
  tollgate token list --account %[2]s
  tollgate token create --account %[2]s --name ci --expires 2030-01-01

`, envPath, demoAccount)
	fmt.Fprint(w, consoleNote)
	repos := entitledRepos(d.Main.packageRepos(), tollgate.Subscription{Packages: []string{pk.Entitled}})
	fmt.Fprintf(w, "set up a machine for the demo token (what `tollgate token show ID --reveal` prints;\npackage repository %q is entitled, %q is not):\n", pk.Entitled, pk.Denied)
	for _, c := range (tollgate.Setup{PublicURL: cfg.PublicURL, Secret: secret.Reveal(), Scope: tollgate.ScopeImages | tollgate.ScopePackages, Repos: repos, CAFile: caFile}).Commands() {
		fmt.Fprintf(w, "\n# %s\n%s\n", c.Title, c.Text)
	}
	fmt.Fprintf(w, "\nthen: $(command -v sudo) apt-get install %s  (apt) or $(command -v sudo) env HTTP_AUTH=\"$HTTP_AUTH\" apk add %s  (apk)\n\n", pk.AptPackage, pk.ApkPackage)
}

// writeCertsDir writes DATA/certs.d/HOST/ca.crt (the CA clients verify
// tollgate with) and a containerd hosts.toml beside it, and returns the
// CA's path: podman and skopeo take the directory as --cert-dir, ctr its
// parent as --hosts-dir.
func (d *devServer) writeCertsDir(host string) (string, error) {
	src := d.TLSCA
	if src == "" {
		src = d.TLSCert
	}
	pem, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("tls ca: %w", err)
	}
	dir, err := filepath.Abs(filepath.Join(d.Data, "certs.d", host))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem, 0o644); err != nil {
		return "", err
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", "https://"+host, "https://"+host, ca)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return "", err
	}
	return ca, nil
}

// seed creates the demo account on first start and returns the secret of
// a usable demo token (the default one while it is not revoked).
func (d *devServer) seed(ctx context.Context) (tollgate.Secret, error) {
	svc := d.Main.Service
	_, _, secret, err := svc.CreateAccount(ctx, devActor, demoAccount)
	switch tollgate.ErrorCode(err) {
	case "":
		_, err = svc.SetSubscription(ctx, devActor, demoAccount, tollgate.Subscription{Images: []string{"demo/**"}})
		return secret, err
	case tollgate.ECONFLICT:
	default:
		return "", err
	}
	toks, _, err := svc.ListTokens(ctx, demoAccount, tollgate.TokenActive)
	if err != nil {
		return "", err
	}
	for _, t := range toks {
		if t.Name == tollgate.DefaultTokenName {
			return svc.RevealToken(ctx, devActor, t.ID)
		}
	}
	if len(toks) > 0 {
		return svc.RevealToken(ctx, devActor, toks[0].ID)
	}
	_, secret, err = svc.CreateToken(ctx, devActor, tollgate.TokenCreate{Account: demoAccount, Name: "dev"})
	return secret, err
}

// publicHostPort turns a listen address into one clients can dial:
// an unspecified host (0.0.0.0, ::) becomes 127.0.0.1.
func publicHostPort(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// writeEnvFile writes KEY=value lines, sorted, readable only by the owner.
func writeEnvFile(path string, env map[string]string) error {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + env[k] + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
