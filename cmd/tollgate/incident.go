package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// withUnusedFor adds the stale-token report to `token list`:
// --unused-for 90d lists tokens never used or not used for that long.
func withUnusedFor(f *clientFlags, list *cobra.Command) *cobra.Command {
	return withListFilter(f, list, "unused-for", "only tokens not used for this long (90d, 12h): the stale-token report",
		func(c *cobra.Command, cl *api.Client, account, v string) (*api.TokenList, error) {
			return cl.ListUnusedTokens(c.Context(), account, v)
		},
		func(n int, v string) string {
			return fmt.Sprintf("%d tokens not used for %s (revoke or pause them: token revoke ID, token pause ID)", n, v)
		})
}

// withListFilter gives `token list` a filter flag answered by fetch; the
// plain list runs when the flag is not given.
func withListFilter(f *clientFlags, list *cobra.Command, flag, help string,
	fetch func(c *cobra.Command, cl *api.Client, account, v string) (*api.TokenList, error), summary func(n int, v string) string) *cobra.Command {
	var value string
	list.Flags().StringVar(&value, flag, "", help)
	next := list.RunE
	list.RunE = func(c *cobra.Command, args []string) error {
		if value == "" {
			return next(c, args)
		}
		return f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			account, _ := c.Flags().GetString("account")
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			tl, err := fetch(c, cl, account, value)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), tl.Tokens)
			}
			if err := printTokens(c.OutOrStdout(), tl.Tokens); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "\n%s\n", summary(len(tl.Tokens), value))
			return nil
		})(c, args)
	}
	return list
}

// newTokenAllCmd is the incident button: revoke-all or pause-all.
func newTokenAllCmd(f *clientFlags, verb string, call func(cl *api.Client, c *cobra.Command, account string) (int, error)) *cobra.Command {
	var account string
	cmd := &cobra.Command{
		Use: verb + "-all --account NAME", Short: "Incident button: " + verb + " every token of an account at once, on every replica", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			n, err := call(cl, c, account)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), map[string]int{"changed": n})
			}
			fmt.Fprintf(c.OutOrStdout(), "%d tokens of account %s %s\n", n, account, map[string]string{"revoke": "revoked", "pause": "paused"}[verb])
			return nil
		}),
	}
	cmd.Flags().StringVar(&account, "account", "", "account name (required)")
	return cmd
}

func newTokenRevokeAllCmd(f *clientFlags) *cobra.Command {
	return newTokenAllCmd(f, "revoke", func(cl *api.Client, c *cobra.Command, account string) (int, error) {
		return cl.RevokeAllTokens(c.Context(), account)
	})
}

func newTokenPauseAllCmd(f *clientFlags) *cobra.Command {
	return newTokenAllCmd(f, "pause", func(cl *api.Client, c *cobra.Command, account string) (int, error) {
		return cl.PauseAllTokens(c.Context(), account)
	})
}

// newAccountPolicyCmd sets what every token of an account must meet.
func newAccountPolicyCmd(f *clientFlags) *cobra.Command {
	var in api.AccountPolicy
	cmd := &cobra.Command{
		Use: "policy NAME", Short: "Set what every token of an account must meet (replaces the whole policy)", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if _, err := in.ToAccountPolicy(); err != nil {
				return err
			}
			a, err := cl.SetAccountPolicy(c.Context(), args[0], in)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), a)
			}
			p := a.Policy
			fmt.Fprintf(c.OutOrStdout(), "account %s: tokens expire within %s; networks %s; paused after %s unused; customers must restrict tokens: %v\n",
				a.Name, orAll(nonEmpty(p.MaxLifetime), "no limit"), orAll(p.Networks, "anywhere"), orAll(nonEmpty(p.AutoPauseAfter), "never"), p.RequireRestrictions)
			return nil
		}),
	}
	cmd.Flags().StringVar(&in.MaxLifetime, "max-lifetime", "", "tokens must expire within this (90d; empty: no limit, \"never\" allowed)")
	cmd.Flags().StringSliceVar(&in.Networks, "networks", nil, "networks every token is limited to (CIDRs, comma separated; empty: anywhere)")
	cmd.Flags().StringVar(&in.AutoPauseAfter, "auto-pause-after", "", "pause tokens unused for this long (90d; empty: never)")
	cmd.Flags().BoolVar(&in.RequireRestrictions, "require-restrictions", false, "the account's own keys and users may only create tokens limited by images, packages or networks")
	return cmd
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
