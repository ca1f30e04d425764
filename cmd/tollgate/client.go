package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// clientFlags are the settings of the CLI as a client of the management
// API, like kubectl's of its API server. This file holds what every client
// command shares; each noun has its own file (accounts.go, tokens.go,
// audit.go, users.go) with one constructor per subcommand, which owns its
// flags.
type clientFlags struct {
	env    env
	url    string
	key    string
	caFile string
	output string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.url, "url", "", "management API base URL (default $TOLLGATE_URL)")
	cmd.PersistentFlags().StringVar(&f.key, "key", "", "admin or account API key (default $TOLLGATE_ADMIN_KEY, then $TOLLGATE_API_KEY)")
	cmd.PersistentFlags().StringVar(&f.caFile, "ca-file", "", "PEM CA bundle to trust for the API's TLS certificate, in addition to the system's (default $TOLLGATE_CA_FILE)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
}

func (f *clientFlags) client() (*api.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, tollgate.FieldError("output", "must be table or json")
	}
	u := f.url
	if u == "" {
		u = f.env.get("TOLLGATE_URL")
	}
	if u == "" {
		return nil, errors.New("no server: set TOLLGATE_URL or --url (tollgate dev writes it to its dev.env)")
	}
	key := f.key
	if key == "" {
		key = f.env.get("TOLLGATE_ADMIN_KEY")
	}
	if key == "" {
		key = f.env.get("TOLLGATE_API_KEY")
	}
	if key == "" {
		return nil, errors.New("no key: set TOLLGATE_ADMIN_KEY (operator) or TOLLGATE_API_KEY (account), or --key")
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	ca, field := f.caFile, "ca-file"
	if ca == "" {
		ca, field = f.env.get("TOLLGATE_CA_FILE"), "TOLLGATE_CA_FILE"
	}
	if ca != "" {
		tc, err := caTLSConfig(field, ca)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc.Transport = tr
	}
	return &api.Client{BaseURL: strings.TrimSuffix(u, "/"), Key: key, HTTP: hc}, nil
}

// run makes a command body that gets the API client first.
func (f *clientFlags) run(fn func(c *cobra.Command, args []string, cl *api.Client) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		cl, err := f.client()
		if err != nil {
			return err
		}
		return fn(c, args, cl)
	}
}

func errorText(err error) string {
	var e *tollgate.Error
	if errors.As(err, &e) {
		msg := tollgate.ErrorMessage(err)
		if e.Code == tollgate.EUNAVAILABLE && e.Err != nil {
			msg += ": " + connCause(e.Err)
		}
		return msg
	}
	return err.Error()
}

// connCause says why the API could not be reached, and what to do about
// it when that is clear. The causes hold addresses and certificate names,
// never a key: the key travels in a header the error does not quote.
func connCause(err error) string {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		record      tls.RecordHeaderError
		dns         *net.DNSError
		netErr      net.Error
		caHint      = " (trust the server's CA with --ca-file or TOLLGATE_CA_FILE)"
		certProblem = errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
	)
	switch {
	case certProblem:
		if errors.As(err, &hostname) {
			caHint = " (the URL's host must be one the certificate names)"
		}
		return "TLS: the server's certificate is not trusted: " + err.Error() + caHint
	case errors.As(err, &record):
		return "TLS: the server does not speak TLS at this address (is the URL http://?)"
	case errors.As(err, &dns):
		return "DNS: cannot resolve " + dns.Name + ": " + dns.Err
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens at that address (is tollgate running, on that port?)"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out: " + err.Error()
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "TLS: the server answered in plain HTTP (use an http:// URL)"
	}
	return err.Error()
}

func (f *clientFlags) printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under header. Every cell is stored text: it is
// escaped (tollgate.EscapeText) so that none can move the cursor, rewrite
// the terminal or break the columns.
func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = tollgate.EscapeText(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
