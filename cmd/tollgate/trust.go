package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// tollgate trust: an account's trust policies (keyless pulls,
// docs/keyless.md).
func newTrustCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "trust", Short: "Manage trust policies: which workloads' OIDC tokens may pull, and what they may pull (keyless pulls)"}
	f.register(cmd)
	cmd.AddCommand(newTrustCreateCmd(f), newTrustListCmd(f), newTrustShowCmd(f), newTrustEditCmd(f), newTrustDeleteCmd(f))
	return cmd
}

// trustFlags are a policy's fields, for create and edit.
type trustFlags struct {
	name, issuer, jwksFile, audience, scope, lifetime string
	claims, claimGlobs                                []string
	images, packages, networks                        []string
}

func (t *trustFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&t.name, "name", "", "the policy's name")
	fl.StringVar(&t.issuer, "issuer", "", "the OIDC issuer (the tokens' iss), e.g. https://token.actions.githubusercontent.com")
	fl.StringVar(&t.jwksFile, "jwks-file", "", "a static JWKS file for an issuer tollgate cannot reach (default: the issuer's discovery document); - clears it on edit")
	fl.StringVar(&t.audience, "audience", "", "the audience the tokens must carry (default tollgate:ACCOUNT)")
	fl.StringArrayVar(&t.claims, "claim", nil, "a claim rule, repeatable: NAME=VALUE (exact) or NAME~PATTERN (glob: * any run, ? one character), e.g. repository=acme/app, 'ref~refs/heads/*'; on edit, replaces all rules")
	fl.StringVar(&t.scope, "scope", "", "what the credentials may fetch: images, packages or images,packages (default images)")
	fl.StringVar(&t.lifetime, "lifetime", "", "the credentials' lifetime, at most the OIDC token's remaining life (default 15m, at most 12h)")
	fl.StringSliceVar(&t.images, "restrict-images", nil, "image repository patterns the credentials are limited to (comma separated)")
	fl.StringSliceVar(&t.packages, "restrict-packages", nil, "package repositories the credentials are limited to (comma separated)")
	fl.StringSliceVar(&t.networks, "networks", nil, "client networks the credentials may be used from: CIDRs or addresses (comma separated)")
}

// apply writes the flags that were given onto p; errors name the field.
func (t *trustFlags) apply(cmd *cobra.Command, p *api.TrustPolicy) error {
	ch := cmd.Flags().Changed
	if ch("name") {
		p.Name = t.name
	}
	if ch("issuer") {
		p.Issuer = t.issuer
		if err := tollgate.ValidateIssuer(t.issuer); err != nil {
			return err
		}
	}
	if ch("jwks-file") {
		p.JWKS = ""
		if t.jwksFile != "-" {
			b, err := os.ReadFile(t.jwksFile)
			if err != nil {
				return tollgate.FieldError("jwks", "cannot read --jwks-file: %v", err)
			}
			p.JWKS = strings.TrimSpace(string(b))
		}
	}
	if ch("audience") {
		p.Audience = t.audience
	}
	if ch("claim") {
		p.Claims = []api.ClaimRule{}
		for i, v := range t.claims {
			r, err := tollgate.ParseClaimRule(fmt.Sprintf("claims[%d]", i), v)
			if err != nil {
				return err
			}
			p.Claims = append(p.Claims, api.ClaimRule(r))
		}
	}
	if ch("scope") {
		sc, err := tollgate.ParseScope(t.scope)
		if err != nil {
			return err
		}
		p.Scope = sc.Names()
	}
	if ch("lifetime") {
		d, err := time.ParseDuration(t.lifetime)
		if err != nil {
			return tollgate.FieldError("lifetime", "%q is not a duration (15m, 1h, 12h)", t.lifetime)
		}
		p.Lifetime = d.String()
	}
	if ch("restrict-images") {
		p.Restrictions.Images = nonNilStrings(t.images)
	}
	if ch("restrict-packages") {
		p.Restrictions.Packages = nonNilStrings(t.packages)
	}
	if ch("networks") {
		if _, err := tollgate.ParseNetworks("networks", t.networks); err != nil {
			return err
		}
		p.Restrictions.Networks = nonNilStrings(t.networks)
	}
	return nil
}

func nonNilStrings(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func newTrustCreateCmd(f *clientFlags) *cobra.Command {
	var t trustFlags
	cmd := &cobra.Command{
		Use:   "create --account NAME --name N --issuer URL --claim NAME=VALUE [--claim NAME~PATTERN]...",
		Short: "Trust an OIDC issuer's workloads whose claims match: they pull with their own token, no stored secret",
		Args:  cobra.NoArgs,
	}
	account := accountFlag(cmd)
	t.register(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, _ []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		for _, req := range []string{"name", "issuer", "claim"} {
			if !c.Flags().Changed(req) {
				field := req
				if req == "claim" {
					field = "claims"
				}
				return tollgate.FieldError(field, "required (--%s)", req)
			}
		}
		var p api.TrustPolicy
		if err := t.apply(c, &p); err != nil {
			return err
		}
		out, err := cl.CreateTrustPolicy(c.Context(), name, p)
		if err != nil {
			return err
		}
		if err := printTrust(c, f, out, true); err != nil || f.output == "json" {
			return err
		}
		info, err := cl.Info(c.Context())
		if err != nil {
			return err
		}
		w := c.OutOrStdout()
		fmt.Fprintf(w, "\nA workload whose OIDC token (audience %s) matches uses it as its password, for example:\n", out.Audience)
		fmt.Fprintf(w, "  echo \"$ID_TOKEN\" | docker login %s -u oidc --password-stdin\n", info.RegistryHost)
		fmt.Fprintf(w, "or exchanges it for a short-lived credential at %s/oauth2/token (docs/keyless.md).\n", strings.TrimSuffix(info.PublicURL, "/"))
		return nil
	})
	return cmd
}

func newTrustListCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "list --account NAME", Short: "List an account's trust policies", Args: cobra.NoArgs}
	account := accountFlag(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, _ []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		out, err := cl.ListTrustPolicies(c.Context(), name)
		if err != nil {
			return err
		}
		if f.output == "json" {
			return f.printJSON(c.OutOrStdout(), out)
		}
		rows := make([][]string, 0, len(out.TrustPolicies))
		for _, p := range out.TrustPolicies {
			rows = append(rows, []string{p.ID, tollgate.EscapeText(p.Name), p.Issuer, p.Audience, claimsText(p.Claims), strings.Join(p.Scope, ","), p.Lifetime})
		}
		return table(c.OutOrStdout(), "ID\tNAME\tISSUER\tAUDIENCE\tCLAIMS\tSCOPE\tLIFETIME", rows)
	})
	return cmd
}

func claimsText(rs []api.ClaimRule) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = tollgate.EscapeText(tollgate.ClaimRule(r).String())
	}
	return strings.Join(out, " ")
}

func newTrustShowCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "show ID", Short: "Show a trust policy and the ephemeral credentials it issued (identity, last use)", Args: cobra.ExactArgs(1)}
	cmd.RunE = f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
		out, err := cl.TrustPolicy(c.Context(), args[0])
		if err != nil {
			return err
		}
		return printTrust(c, f, out, false)
	})
	return cmd
}

func newTrustEditCmd(f *clientFlags) *cobra.Command {
	var t trustFlags
	cmd := &cobra.Command{
		Use:   "edit ID [--name N] [--issuer URL] [--claim ...] [--lifetime D] ...",
		Short: "Change a trust policy; the credentials it issued end at once (workloads exchange again under the new rules)",
		Args:  cobra.ExactArgs(1),
	}
	t.register(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
		if c.Flags().NFlag() == 0 {
			return errors.New("nothing to change: give --name, --issuer, --jwks-file, --audience, --claim, --scope, --lifetime, --restrict-images, --restrict-packages or --networks")
		}
		p, err := cl.TrustPolicy(c.Context(), args[0])
		if err != nil {
			return err
		}
		p.Credentials = nil
		if err := t.apply(c, p); err != nil {
			return err
		}
		out, err := cl.ReplaceTrustPolicy(c.Context(), args[0], *p)
		if err != nil {
			return err
		}
		return printTrust(c, f, out, false)
	})
	return cmd
}

func newTrustDeleteCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "delete ID", Short: "Delete a trust policy; the credentials it issued end at once", Args: cobra.ExactArgs(1)}
	cmd.RunE = f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
		if err := cl.DeleteTrustPolicy(c.Context(), args[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "trust policy %s deleted; the credentials it issued no longer work\n", args[0])
		return nil
	})
	return cmd
}

// printTrust prints one policy and, unless brief, the credentials it
// issued.
func printTrust(c *cobra.Command, f *clientFlags, p *api.TrustPolicy, brief bool) error {
	if f.output == "json" {
		return f.printJSON(c.OutOrStdout(), p)
	}
	w := c.OutOrStdout()
	fmt.Fprintf(w, "id:           %s\naccount:      %s\nname:         %s\nissuer:       %s\n", p.ID, p.Account, tollgate.EscapeText(p.Name), p.Issuer)
	if p.JWKS != "" {
		fmt.Fprintf(w, "keys:         static JWKS (%d bytes)\n", len(p.JWKS))
	}
	fmt.Fprintf(w, "audience:     %s\nclaims:       %s\nscope:        %s\nlifetime:     %s\n", tollgate.EscapeText(p.Audience), claimsText(p.Claims), strings.Join(p.Scope, ","), p.Lifetime)
	r := p.Restrictions
	if len(r.Images)+len(r.Packages)+len(r.Networks) > 0 {
		fmt.Fprintf(w, "restricted:   images=%s packages=%s networks=%s\n", strings.Join(r.Images, ","), strings.Join(r.Packages, ","), strings.Join(r.Networks, ","))
	}
	if brief {
		return nil
	}
	if len(p.Credentials) == 0 {
		fmt.Fprintln(w, "\nno ephemeral credentials issued (or all swept after they ended)")
		return nil
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(p.Credentials))
	for _, t := range p.Credentials {
		last := "never"
		if t.LastUsedAt != nil {
			last = t.LastUsedAt.UTC().Format(time.RFC3339)
		}
		subject := ""
		if t.Identity != nil {
			subject = tollgate.EscapeText(t.Identity.Subject)
		}
		rows = append(rows, []string{t.ID, subject, t.Status, t.CreatedAt.UTC().Format(time.RFC3339), t.ExpiresAt.UTC().Format(time.RFC3339), last})
	}
	return table(w, "CREDENTIAL\tIDENTITY\tSTATUS\tISSUED\tEXPIRES\tLAST USED", rows)
}
