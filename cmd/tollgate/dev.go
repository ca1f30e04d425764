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
	var data, listen, tlsCert, tlsKey string
	cmd := &cobra.Command{
		Use:   "dev [--data DIR] [--listen ADDR]",
		Short: "Run tollgate on this machine with no outside services, seeded with a demo account",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			d := &devServer{Data: data, Listen: listen, TLSCert: tlsCert, TLSKey: tlsKey, Out: c.OutOrStdout()}
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
	return cmd
}

// devServer is `tollgate dev`: the embedded defaults in a data directory.
type devServer struct {
	Data    string
	Listen  string
	TLSCert string
	TLSKey  string
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
		logger = config.Default().Log.NewLogger(os.Stderr)
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
	envPath := filepath.Join(d.Data, "dev.env")
	if err := writeEnvFile(envPath, d.Env); err != nil {
		d.Main.Close()
		return err
	}
	fmt.Fprintf(d.Out, `
tollgate dev is running at %[1]s
  data:        %[2]s (reused on the next start)
  settings:    %[3]s  (load them with: set -a; . %[3]s; set +a)

demo account %[4]q, default token:
  %[5]s

pull the demo image (%[6]s is not entitled: that pull is denied):
  echo '%[5]s' | docker login %[7]s -u tollgate --password-stdin
  podman pull --tls-verify=false --creds tollgate:%[5]s %[8]s
  crane pull --insecure %[8]s demo.tar     # after: crane auth login %[7]s -u tollgate -p ...

try the CLI:
  set -a; . %[3]s; set +a
  tollgate account list
  tollgate token list --account %[4]s
  tollgate token create --account %[4]s --name ci --expires 2030-01-01

`, cfg.PublicURL, d.Data, envPath, demoAccount, secret.Reveal(), d.Env["TOLLGATE_DENIED_IMAGE"], cfg.Service, d.Env["TOLLGATE_DEMO_IMAGE"])
	fmt.Fprint(d.Out, consoleNote)
	fmt.Fprint(d.Out, pk.instructions(cfg.PublicURL, secret))
	return nil
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
