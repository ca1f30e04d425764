package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// withStale adds the stale-token report's other questions to `token
// list`: --never-used, and --min-addresses N (tokens used from at least N
// client addresses in the last 30 days).
func withStale(f *clientFlags, list *cobra.Command) *cobra.Command {
	withListFilter(f, list, "never-used", "only tokens never used (the stale-token report)",
		func(c *cobra.Command, cl *api.Client, account, v string) (*api.TokenList, error) {
			if v != "true" {
				return nil, tollgate.FieldError("never-used", "takes no value (--never-used)")
			}
			return cl.ListNeverUsedTokens(c.Context(), account)
		},
		func(n int, _ string) string {
			return fmt.Sprintf("%d tokens never used (revoke or pause them: token revoke ID, token pause ID)", n)
		})
	list.Flags().Lookup("never-used").NoOptDefVal = "true"
	return withListFilter(f, list, "min-addresses", "only tokens used from at least this many client addresses in the last 30 days",
		func(c *cobra.Command, cl *api.Client, account, v string) (*api.TokenList, error) {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, tollgate.FieldError("min-addresses", "must be a number of addresses (10)")
			}
			return cl.ListTokensFromManyAddresses(c.Context(), account, n)
		},
		func(n int, v string) string {
			return fmt.Sprintf("%d tokens used from %s or more addresses in 30 days (lock one to its addresses: token edit ID --networks ...)", n, v)
		})
}

// newTokenRefusalsCmd prints a token's last refused attempts alone (with
// -o json, the API's answer), for scripts; `token show` prints them too.
func newTokenRefusalsCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "refusals ID", Short: "Show a token's last refused attempts: time, address, client, why", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			rl, err := cl.TokenRefusals(c.Context(), args[0])
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), rl)
			}
			return printRefusals(c.OutOrStdout(), rl)
		}),
	}
}

// printRefusals prints refused attempts newest first: time, client
// address, client (user agent) and why, in words and as the reason label
// the logs and metrics use. A refusal holds no secret; what the client
// sent (its user agent) is escaped like every other cell. rl nil: the
// server could not say.
func printRefusals(w io.Writer, rl *api.RefusalList) error {
	switch {
	case rl == nil:
		_, err := fmt.Fprintln(w, "Refused attempts: unavailable")
		return err
	case len(rl.Refusals) == 0:
		_, err := fmt.Fprintln(w, "Refused attempts: none")
		return err
	}
	fmt.Fprintf(w, "Refused attempts (newest first; the last %d are kept):\n", tollgate.RefusalsKept)
	rows := make([][]string, 0, len(rl.Refusals))
	for _, r := range rl.Refusals {
		why := tollgate.RefusalReasonText(r.Reason)
		if why != r.Reason {
			why += " (" + r.Reason + ")"
		}
		rows = append(rows, []string{fmtTime(&r.At), orDash(r.Address), orDash(r.UserAgent), why})
	}
	return table(w, "TIME\tADDRESS\tCLIENT\tWHY", rows)
}
