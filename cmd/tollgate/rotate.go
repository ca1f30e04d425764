package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// newTokenRotateCmd is `tollgate token rotate ID [--grace 24h|7d|now]`.
func newTokenRotateCmd(f *clientFlags) *cobra.Command {
	var grace string
	cmd := &cobra.Command{
		Use:   "rotate ID [--grace 24h]",
		Short: "Give a token a new secret; the old one keeps working for the grace window",
		Args:  cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if _, err := tollgate.ParseGrace(grace); err != nil {
				return err
			}
			tok, err := cl.RotateToken(c.Context(), args[0], grace)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), tok)
			}
			if err := printTokens(c.OutOrStdout(), []api.Token{*tok}); err != nil {
				return err
			}
			if p := tok.Previous; p != nil {
				fmt.Fprintf(c.OutOrStdout(), "\nprevious secret valid until %s\n", p.ValidUntil.Format(time.RFC3339))
			}
			fmt.Fprintf(c.OutOrStdout(), "\nnew secret (shown once, keep it safe; `token show %s --reveal` shows it again):\n%s\n", tok.ID, tok.Secret)
			return nil
		}),
	}
	cmd.Flags().StringVar(&grace, "grace", "24h", "how long the old secret keeps working: a duration (36h), days (7d, at most 30d) or now")
	return cmd
}

// withExpiring adds --expiring to `token list`: only tokens that expire
// within it (30d, 12h) and have not yet.
func withExpiring(f *clientFlags, list *cobra.Command) *cobra.Command {
	return withListFilter(f, list, "expiring", "only tokens expiring within this long (30d, 12h)",
		func(c *cobra.Command, cl *api.Client, account, v string) (*api.TokenList, error) {
			return cl.ListExpiringTokens(c.Context(), account, v)
		},
		func(n int, v string) string { return fmt.Sprintf("%d tokens expiring within %s", n, v) })
}

// previousText tells the previous secret apart for `token show`: "valid
// until …, last used … from ADDRESS by CLIENT", so that one sees whether
// the last system has moved over.
func previousText(p *api.PreviousSecret) string {
	out := "valid until " + p.ValidUntil.Format(time.RFC3339)
	if !p.Live {
		out = "stopped on " + p.ValidUntil.Format(time.RFC3339)
	}
	if p.LastUsedAt == nil {
		return out + ", not used since the rotation"
	}
	out += ", last used " + fmtTime(p.LastUsedAt)
	if p.LastUsedIP != "" {
		out += " from " + p.LastUsedIP
	}
	if p.LastUsedUA != "" {
		out += " by " + p.LastUsedUA
	}
	return out
}
