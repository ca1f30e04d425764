package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// `tollgate user ...`: web console users (operator).

func newUserCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage web console users (operator)"}
	f.register(cmd)
	cmd.AddCommand(newUserAddCmd(f), newUserListCmd(f), newUserResetLinkCmd(f))
	return cmd
}

// printLink prints a user and its one-time set-password link.
func printLink(f *clientFlags, c *cobra.Command, out *api.UserLink) error {
	if f.output == "json" {
		return f.printJSON(c.OutOrStdout(), out)
	}
	if err := printUsers(c, []api.User{out.User}); err != nil {
		return err
	}
	fmt.Fprintf(c.OutOrStdout(), "\none-time set-password link (hand it to %s; it works once, for %s):\n%s\n",
		out.User.Email, tollgate.DefaultLinkLifetime, out.SetPasswordURL)
	return nil
}

func newUserAddCmd(f *clientFlags) *cobra.Command {
	var account, email, role string
	cmd := &cobra.Command{
		Use: "add --account NAME --email EMAIL --role admin|operator|viewer", Short: "Add a console user; prints its one-time set-password link", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, _ []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			if _, err := tollgate.ValidateEmail(email); err != nil {
				return err
			}
			if _, err := tollgate.ParseRole(role); err != nil {
				return err
			}
			out, err := cl.CreateUser(c.Context(), account, api.CreateUserRequest{Email: email, Role: role})
			if err != nil {
				return err
			}
			return printLink(f, c, out)
		}),
	}
	cmd.Flags().StringVar(&account, "account", "", "account the user belongs to (required)")
	cmd.Flags().StringVar(&email, "email", "", "the user's email address, what it signs in with (required)")
	cmd.Flags().StringVar(&role, "role", "viewer", "admin (tokens and audit log), operator (tokens) or viewer (read-only, no secrets)")
	return cmd
}

func newUserListCmd(f *clientFlags) *cobra.Command {
	var account string
	cmd := &cobra.Command{
		Use: "list --account NAME", Short: "List an account's console users", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, _ []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			us, err := cl.ListUsers(c.Context(), account)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), us)
			}
			return printUsers(c, us)
		}),
	}
	cmd.Flags().StringVar(&account, "account", "", "account name (required)")
	return cmd
}

func newUserResetLinkCmd(f *clientFlags) *cobra.Command {
	var email string
	cmd := &cobra.Command{
		Use: "reset-link --email EMAIL", Short: "Issue a new one-time set-password link (the old one stops working)", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, _ []string, cl *api.Client) error {
			if _, err := tollgate.ValidateEmail(email); err != nil {
				return err
			}
			out, err := cl.PasswordLink(c.Context(), email)
			if err != nil {
				return err
			}
			return printLink(f, c, out)
		}),
	}
	cmd.Flags().StringVar(&email, "email", "", "the user's email address (required)")
	return cmd
}

func printUsers(c *cobra.Command, us []api.User) error {
	rows := make([][]string, 0, len(us))
	for _, u := range us {
		pw := "not set"
		if u.PasswordSet {
			pw = "set"
		}
		rows = append(rows, []string{u.ID, u.Account, u.Email, u.Role, pw, u.CreatedAt.UTC().Format(time.RFC3339)})
	}
	return table(c.OutOrStdout(), "ID\tACCOUNT\tEMAIL\tROLE\tPASSWORD\tCREATED", rows)
}
