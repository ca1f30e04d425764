package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// `tollgate token ...`: registry tokens.

func newTokenCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage registry tokens"}
	f.register(cmd)
	cmd.AddCommand(
		newTokenCreateCmd(f),
		withStale(f, withUnusedFor(f, withExpiring(f, newTokenListCmd(f)))), // incident.go, rotate.go, policy.go
		newTokenShowCmd(f),
		newTokenEditCmd(f),
		newTokenExtendCmd(f),
		newTokenRevokeCmd(f),
		newTokenPauseCmd(f),
		newTokenResumeCmd(f),
		newTokenRefusalsCmd(f),                          // policy.go
		newTokenRotateCmd(f),                            // rotate.go
		newTokenRevokeAllCmd(f), newTokenPauseAllCmd(f), // incident.go
	)
	return cmd
}

// policyFlags are a token's policy flags, for create and edit.
type policyFlags struct {
	images, packages, networks []string
	validFrom                  string
	maxPulls, maxBytes         int64
}

func (p *policyFlags) register(cmd *cobra.Command, verb string) {
	cmd.Flags().StringSliceVar(&p.images, "restrict-images", nil, verb+" the image repository patterns the token is limited to (comma separated; empty: the whole subscription)")
	cmd.Flags().StringSliceVar(&p.packages, "restrict-packages", nil, verb+" the package repositories the token is limited to (comma separated; empty: the whole subscription)")
	cmd.Flags().StringSliceVar(&p.networks, "networks", nil, verb+" the client networks the token may be used from: CIDRs or addresses, comma separated (empty: anywhere)")
	cmd.Flags().StringVar(&p.validFrom, "valid-from", "", verb+" the date the token becomes valid: YYYY-MM-DD (start of that day, UTC) or RFC 3339")
	cmd.Flags().Int64Var(&p.maxPulls, "max-pulls", 0, verb+" the monthly cap on pulls (manifest GETs and package downloads; 0: none)")
	cmd.Flags().Int64Var(&p.maxBytes, "max-bytes", 0, verb+" the monthly cap on bytes downloaded (0: none)")
}

// check parses locally what can be checked, so errors name the flag's
// field before anything is sent.
func (p *policyFlags) check() error {
	if _, err := tollgate.ParseNetworks("networks", p.networks); err != nil {
		return err
	}
	if p.validFrom != "" {
		if _, err := api.ParseValidFrom(p.validFrom); err != nil {
			return err
		}
	}
	return nil
}

func newTokenCreateCmd(f *clientFlags) *cobra.Command {
	var account, name, description, scope, expires string
	var policy policyFlags
	cmd := &cobra.Command{
		Use: "create --account NAME --name N", Short: "Create a token; its secret is printed once", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			sc, err := tollgate.ParseScope(scope)
			if err != nil {
				return err
			}
			if _, err := tollgate.ParseExpiry(expires); err != nil {
				return err
			}
			if err := policy.check(); err != nil {
				return err
			}
			tok, err := cl.CreateToken(c.Context(), account, api.CreateTokenRequest{
				Name: name, Description: description, Scope: sc.Names(), ExpiresAt: expires,
				RestrictImages: policy.images, RestrictPackages: policy.packages, Networks: policy.networks, ValidFrom: policy.validFrom,
				MaxPulls: policy.maxPulls, MaxBytes: policy.maxBytes,
			})
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), tok)
			}
			if err := printTokens(c.OutOrStdout(), []api.Token{*tok}); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "\nsecret (shown once, keep it safe; `token show %s --reveal` shows it again):\n%s\n", tok.ID, tok.Secret)
			return nil
		}),
	}
	cmd.Flags().StringVar(&account, "account", "", "account name (required)")
	cmd.Flags().StringVar(&name, "name", "", "token name, 1-100 characters (required)")
	cmd.Flags().StringVar(&description, "description", "", "optional description, up to 500 characters")
	cmd.Flags().StringVar(&scope, "scope", "images", "images, packages or images,packages")
	cmd.Flags().StringVar(&expires, "expires", "never", "YYYY-MM-DD (end of that day, UTC), RFC 3339 time, or never")
	policy.register(cmd, "set")
	return cmd
}

func newTokenListCmd(f *clientFlags) *cobra.Command {
	var account, status string
	cmd := &cobra.Command{
		Use: "list --account NAME", Short: "List an account's tokens", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			filter := status
			if filter == "all" {
				filter = "" // every token, revoked ones included
			}
			tl, err := cl.ListTokens(c.Context(), account, filter)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), tl.Tokens)
			}
			if err := printTokens(c.OutOrStdout(), tl.Tokens); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "\n%d of %d tokens in use (revoked tokens don't count)\n", tl.Active, tl.Limit)
			return nil
		}),
	}
	cmd.Flags().StringVar(&account, "account", "", "account name (required)")
	cmd.Flags().StringVar(&status, "status", "", "only tokens with this status: active, expired, revoked, suspended, paused or scheduled; all (the default) lists every one")
	return cmd
}

func newTokenShowCmd(f *clientFlags) *cobra.Command {
	var reveal bool
	cmd := &cobra.Command{
		Use: "show ID", Short: "Show a token and its ready-to-paste set-up commands", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			tok, err := cl.GetToken(c.Context(), args[0], reveal)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), tok)
			}
			info, err := cl.Info(c.Context())
			if err != nil {
				return err
			}
			var repos []tollgate.PackageRepo
			if acct, err := cl.GetAccount(c.Context(), tok.Account); err == nil {
				var served []tollgate.PackageRepo
				for _, r := range info.PackageRepositories {
					served = append(served, r.Repo())
				}
				repos = entitledRepos(served, tollgate.Subscription{Packages: acct.Subscription.Packages})
			}
			// The refused attempts are a help, like on the console's
			// card: without them the token is still shown.
			rl, _ := cl.TokenRefusals(c.Context(), tok.ID)
			return printTokenDetail(c.OutOrStdout(), tok, info.PublicURL, repos, rl)
		}),
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "include the secret (audited)")
	return cmd
}

func newTokenEditCmd(f *clientFlags) *cobra.Command {
	var name, description, scope, expires string
	var policy policyFlags
	cmd := &cobra.Command{
		Use: "edit ID", Short: "Edit a token's name, description, scope, expiry or restrictions", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			var req api.EditTokenRequest
			if c.Flags().Changed("name") {
				req.Name = &name
			}
			if c.Flags().Changed("description") {
				req.Description = &description
			}
			if c.Flags().Changed("scope") {
				sc, err := tollgate.ParseScope(scope)
				if err != nil {
					return err
				}
				req.Scope = sc.Names()
			}
			if c.Flags().Changed("expires") {
				if _, err := tollgate.ParseExpiry(expires); err != nil {
					return err
				}
				req.ExpiresAt = &expires
			}
			if err := policy.check(); err != nil {
				return err
			}
			changed := 0
			for flag, dst := range map[string]**[]string{"restrict-images": &req.RestrictImages, "restrict-packages": &req.RestrictPackages, "networks": &req.Networks} {
				if c.Flags().Changed(flag) {
					v, _ := c.Flags().GetStringSlice(flag)
					*dst = &v
					changed++
				}
			}
			if c.Flags().Changed("valid-from") {
				req.ValidFrom = &policy.validFrom
				changed++
			}
			if c.Flags().Changed("max-pulls") {
				req.MaxPulls = &policy.maxPulls
				changed++
			}
			if c.Flags().Changed("max-bytes") {
				req.MaxBytes = &policy.maxBytes
				changed++
			}
			if req.Name == nil && req.Description == nil && req.Scope == nil && req.ExpiresAt == nil && changed == 0 {
				return errors.New("nothing to change: give --name, --description, --scope, --expires, --restrict-images, --restrict-packages, --networks or --valid-from")
			}
			tok, err := cl.EditToken(c.Context(), args[0], req)
			if err != nil {
				return err
			}
			return printOne(f, c, tok)
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "new name")
	cmd.Flags().StringVar(&description, "description", "", "new description (empty to clear)")
	cmd.Flags().StringVar(&scope, "scope", "", "new scope: images, packages or images,packages")
	cmd.Flags().StringVar(&expires, "expires", "", "new expiry: YYYY-MM-DD, RFC 3339, never, or now (expire at once)")
	policy.register(cmd, "replace")
	return cmd
}

func newTokenExtendCmd(f *clientFlags) *cobra.Command {
	var expires string
	cmd := &cobra.Command{
		Use: "extend ID --expires E", Short: "Set a new future expiry (reactivates an expired token)", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if !c.Flags().Changed("expires") {
				return tollgate.FieldError("expires", "required (--expires YYYY-MM-DD|RFC3339|never)")
			}
			if _, err := tollgate.ParseExpiry(expires); err != nil {
				return err
			}
			tok, err := cl.ExtendToken(c.Context(), args[0], expires)
			if err != nil {
				return err
			}
			return printOne(f, c, tok)
		}),
	}
	cmd.Flags().StringVar(&expires, "expires", "", "YYYY-MM-DD (end of that day, UTC), RFC 3339 time, or never")
	return cmd
}

func newTokenRevokeCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token for good", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			tok, err := cl.RevokeToken(c.Context(), args[0])
			if err != nil {
				return err
			}
			return printOne(f, c, tok)
		}),
	}
}

func newTokenPauseCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "pause ID", Short: "Pause a token: refused everywhere at once, until resumed", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			tok, err := cl.PauseToken(c.Context(), args[0])
			if err != nil {
				return err
			}
			return printOne(f, c, tok)
		}),
	}
}

func newTokenResumeCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "resume ID", Short: "Resume a paused token", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			tok, err := cl.ResumeToken(c.Context(), args[0])
			if err != nil {
				return err
			}
			return printOne(f, c, tok)
		}),
	}
}

func printOne(f *clientFlags, c *cobra.Command, tok *api.Token) error {
	if f.output == "json" {
		return f.printJSON(c.OutOrStdout(), tok)
	}
	return printTokens(c.OutOrStdout(), []api.Token{*tok})
}

func printTokens(w io.Writer, toks []api.Token) error {
	rows := make([][]string, 0, len(toks))
	for _, t := range toks {
		rows = append(rows, []string{t.ID, t.Account, t.Name, strings.Join(t.Scope, ","), t.Status, fmtTime(t.ExpiresAt), fmtTime(t.LastUsedAt)})
	}
	return table(w, "ID\tACCOUNT\tNAME\tSCOPE\tSTATUS\tEXPIRES\tLAST USED", rows)
}

// printTokenDetail prints a token, its last refused attempts (rl, nil
// when the server could not say) and, unless it is revoked, its set-up
// commands.
func printTokenDetail(w io.Writer, t *api.Token, publicURL string, repos []tollgate.PackageRepo, rl *api.RefusalList) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"ID", t.ID}, {"Account", t.Account}, {"Name", t.Name}, {"Description", orDash(t.Description)},
		{"Scope", strings.Join(t.Scope, ",")}, {"Status", t.Status}, {"Expires", fmtTime(t.ExpiresAt)},
		{"Created", fmtTime(&t.CreatedAt)}, {"Updated", fmtTime(&t.UpdatedAt)}, {"Last used", fmtTime(t.LastUsedAt)},
		{"Revoked", fmtTime(t.RevokedAt)},
		{"Images", orAll(t.Restrictions.Images, "every image of the subscription")},
		{"Packages", orAll(t.Restrictions.Packages, "every package repository of the subscription")},
		{"Networks", orAll(t.Restrictions.Networks, "anywhere")},
		{"Valid from", fmtTime(t.ValidFrom)}, {"Paused", fmtTime(t.PausedAt)},
		{"Monthly caps", capsText(t.MaxPulls, t.MaxBytes)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], tollgate.EscapeText(kv[1]))
	}
	if t.Previous != nil && t.RevokedAt == nil {
		fmt.Fprintf(tw, "Previous secret:\t%s\n", tollgate.EscapeText(previousText(t.Previous))) // rotate.go
	}
	secret := t.Secret
	if secret == "" {
		secret = "<TOKEN>"
		fmt.Fprintf(tw, "Secret:\thidden (use --reveal)\n")
	} else {
		fmt.Fprintf(tw, "Secret:\t%s\n", secret)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := printRefusals(w, rl); err != nil { // policy.go
		return err
	}
	if t.Status == string(tollgate.TokenRevoked) {
		return nil
	}
	if t.Status == string(tollgate.TokenExpired) {
		fmt.Fprintf(w, "\nThis token expired on %s: the commands below work again once it is extended:\n  tollgate token extend %s --expires YYYY-MM-DD   (or --expires never)\n",
			fmtTime(t.ExpiresAt), t.ID)
	}
	sc, err := tollgate.ParseScopeNames(t.Scope)
	if err != nil {
		return err
	}
	for _, s := range tollgate.SetupCommands(publicURL, secret, sc, repos) {
		fmt.Fprintf(w, "\n# %s\n%s\n", s.Title, s.Text)
	}
	return nil
}

// orAll is a restriction list for people: its items, or what no
// restriction means.
func orAll(items []string, all string) string {
	if len(items) == 0 {
		return all
	}
	return strings.Join(items, ", ")
}

// capsText is a token's monthly caps for people.
func capsText(pulls, bytes int64) string {
	var parts []string
	if pulls > 0 {
		parts = append(parts, fmt.Sprintf("%d pulls", pulls))
	}
	if bytes > 0 {
		parts = append(parts, fmt.Sprintf("%d bytes", bytes))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ") + " per month (UTC)"
}
