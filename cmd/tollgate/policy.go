package main

import (
	"fmt"
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
