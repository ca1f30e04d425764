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
	"github.com/tollgate/tollgate/usage"
)

// usageFlags are the flags of `tollgate usage`. The command builds its
// own API client (same variables as the other client commands) because
// its output formats include csv.
type usageFlags struct {
	env                   env
	url, key, output      string
	account, token, since string
	overview              bool
}

// newUsageCmd is `tollgate usage`: pulls per day of an account or a
// token, or (--overview, operator) the busiest and idle accounts.
func newUsageCmd(lookup env) *cobra.Command {
	f := &usageFlags{env: lookup}
	cmd := &cobra.Command{
		Use:   "usage --account NAME [--token ID] [--since 30d] [-o table|json|csv]",
		Short: "Show pulls per day: images, packages, bytes, client addresses",
		Long: "Show an account's pulls (or one token's) per day over a period: pulls, manifest fetches,\n" +
			"bytes sent and distinct client addresses, the top repositories, addresses and clients.\n" +
			"--since takes a number of days (30d: today and the 29 before) or a date (2006-01-02).\n" +
			"-o csv prints one row per day × token × repository. --overview (operator) lists the\n" +
			"accounts with the most pulls and the active accounts without any.",
		Args: cobra.NoArgs,
		RunE: f.run,
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "", "management API base URL (default $TOLLGATE_URL)")
	fl.StringVar(&f.key, "key", "", "admin or account API key (default $TOLLGATE_ADMIN_KEY, then $TOLLGATE_API_KEY)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table, json or csv")
	fl.StringVar(&f.account, "account", "", "account name (required unless --overview)")
	fl.StringVar(&f.token, "token", "", "only this token (its id)")
	fl.StringVar(&f.since, "since", "30d", "first day: a number of days back (30d) or a date (2006-01-02)")
	fl.BoolVar(&f.overview, "overview", false, "operator view across accounts")
	return cmd
}

func (f *usageFlags) client() (*api.Client, error) {
	switch f.output {
	case "table", "json", "csv":
	default:
		return nil, tollgate.FieldError("output", "must be table, json or csv")
	}
	u := f.url
	if u == "" {
		u = f.env.get("TOLLGATE_URL")
	}
	if u == "" {
		return nil, errors.New("no server: set TOLLGATE_URL or --url (tollgate dev writes it to its dev.env)")
	}
	key := f.key
	for _, v := range []string{"TOLLGATE_ADMIN_KEY", "TOLLGATE_API_KEY"} {
		if key == "" {
			key = f.env.get(v)
		}
	}
	if key == "" {
		return nil, errors.New("no key: set TOLLGATE_ADMIN_KEY (operator) or TOLLGATE_API_KEY (account), or --key")
	}
	return &api.Client{BaseURL: strings.TrimSuffix(u, "/"), Key: key, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (f *usageFlags) run(c *cobra.Command, _ []string) error {
	cl, err := f.client()
	if err != nil {
		return err
	}
	out := c.OutOrStdout()
	if f.overview {
		return f.printOverview(c, cl, out)
	}
	if f.account == "" {
		return tollgate.FieldError("account", "required (--account), or --overview")
	}
	u, err := cl.Usage(c.Context(), f.account, f.token, f.since)
	if err != nil {
		return err
	}
	switch f.output {
	case "json":
		return printIndented(out, u)
	case "csv":
		days, err := api.ToUsageDays(u.Rows)
		if err != nil {
			return err
		}
		return usage.WriteCSV(out, days)
	}
	who := "account " + u.Account
	if u.Token != "" {
		who += ", token " + u.Token
	}
	fmt.Fprintf(out, "%s, %s to %s\n\n", tollgate.EscapeText(who), u.Since, u.Until)
	var rows [][]string
	for _, d := range u.Days {
		rows = append(rows, []string{d.Day, fmt.Sprint(d.Pulls), fmt.Sprint(d.Manifests), usage.HumanBytes(d.Bytes), fmt.Sprint(d.Addresses)})
	}
	usageTable(out, "DAY\tPULLS\tMANIFESTS\tBYTES\tADDRESSES", rows)
	rows = nil
	for _, r := range u.Repositories {
		rows = append(rows, []string{r.Kind, r.Repository, fmt.Sprint(r.Pulls), usage.HumanBytes(r.Bytes)})
	}
	fmt.Fprintln(out)
	usageTable(out, "KIND\tREPOSITORY\tPULLS\tBYTES", rows)
	rows = nil
	for _, a := range u.Addresses {
		rows = append(rows, []string{a.Address, fmt.Sprint(a.Pulls), a.FirstSeen.UTC().Format(time.RFC3339), a.LastSeen.UTC().Format(time.RFC3339)})
	}
	fmt.Fprintln(out)
	usageTable(out, "ADDRESS\tPULLS\tFIRST SEEN\tLAST SEEN", rows)
	rows = nil
	for _, a := range u.Agents {
		rows = append(rows, []string{a.UserAgent, fmt.Sprint(a.Pulls)})
	}
	fmt.Fprintln(out)
	usageTable(out, "CLIENT\tPULLS", rows)
	for _, n := range u.NewNetworks {
		fmt.Fprintf(out, "\nnew network: token %s used from %s since %s\n", tollgate.EscapeText(n.Token), tollgate.EscapeText(n.Network), n.FirstSeen.UTC().Format(time.RFC3339))
	}
	return nil
}

func (f *usageFlags) printOverview(c *cobra.Command, cl *api.Client, out io.Writer) error {
	ov, err := cl.UsageOverview(c.Context(), f.since)
	if err != nil {
		return err
	}
	switch f.output {
	case "json":
		return printIndented(out, ov)
	case "csv":
		return tollgate.FieldError("output", "csv is for one account's usage; use json with --overview")
	}
	var rows [][]string
	for _, a := range ov.Top {
		rows = append(rows, []string{a.Account, fmt.Sprint(a.Pulls), usage.HumanBytes(a.Bytes), a.LastDay})
	}
	fmt.Fprintf(out, "%s to %s\n\n", ov.Since, ov.Until)
	usageTable(out, "ACCOUNT\tPULLS\tBYTES\tLAST PULL", rows)
	fmt.Fprintf(out, "\nno pulls since %s: %s\n", ov.Since, tollgate.EscapeText(strings.Join(ov.Idle, ", ")))
	return nil
}

func printIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// usageTable prints rows under header, every cell escaped.
func usageTable(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = tollgate.EscapeText(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}
