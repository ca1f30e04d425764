package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	output string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.url, "url", "", "management API base URL (default $TOLLGATE_URL)")
	cmd.PersistentFlags().StringVar(&f.key, "key", "", "admin or account API key (default $TOLLGATE_ADMIN_KEY, then $TOLLGATE_API_KEY)")
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
	return &api.Client{BaseURL: strings.TrimSuffix(u, "/"), Key: key, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
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
		return tollgate.ErrorMessage(err)
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
