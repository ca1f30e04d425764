package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/api"
)

// `tollgate account ...`: accounts, their subscription and package access
// (operator).

func newAccountCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "account", Short: "Manage accounts (operator)"}
	f.register(cmd)
	cmd.AddCommand(
		newAccountCreateCmd(f),
		newAccountListCmd(f),
		newAccountEntitleCmd(f),
		newAccountCreateKeyCmd(f),
		newAccountShowCmd(f),
		newAccountSuspendCmd(f),
		newAccountResumeCmd(f),
		newAccountRequestPackagesCmd(f),
		newAccountGrantPackagesCmd(f),
		newAccountDenyPackagesCmd(f),
		newAccountPolicyCmd(f), // incident.go
	)
	return cmd
}

const accountHeader = "NAME\tSTATUS\tPACKAGES\tIMAGES\tPACKAGE REPOS\tCREATED"

func printAccount(f *clientFlags, c *cobra.Command, a *api.Account) error {
	if f.output == "json" {
		return f.printJSON(c.OutOrStdout(), a)
	}
	return table(c.OutOrStdout(), accountHeader, [][]string{accountRow(a)})
}

func accountRow(a *api.Account) []string {
	return []string{a.Name, a.Status, a.PackageAccess, orDash(strings.Join(a.Subscription.Images, ",")),
		orDash(strings.Join(a.Subscription.Packages, ",")), a.CreatedAt.UTC().Format(time.RFC3339)}
}

func newAccountCreateCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "create NAME", Short: "Sign up an account; prints its default token once", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			a, tok, err := cl.CreateAccount(c.Context(), args[0])
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), map[string]any{"account": a, "token": tok})
			}
			if err := printAccount(f, c, a); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "\ndefault token %s (shown once, keep it safe):\n%s\n", tok.ID, tok.Secret)
			return nil
		}),
	}
}

func newAccountListCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List accounts", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			as, err := cl.ListAccounts(c.Context())
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), as)
			}
			rows := make([][]string, 0, len(as))
			for i := range as {
				rows = append(rows, accountRow(&as[i]))
			}
			return table(c.OutOrStdout(), accountHeader, rows)
		}),
	}
}

func newAccountEntitleCmd(f *clientFlags) *cobra.Command {
	var images, packages []string
	cmd := &cobra.Command{
		Use: "entitle NAME", Short: "Set the image patterns and package repositories an account may pull", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if !c.Flags().Changed("images") || !c.Flags().Changed("packages") {
				cur, err := cl.GetAccount(c.Context(), args[0])
				if err != nil {
					return err
				}
				if !c.Flags().Changed("images") {
					images = cur.Subscription.Images
				}
				if !c.Flags().Changed("packages") {
					packages = cur.Subscription.Packages
				}
			}
			a, err := cl.SetSubscription(c.Context(), args[0], images, packages)
			if err != nil {
				return err
			}
			return printAccount(f, c, a)
		}),
	}
	cmd.Flags().StringSliceVar(&images, "images", nil, "image repository patterns, comma separated (nginx,python*,team-a/*); empty to clear")
	cmd.Flags().StringSliceVar(&packages, "packages", nil, "package repository names, comma separated; empty to clear")
	return cmd
}

func newAccountCreateKeyCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "create-key NAME", Short: "Issue (or replace) the account's management API key; printed once", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			key, err := cl.CreateAccountKey(c.Context(), args[0])
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), map[string]string{"key": key})
			}
			fmt.Fprintln(c.OutOrStdout(), key)
			return nil
		}),
	}
}

// newAccountNameCmd makes a subcommand that takes an account name, makes
// one call and prints the account it returns.
func newAccountNameCmd(f *clientFlags, use, short string, call func(c *cobra.Command, cl *api.Client, name string) (*api.Account, error)) *cobra.Command {
	return &cobra.Command{
		Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			a, err := call(c, cl, args[0])
			if err != nil {
				return err
			}
			return printAccount(f, c, a)
		}),
	}
}

func newAccountShowCmd(f *clientFlags) *cobra.Command {
	return newAccountNameCmd(f, "show", "Show an account", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
		return cl.GetAccount(c.Context(), n)
	})
}

func newAccountSuspendCmd(f *clientFlags) *cobra.Command {
	return newAccountNameCmd(f, "suspend", "Suspend an account: all its tokens stop working", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
		return cl.SuspendAccount(c.Context(), n)
	})
}

func newAccountResumeCmd(f *clientFlags) *cobra.Command {
	return newAccountNameCmd(f, "resume", "Resume a suspended account", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
		return cl.ResumeAccount(c.Context(), n)
	})
}

func newAccountRequestPackagesCmd(f *clientFlags) *cobra.Command {
	return newAccountNameCmd(f, "request-packages", "Request package access for an account", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
		return cl.RequestPackages(c.Context(), n)
	})
}

func newAccountGrantPackagesCmd(f *clientFlags) *cobra.Command {
	return newAccountNameCmd(f, "grant-packages", "Grant package access (the default token gains the packages scope)", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
		return cl.GrantPackages(c.Context(), n)
	})
}

func newAccountDenyPackagesCmd(f *clientFlags) *cobra.Command {
	return newAccountNameCmd(f, "deny-packages", "Deny package access", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
		return cl.DenyPackages(c.Context(), n)
	})
}
