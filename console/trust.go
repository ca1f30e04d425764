package console

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// The Trust policies page (keyless pulls, docs/keyless.md): the account's
// trust policies, each with the ephemeral credentials it issued (the
// workload identity, status, last use); token managers create and delete
// policies. Every rule is Service's; each change is audited.

type trustView struct {
	ID, Name, Issuer, Audience, Claims, Scope, Lifetime, Restrictions, Created string
	StaticKeys                                                                 bool
	Credentials                                                                []credentialView
}

type credentialView struct {
	ID, Subject, Claims, Status, Issued, Expires, LastUsed, LastIP string
}

func (c *Console) trustPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Trust policies")
	v.Flash = map[string]string{"deleted": "Trust policy deleted. The credentials it issued no longer work."}[r.URL.Query().Get("done")]
	c.renderTrust(w, r, s, v, http.StatusOK)
}

func (c *Console) renderTrust(w http.ResponseWriter, r *http.Request, s *session, v *view, status int) {
	ps, err := c.Service.ListTrustPolicies(r.Context(), s.account.Name)
	var toks []*tollgate.Token
	var a *tollgate.Account
	if err == nil {
		toks, a, err = c.Service.ListTokens(r.Context(), s.account.Name, "")
	}
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	now := c.now()
	byPolicy := map[string][]credentialView{}
	for i := len(toks) - 1; i >= 0; i-- { // newest first
		t := toks[i]
		if t.Identity == nil {
			continue
		}
		cv := credentialView{ID: t.ID, Subject: tollgate.EscapeText(t.Identity.Subject), Status: string(t.Status(a, now)),
			Issued: fmtTime(t.CreatedAt), Expires: fmtTime(*t.ExpiresAt), LastUsed: "never"}
		var claims []string
		for _, rule := range ps {
			if rule.ID != t.Identity.PolicyID {
				continue
			}
			for _, cr := range rule.Rules {
				if val, ok := t.Identity.Claims[cr.Claim]; ok {
					claims = append(claims, cr.Claim+"="+val)
				}
			}
		}
		cv.Claims = tollgate.EscapeText(strings.Join(claims, " "))
		if t.LastUsedAt != nil {
			cv.LastUsed, cv.LastIP = fmtTime(*t.LastUsedAt), t.LastUsedIP
		}
		byPolicy[t.Identity.PolicyID] = append(byPolicy[t.Identity.PolicyID], cv)
	}
	for _, p := range ps {
		rules := make([]string, len(p.Rules))
		for i, rule := range p.Rules {
			rules[i] = rule.String()
		}
		var restrict []string
		if len(p.Restrict.Images) > 0 {
			restrict = append(restrict, "images "+strings.Join(p.Restrict.Images, ", "))
		}
		if len(p.Restrict.Packages) > 0 {
			restrict = append(restrict, "packages "+strings.Join(p.Restrict.Packages, ", "))
		}
		if len(p.Restrict.Networks) > 0 {
			restrict = append(restrict, "networks "+strings.Join(tollgate.FormatNetworks(p.Restrict.Networks), ", "))
		}
		v.Trust = append(v.Trust, trustView{ID: p.ID, Name: tollgate.EscapeText(p.Name), Issuer: tollgate.EscapeText(p.Issuer),
			Audience: tollgate.EscapeText(p.Audience), Claims: tollgate.EscapeText(strings.Join(rules, "  ")), Scope: p.Scope.String(),
			Lifetime: shortDuration(p.Lifetime), Restrictions: tollgate.EscapeText(strings.Join(restrict, "; ")), Created: fmtTime(p.CreatedAt),
			StaticKeys: p.JWKS != "", Credentials: byPolicy[p.ID]})
	}
	if v.Form["audience"] == "" {
		v.Form["audience_placeholder"] = tollgate.DefaultAudience(s.account.Name)
	}
	c.render(w, r, status, "trust", v)
}

func (c *Console) createTrust(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, 128<<10)
	v := c.base(s, "Trust policies")
	for _, k := range []string{"name", "issuer", "audience", "claims", "lifetime", "restrict_images"} {
		v.Form[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	p, err := readTrustForm(r, v)
	if err == nil {
		_, err = c.Service.CreateTrustPolicy(r.Context(), s.actor(), s.account.Name, p)
	}
	if err != nil {
		msg := c.errText(r, err)
		if f := tollgate.ErrorField(err); f != "" {
			msg = f + ": " + msg // the form has one error line: say which field
		}
		v.Errors["trust"] = msg
		c.renderTrust(w, r, s, v, statusOf(err))
		return
	}
	v.Flash = "Trust policy " + p.Name + " created. Workloads whose OIDC tokens match log in with the token as the password."
	v.Form = map[string]string{}
	c.renderTrust(w, r, s, v, http.StatusCreated)
}

// readTrustForm reads the form; claim rules are one per line
// (claim=value or claim~pattern).
func readTrustForm(r *http.Request, v *view) (tollgate.TrustPolicy, error) {
	p := tollgate.TrustPolicy{Name: v.Form["name"], Issuer: v.Form["issuer"], Audience: v.Form["audience"], Scope: tollgate.ScopeImages}
	i := 0
	for _, line := range strings.Split(v.Form["claims"], "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		rule, err := tollgate.ParseClaimRule("claims["+strconv.Itoa(i)+"]", line)
		if err != nil {
			return p, err
		}
		p.Rules = append(p.Rules, rule)
		i++
	}
	if r.PostFormValue("packages") == "on" {
		p.Scope |= tollgate.ScopePackages
	}
	if l := v.Form["lifetime"]; l != "" {
		d, err := time.ParseDuration(l)
		if err != nil {
			return p, tollgate.FieldError("lifetime", "%q is not a duration (15m, 1h, 12h)", l)
		}
		p.Lifetime = d
	}
	for _, img := range strings.Split(v.Form["restrict_images"], ",") {
		if img = strings.TrimSpace(img); img != "" {
			p.Restrict.Images = append(p.Restrict.Images, img)
		}
	}
	return p, nil
}

func (c *Console) deleteTrust(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	p, err := c.Service.TrustPolicy(r.Context(), id)
	if err == nil && p.AccountID != s.account.ID {
		err = tollgate.Errorf(tollgate.ENOTFOUND, "trust policy %s not found", id)
	}
	if err == nil {
		err = c.Service.DeleteTrustPolicy(r.Context(), s.actor(), id)
	}
	if err != nil {
		v := c.base(s, "Trust policies")
		v.Error = c.errText(r, err)
		c.renderTrust(w, r, s, v, statusOf(err))
		return
	}
	http.Redirect(w, r, "/console/trust?done=deleted", http.StatusSeeOther)
}

// shortDuration drops a duration's zero tail: 15m, 1h, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
