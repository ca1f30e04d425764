package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// clientFlags are the settings of the CLI as a client of the management
// API, like kubectl's of its API server.
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

// ---- accounts

func newAccountCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "account", Short: "Manage accounts (operator)"}
	f.register(cmd)
	printAccount := func(c *cobra.Command, a *api.Account) error {
		if f.output == "json" {
			return f.printJSON(c.OutOrStdout(), a)
		}
		return table(c.OutOrStdout(), "NAME\tSTATUS\tPACKAGES\tIMAGES\tPACKAGE REPOS\tCREATED", [][]string{accountRow(a)})
	}
	simple := func(use, short string, call func(c *cobra.Command, cl *api.Client, name string) (*api.Account, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
				a, err := call(c, cl, args[0])
				if err != nil {
					return err
				}
				return printAccount(c, a)
			}),
		}
	}
	create := &cobra.Command{
		Use: "create NAME", Short: "Sign up an account; prints its default token once", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			a, tok, err := cl.CreateAccount(c.Context(), args[0])
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), map[string]any{"account": a, "token": tok})
			}
			if err := printAccount(c, a); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "\ndefault token %s (shown once, keep it safe):\n%s\n", tok.ID, tok.Secret)
			return nil
		}),
	}
	list := &cobra.Command{
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
			return table(c.OutOrStdout(), "NAME\tSTATUS\tPACKAGES\tIMAGES\tPACKAGE REPOS\tCREATED", rows)
		}),
	}
	var images, packages []string
	entitle := &cobra.Command{
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
			return printAccount(c, a)
		}),
	}
	entitle.Flags().StringSliceVar(&images, "images", nil, "image repository patterns, comma separated (nginx,python*,team-a/*); empty to clear")
	entitle.Flags().StringSliceVar(&packages, "packages", nil, "package repository names, comma separated; empty to clear")
	keyCmd := &cobra.Command{
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
	cmd.AddCommand(create, list, entitle, keyCmd,
		simple("show", "Show an account", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
			return cl.GetAccount(c.Context(), n)
		}),
		simple("suspend", "Suspend an account: all its tokens stop working", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
			return cl.SuspendAccount(c.Context(), n)
		}),
		simple("resume", "Resume a suspended account", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
			return cl.ResumeAccount(c.Context(), n)
		}),
		simple("request-packages", "Request package access for an account", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
			return cl.RequestPackages(c.Context(), n)
		}),
		simple("grant-packages", "Grant package access (the default token gains the packages scope)", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
			return cl.GrantPackages(c.Context(), n)
		}),
		simple("deny-packages", "Deny package access", func(c *cobra.Command, cl *api.Client, n string) (*api.Account, error) {
			return cl.DenyPackages(c.Context(), n)
		}),
	)
	return cmd
}

func accountRow(a *api.Account) []string {
	return []string{a.Name, a.Status, a.PackageAccess, orDash(strings.Join(a.Subscription.Images, ",")),
		orDash(strings.Join(a.Subscription.Packages, ",")), a.CreatedAt.UTC().Format(time.RFC3339)}
}

// ---- tokens

func newTokenCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage registry tokens"}
	f.register(cmd)

	var (
		account, name, description, scope, expires, status string
		reveal                                             bool
	)
	var cAccount, cName, cDescription, cScope, cExpires string
	create := &cobra.Command{
		Use: "create --account NAME --name N", Short: "Create a token; its secret is printed once", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if cAccount == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			sc, err := tollgate.ParseScope(cScope)
			if err != nil {
				return err
			}
			if _, err := tollgate.ParseExpiry(cExpires); err != nil {
				return err
			}
			tok, err := cl.CreateToken(c.Context(), cAccount, api.CreateTokenRequest{
				Name: cName, Description: cDescription, Scope: sc.Names(), ExpiresAt: cExpires,
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
	create.Flags().StringVar(&cAccount, "account", "", "account name (required)")
	create.Flags().StringVar(&cName, "name", "", "token name, 1-100 characters (required)")
	create.Flags().StringVar(&cDescription, "description", "", "optional description, up to 500 characters")
	create.Flags().StringVar(&cScope, "scope", "images", "images, packages or images,packages")
	create.Flags().StringVar(&cExpires, "expires", "never", "YYYY-MM-DD (end of that day, UTC), RFC 3339 time, or never")

	list := &cobra.Command{
		Use: "list --account NAME", Short: "List an account's tokens", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			tl, err := cl.ListTokens(c.Context(), account, status)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), tl.Tokens)
			}
			if err := printTokens(c.OutOrStdout(), tl.Tokens); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "\n%d of %d tokens\n", tl.Active, tl.Limit)
			return nil
		}),
	}
	list.Flags().StringVar(&account, "account", "", "account name (required)")
	list.Flags().StringVar(&status, "status", "", "only tokens with this status: active, expired, revoked or suspended")

	show := &cobra.Command{
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
					served = append(served, tollgate.PackageRepo{Name: r.Name, Kind: r.Format, Suite: r.Suite, Component: r.Component})
				}
				repos = entitledRepos(served, tollgate.Subscription{Packages: acct.Subscription.Packages})
			}
			return printTokenDetail(c.OutOrStdout(), tok, info.PublicURL, repos)
		}),
	}
	show.Flags().BoolVar(&reveal, "reveal", false, "include the secret (audited)")

	edit := &cobra.Command{
		Use: "edit ID", Short: "Edit a token's name, description, scope or expiry", Args: cobra.ExactArgs(1),
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
			if req.Name == nil && req.Description == nil && req.Scope == nil && req.ExpiresAt == nil {
				return errors.New("nothing to change: give --name, --description, --scope or --expires")
			}
			tok, err := cl.EditToken(c.Context(), args[0], req)
			if err != nil {
				return err
			}
			return printOne(f, c, tok)
		}),
	}
	edit.Flags().StringVar(&name, "name", "", "new name")
	edit.Flags().StringVar(&description, "description", "", "new description (empty to clear)")
	edit.Flags().StringVar(&scope, "scope", "", "new scope: images, packages or images,packages")
	edit.Flags().StringVar(&expires, "expires", "", "new expiry: YYYY-MM-DD, RFC 3339, never, or now (expire at once)")

	extend := &cobra.Command{
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
	extend.Flags().StringVar(&expires, "expires", "", "YYYY-MM-DD (end of that day, UTC), RFC 3339 time, or never")

	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token for good", Args: cobra.ExactArgs(1),
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			tok, err := cl.RevokeToken(c.Context(), args[0])
			if err != nil {
				return err
			}
			return printOne(f, c, tok)
		}),
	}
	cmd.AddCommand(create, withExpiring(f, list), show, edit, extend, revoke, newTokenRotateCmd(f)) // rotate.go
	return cmd
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

func printTokenDetail(w io.Writer, t *api.Token, publicURL string, repos []tollgate.PackageRepo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"ID", t.ID}, {"Account", t.Account}, {"Name", t.Name}, {"Description", orDash(t.Description)},
		{"Scope", strings.Join(t.Scope, ",")}, {"Status", t.Status}, {"Expires", fmtTime(t.ExpiresAt)},
		{"Created", fmtTime(&t.CreatedAt)}, {"Updated", fmtTime(&t.UpdatedAt)}, {"Last used", fmtTime(t.LastUsedAt)},
		{"Revoked", fmtTime(t.RevokedAt)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], tollgate.EscapeText(kv[1]))
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
	if t.Status == string(tollgate.TokenRevoked) {
		return nil
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

// ---- audit

func newAuditCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the audit log"}
	f.register(cmd)
	var account string
	var before int64
	var limit int
	list := &cobra.Command{
		Use: "list --account NAME", Short: "List an account's lifecycle events, newest first", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			page, err := cl.ListAudit(c.Context(), account, before, limit)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), page)
			}
			rows := make([][]string, 0, len(page.Events))
			for _, e := range page.Events {
				rows = append(rows, []string{fmt.Sprint(e.ID), e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target, formatChanges(e.Changes)})
			}
			if err := table(c.OutOrStdout(), "ID\tTIME\tACTOR\tACTION\tTARGET\tCHANGES", rows); err != nil {
				return err
			}
			if page.NextBefore != nil {
				fmt.Fprintf(c.OutOrStdout(), "\nmore: --before %d\n", *page.NextBefore)
			}
			return nil
		}),
	}
	list.Flags().StringVar(&account, "account", "", "account name (required)")
	list.Flags().Int64Var(&before, "before", 0, "only events older than this event id (paging)")
	list.Flags().IntVar(&limit, "limit", 50, "events per page (at most 500)")
	cmd.AddCommand(list)
	return cmd
}

func formatChanges(ch map[string]api.Change) string {
	if len(ch) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(ch))
	for k := range ch {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		c := ch[k]
		if c.From == "" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, c.To))
		} else {
			parts = append(parts, fmt.Sprintf("%s: %q→%q", k, c.From, c.To))
		}
	}
	return strings.Join(parts, " ")
}
