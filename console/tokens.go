package console

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate"
)

// flashes are the fixed messages a redirect may ask for (a message is
// never taken from the URL).
var flashes = map[string]string{
	"edited":    "Token saved.",
	"extended":  "Token extended; it works again until its new expiry.",
	"revoked":   "Token revoked. It stopped working everywhere.",
	"paused":    "Token paused. It is refused everywhere until you resume it.",
	"resumed":   "Token resumed. It works again.",
	"requested": "Package access requested. An operator will look at it.",
	"locked":    "Token locked to the addresses it was used from. Requests from anywhere else are refused.",
}

func (c *Console) base(s *session, title string) *view {
	return &view{Title: title, User: s.user, Account: s.account, CSRF: s.csrf, Errors: map[string]string{}, Form: map[string]string{},
		Packages: packagesView{State: string(s.account.PackageAccess), Granted: s.account.PackageAccess == tollgate.PackageAccessGranted}}
}

// tokensPage lists the account's tokens as cards. reveal, if set, is the
// id of a token whose secret to show (the no-JavaScript reveal).
func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderTokens(w, r, s, http.StatusOK, "", "", nil)
}

// cardError is a message shown inside one token's card.
type cardError struct{ id, msg string }

func (c *Console) renderTokens(w http.ResponseWriter, r *http.Request, s *session, status int, revealID string, secret tollgate.Secret, cerr *cardError) {
	v := c.base(s, "Tokens")
	v.Flash = flashes[r.URL.Query().Get("done")]
	filter := r.URL.Query().Get("status")
	switch tollgate.TokenStatus(filter) {
	case tollgate.TokenActive, tollgate.TokenExpired, tollgate.TokenRevoked, tollgate.TokenSuspended, tollgate.TokenPaused, tollgate.TokenScheduled:
	default:
		filter = ""
	}
	v.Filter = filter
	v.Stale = readStale(r)
	toks, a, err := c.Service.ListTokens(r.Context(), s.account.Name, "")
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	// Ephemeral credentials are listed with their trust policy (trust.go),
	// and their short lives are no expiry to warn about.
	toks = slices.DeleteFunc(toks, (*tollgate.Token).Ephemeral)
	if v.Stale.Kind == "addresses" {
		if v.Stale.counts, err = c.Service.TokenAddressCounts(r.Context(), s.account.Name, seenWindow); err != nil {
			c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
			return
		}
	}
	byID := map[string]*tollgate.Token{}
	now := c.now()
	v.Limit = tollgate.MaxActiveTokens
	v.Counts = map[string]int{}
	open := r.URL.Query().Get("open")
	for _, t := range toks {
		st := string(t.Status(a, now))
		v.Counts[st]++
		v.Counts[""]++
		if t.RevokedAt == nil {
			v.Active++
		}
		if (filter != "" && st != filter || !v.Stale.keeps(t, now)) && t.ID != revealID {
			continue
		}
		byID[t.ID] = t
		sec := ""
		if t.ID == revealID {
			sec = secret.Reveal() // asked for by its owner, audited
		}
		tv := c.tokenView(t, a, now, sec)
		tv.Open = t.ID == revealID || t.ID == open
		if cerr != nil && cerr.id == t.ID {
			tv.Error = cerr.msg
		}
		v.Tokens = append(v.Tokens, tv)
	}
	// Newest first: the token just made is on top.
	slices.Reverse(v.Tokens)
	v.AtLimit = v.Active >= tollgate.MaxActiveTokens
	v.Expiring = expiringSoon(toks, a, now, c.warnBefore())
	c.attachUsage(r.Context(), s, v.Tokens)
	c.attachPolicy(r.Context(), v.Tokens, byID)
	c.render(w, r, status, "tokens", v)
}

func (c *Console) newTokenPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "New token")
	v.Form["never"] = "on"
	v.Form["images"] = "on"
	c.render(w, r, http.StatusOK, "tokenform", v)
}

// tokenForm reads the create/edit form: name, description, the scope
// checkboxes and the expiry (a date, or "never expires").
type tokenForm struct {
	name, description string
	scope             tollgate.Scope
	expiry            tollgate.Expiry
	expiresDate       string
	never             bool
	// The restrictions, one per line or comma separated; empty: none.
	images, networks []string
	nets             []netip.Prefix
	policy           policyForm // packages, valid-from, caps (policy.go)
}

// splitList reads a textarea of items, one per line or comma separated.
func splitList(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

func readTokenForm(r *http.Request, v *view) (tokenForm, error) {
	f := tokenForm{
		name:        r.PostFormValue("name"),
		description: strings.ReplaceAll(r.PostFormValue("description"), "\r\n", "\n"),
		expiresDate: strings.TrimSpace(r.PostFormValue("expires")),
		never:       r.PostFormValue("never") != "",
	}
	v.Form["name"], v.Form["description"], v.Form["expires"] = f.name, f.description, f.expiresDate
	v.Form["restrict_images"], v.Form["networks"] = r.PostFormValue("restrict_images"), r.PostFormValue("networks")
	f.images, f.networks = splitList(v.Form["restrict_images"]), splitList(v.Form["networks"])
	var names []string
	for _, sc := range []string{"images", "packages"} {
		if r.PostFormValue(sc) != "" {
			names = append(names, sc)
			v.Form[sc] = "on"
		}
	}
	if f.never {
		v.Form["never"] = "on"
	}
	sc, err := tollgate.ParseScopeNames(names)
	if err != nil {
		return f, err
	}
	f.scope = sc
	if f.nets, err = tollgate.ParseNetworks("networks", f.networks); err != nil {
		return f, err
	}
	if f.policy, err = readPolicyForm(r, v); err != nil {
		return f, err
	}
	switch {
	case f.never:
		f.expiry = tollgate.Expiry{Never: true}
	case f.expiresDate == "":
		return f, tollgate.FieldError("expires", "pick a date, or choose \"never expires\"")
	default:
		e, err := tollgate.ParseExpiry(f.expiresDate)
		if err != nil {
			return f, err
		}
		f.expiry = e
	}
	return f, nil
}

// formError puts err next to its field, or above the form.
func (c *Console) formError(r *http.Request, v *view, err error) int {
	msg := c.errText(r, err)
	switch f := tollgate.ErrorField(err); {
	case f == "name", f == "description", f == "scope", f == "expires":
		v.Errors[f] = msg
	case strings.HasPrefix(f, "restrict_images"):
		v.Errors["restrict_images"] = msg
	case strings.HasPrefix(f, "networks"):
		v.Errors["networks"] = msg
	case strings.HasPrefix(f, "restrict_packages"), f == "valid_from", f == "max_pulls", f == "max_bytes":
		v.Errors[strings.SplitN(f, "[", 2)[0]] = msg
	default:
		v.Error = msg
	}
	return statusOf(err)
}

func (c *Console) createToken(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	v := c.base(s, "New token")
	f, err := readTokenForm(r, v)
	if err != nil {
		c.render(w, r, c.formError(r, v, err), "tokenform", v)
		return
	}
	policy := tollgate.TokenPolicy{Images: f.images, Networks: f.nets}
	f.policy.apply(&policy)
	t, secret, err := c.Service.CreateToken(r.Context(), s.actor(), tollgate.TokenCreate{
		Account: s.account.Name, Name: f.name, Description: f.description, Scope: f.scope, Expiry: f.expiry,
		Policy: policy})
	if err != nil {
		c.render(w, r, c.formError(r, v, err), "tokenform", v)
		return
	}
	v.Title = "Token created"
	v.Created = c.tokenView(t, s.account, c.now(), secret.Reveal()) // shown once, to its creator
	c.render(w, r, http.StatusCreated, "created", v)
}

// ownToken loads a token of the session's account; any other is "not
// found", as in the API.
func (c *Console) ownToken(r *http.Request, s *session) (*tollgate.Token, *tollgate.Account, error) {
	id := r.PathValue("id")
	t, a, err := c.Service.Token(r.Context(), id)
	if err != nil {
		return nil, nil, err
	}
	if t.AccountID != s.account.ID {
		return nil, nil, tollgate.Errorf(tollgate.ENOTFOUND, "token %s not found", id)
	}
	return t, a, nil
}

func (c *Console) editTokenPage(w http.ResponseWriter, r *http.Request, s *session) {
	t, a, err := c.ownToken(r, s)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	v := c.base(s, "Edit token")
	v.Token = c.tokenView(t, a, c.now(), "")
	v.Form["name"], v.Form["description"], v.Form["expires"] = v.Token.Name, v.Token.Description, v.Token.ExpiresDate
	for _, sc := range t.Scope.Names() {
		v.Form[sc] = "on"
	}
	if t.ExpiresAt == nil {
		v.Form["never"] = "on"
	}
	v.Form["restrict_images"] = strings.Join(t.Policy.Images, "\n")
	v.Form["networks"] = strings.Join(tollgate.FormatNetworks(t.Policy.Networks), "\n")
	fillPolicyForm(v, t.Policy)
	if t.RevokedAt != nil {
		v.Error = fmt.Sprintf("Token %s is revoked; revocation is final and it cannot be edited.", t.ID)
	}
	c.render(w, r, http.StatusOK, "tokenform", v)
}

func (c *Console) editToken(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	t, a, err := c.ownToken(r, s)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	v := c.base(s, "Edit token")
	v.Token = c.tokenView(t, a, c.now(), "")
	f, err := readTokenForm(r, v)
	if err != nil {
		c.render(w, r, c.formError(r, v, err), "tokenform", v)
		return
	}
	// Send only what changed: saving a new name must not trip over an
	// expiry that has passed meanwhile.
	var edit tollgate.TokenEdit
	if f.name != t.Name {
		edit.Name = &f.name
	}
	if f.description != t.Description {
		edit.Description = &f.description
	}
	if f.scope != t.Scope {
		edit.Scope = &f.scope
	}
	if f.never != (t.ExpiresAt == nil) || (!f.never && f.expiresDate != v.Token.ExpiresDate) {
		edit.Expiry = &f.expiry
	}
	if !slices.Equal(f.images, t.Policy.Images) {
		edit.RestrictImages = &f.images
	}
	if !slices.Equal(f.nets, t.Policy.Networks) {
		edit.Networks = &f.nets
	}
	f.policy.edit(t, &edit)
	if _, err := c.Service.EditToken(r.Context(), s.actor(), t.ID, edit); err != nil {
		c.render(w, r, c.formError(r, v, err), "tokenform", v)
		return
	}
	http.Redirect(w, r, "/console/tokens?done=edited&open="+t.ID+"#"+t.ID, http.StatusSeeOther)
}

func (c *Console) extendToken(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	t, _, err := c.ownToken(r, s)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	var e tollgate.Expiry
	date := strings.TrimSpace(r.PostFormValue("expires"))
	switch {
	case r.PostFormValue("never") != "":
		e.Never = true
	case date == "":
		err = tollgate.FieldError("expires", "pick a date, or choose \"never expires\"")
	default:
		e, err = tollgate.ParseExpiry(date)
	}
	if err == nil {
		_, err = c.Service.ExtendToken(r.Context(), s.actor(), t.ID, e)
	}
	if err != nil {
		c.renderTokensWithCardError(w, r, s, t.ID, err)
		return
	}
	http.Redirect(w, r, "/console/tokens?done=extended&open="+t.ID+"#"+t.ID, http.StatusSeeOther)
}

// renderTokensWithCardError shows the tokens page with the card open and
// the message in it.
func (c *Console) renderTokensWithCardError(w http.ResponseWriter, r *http.Request, s *session, id string, err error) {
	q := r.URL.Query()
	q.Set("open", id)
	r.URL.RawQuery = q.Encode()
	msg := c.errText(r, err)
	if f := tollgate.ErrorField(err); f != "" && tollgate.ErrorCode(err) == tollgate.EINVALID {
		msg = f + ": " + msg
	}
	c.renderTokens(w, r, s, statusOf(err), "", "", &cardError{id: id, msg: msg})
}

// revealToken shows a token's secret: as JSON for the page's script
// (secret and filled-in commands), or the tokens page with the card open.
func (c *Console) revealToken(w http.ResponseWriter, r *http.Request, s *session) {
	t, a, err := c.ownToken(r, s)
	if err == nil {
		var secret tollgate.Secret
		if secret, err = c.Service.RevealToken(r.Context(), s.actor(), t.ID); err == nil {
			if wantsJSON(r) {
				tv := c.tokenView(t, a, c.now(), secret.Reveal())
				writeJSON(w, http.StatusOK, map[string]any{"secret": tv.Secret, "commands": tv.Commands})
				return
			}
			c.renderTokens(w, r, s, http.StatusOK, t.ID, secret, nil)
			return
		}
	}
	if wantsJSON(r) {
		writeJSON(w, statusOf(err), map[string]string{"error": c.errText(r, err)})
		return
	}
	c.renderTokensWithCardError(w, r, s, r.PathValue("id"), err)
}

func (c *Console) revokeTokenPage(w http.ResponseWriter, r *http.Request, s *session) {
	t, a, err := c.ownToken(r, s)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	v := c.base(s, "Revoke token")
	v.Token = c.tokenView(t, a, c.now(), "")
	c.render(w, r, http.StatusOK, "revoke", v)
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, s *session) {
	t, _, err := c.ownToken(r, s)
	if err == nil {
		_, err = c.Service.RevokeToken(r.Context(), s.actor(), t.ID)
	}
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	http.Redirect(w, r, "/console/tokens?status=revoked&done=revoked&open="+t.ID+"#"+t.ID, http.StatusSeeOther)
}

func (c *Console) pauseToken(w http.ResponseWriter, r *http.Request, s *session) {
	c.tokenAction(w, r, s, c.Service.PauseToken, "paused")
}

func (c *Console) resumeToken(w http.ResponseWriter, r *http.Request, s *session) {
	c.tokenAction(w, r, s, c.Service.ResumeToken, "resumed")
}

// tokenAction runs a write without form fields on the caller's token and
// goes back to its card.
func (c *Console) tokenAction(w http.ResponseWriter, r *http.Request, s *session, do func(ctx context.Context, actor, id string) (*tollgate.Token, error), done string) {
	t, _, err := c.ownToken(r, s)
	if err == nil {
		_, err = do(r.Context(), s.actor(), t.ID)
	}
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	http.Redirect(w, r, "/console/tokens?done="+done+"&open="+t.ID+"#"+t.ID, http.StatusSeeOther)
}

func (c *Console) requestPackages(w http.ResponseWriter, r *http.Request, s *session) {
	if _, err := c.Service.RequestPackages(r.Context(), s.actor(), s.account.Name); err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	back := "/console/tokens?done=requested"
	if r.PostFormValue("back") == "new" {
		back = "/console/tokens/new"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Audit log")
	const limit = 50
	page := tollgate.AuditPage{Limit: limit + 1}
	if b := r.URL.Query().Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			c.errorPage(w, r, s, http.StatusBadRequest, "before: must be an event id")
			return
		}
		page.Before = n
	}
	evs, err := c.Service.ListAudit(r.Context(), s.account.Name, page)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	if len(evs) > limit {
		evs = evs[:limit]
		v.NextBefore = evs[limit-1].ID
	}
	for _, e := range evs {
		ev := eventView{ID: e.ID, Time: e.Time.UTC().Format("2006-01-02 15:04:05"), Actor: tollgate.EscapeText(e.Actor),
			Action: e.Action, Target: tollgate.EscapeText(e.Target)}
		keys := make([]string, 0, len(e.Changes))
		for k := range e.Changes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ch := e.Changes[k]
			if ch.From == "" {
				ev.Changes = append(ev.Changes, tollgate.EscapeText(fmt.Sprintf("%s: %s", k, ch.To)))
			} else {
				ev.Changes = append(ev.Changes, tollgate.EscapeText(fmt.Sprintf("%s: %s → %s", k, ch.From, ch.To)))
			}
		}
		v.Events = append(v.Events, ev)
	}
	c.render(w, r, http.StatusOK, "audit", v)
}
