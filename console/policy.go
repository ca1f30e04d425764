package console

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/usage"
)

// Per-token policy on the card (the "card-policy" template): usage
// against the token's monthly caps, its refused attempts (time, address,
// client, reason), and the "lock to the addresses seen in the last 30
// days" action with its confirm page. The tokens page's stale filters
// (never used, unused for N days, used from many addresses) are here too.

// seenWindow is how far back "lock to seen addresses" looks (the usage
// detail's default retention).
const seenWindow = 30

// manyAddresses is the default of the "used from many addresses" filter:
// distinct client addresses in the last 30 days.
const manyAddresses = 10

// cardPolicy is what the card-policy template shows.
type cardPolicy struct {
	Cap      *capView
	Refusals []refusalView
}

// capView is a capped token's month against its caps.
type capView struct {
	Pulls, MaxPulls int64
	Bytes, MaxBytes string // human; MaxBytes "" when bytes are not capped
	PullsPct        int    // 0–100 of the pull cap, for the meter
	BytesPct        int
	HasPulls        bool
	HasBytes        bool
	Resets          string
	Reached         bool
}

type refusalView struct {
	Time, Address, Client, Reason string
}

// attachPolicy puts caps usage and refused attempts on the cards of
// tokens that are not revoked. A source that cannot answer leaves its
// part out: the token list still works.
func (c *Console) attachPolicy(ctx context.Context, cards []*tokenView, toks map[string]*tollgate.Token) {
	now := c.now()
	var ids []string
	for _, v := range cards {
		if t := toks[v.ID]; t != nil && t.RevokedAt == nil {
			ids = append(ids, t.ID)
		}
	}
	refusals, err := c.Service.RefusalsOf(ctx, ids)
	if err != nil {
		c.log().WarnContext(ctx, "console: refused attempts unavailable", "err", err)
	}
	// The caps' counters live in Redis: while it does not answer, each
	// read waits its own timeout, so all of a page's reads share one.
	capCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for _, v := range cards {
		t := toks[v.ID]
		if t == nil || t.RevokedAt != nil {
			continue
		}
		p := &cardPolicy{}
		if t.Policy.Capped() && c.MonthUsage != nil {
			pulls, bytes := c.MonthUsage(capCtx, t.ID)
			p.Cap = capOf(t.Policy, pulls, bytes, now)
		}
		for _, r := range refusals[t.ID] {
			reason := tollgate.RefusalReasonText(r.Reason)
			p.Refusals = append(p.Refusals, refusalView{Time: fmtTime(r.At), Address: tollgate.EscapeText(r.Address),
				Client: tollgate.EscapeText(r.UserAgent), Reason: tollgate.EscapeText(reason)})
		}
		v.Policy = p
	}
}

func capOf(p tollgate.TokenPolicy, pulls, bytes int64, now time.Time) *capView {
	cv := &capView{Pulls: pulls, MaxPulls: p.MaxPulls, Bytes: usage.HumanBytes(bytes), HasPulls: p.MaxPulls > 0, HasBytes: p.MaxBytes > 0,
		Resets: tollgate.CapResetsAt(now).Format("2006-01-02") + " 00:00 UTC"}
	pct := func(n, of int64) int { return int(min(100, n*100/of)) }
	if cv.HasPulls {
		cv.PullsPct = pct(pulls, p.MaxPulls)
		cv.Reached = pulls >= p.MaxPulls
	}
	if cv.HasBytes {
		cv.MaxBytes = usage.HumanBytes(p.MaxBytes)
		cv.BytesPct = pct(bytes, p.MaxBytes)
		cv.Reached = cv.Reached || bytes >= p.MaxBytes
	}
	return cv
}

// staleFilter is the tokens page's stale-token filter.
type staleFilter struct {
	Kind     string // "", never, unused, addresses
	Days     int    // unused: for at least this many days
	Min      int    // addresses: at least this many in 30 days
	counts   map[string]int
	Selected bool
}

// readStale reads ?stale=never|unused|addresses (&days=90, &min=10).
func readStale(r *http.Request) staleFilter {
	q := r.URL.Query()
	f := staleFilter{Kind: q.Get("stale"), Days: 90, Min: manyAddresses}
	if n, err := strconv.Atoi(q.Get("days")); err == nil && n >= 1 && n <= 3650 {
		f.Days = n
	}
	if n, err := strconv.Atoi(q.Get("min")); err == nil && n >= 2 && n <= 10000 {
		f.Min = n
	}
	switch f.Kind {
	case "never", "unused", "addresses":
		f.Selected = true
	default:
		f.Kind = ""
	}
	return f
}

// keeps reports whether t passes the filter.
func (f staleFilter) keeps(t *tollgate.Token, now time.Time) bool {
	switch f.Kind {
	case "never":
		return t.RevokedAt == nil && t.LastUsedAt == nil
	case "unused":
		return t.UnusedFor(now, time.Duration(f.Days)*24*time.Hour)
	case "addresses":
		return t.RevokedAt == nil && f.counts[t.ID] >= f.Min
	}
	return true
}

// lockView is the "lock to seen addresses" confirm page's data.
type lockView struct {
	*view
	Seen     []seenAddress
	Networks string // the list posted on confirm, one per line
	Current  []string
	TooMany  int // distinct addresses when more than a token may list
	Days     int
}

type seenAddress struct {
	Network, First, Last string
	Pulls                int64
}

// seenNetworks returns the token's client addresses of the last 30 days
// as exact networks (/32, /128), most used first, and the number of
// distinct addresses.
func (c *Console) seenNetworks(ctx context.Context, s *session, t *tollgate.Token) ([]seenAddress, int, error) {
	until := tollgate.Day(c.now()).AddDate(0, 0, 1)
	counts, err := c.Service.TokenAddressCounts(ctx, s.account.Name, seenWindow)
	if err != nil {
		return nil, 0, err
	}
	rep, err := c.Service.Usage(ctx, s.account.Name, t.ID, until.AddDate(0, 0, -seenWindow), until)
	if err != nil {
		return nil, 0, err
	}
	var out []seenAddress
	for _, a := range rep.Addresses {
		addr, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		addr = addr.Unmap().WithZone("")
		out = append(out, seenAddress{Network: netip.PrefixFrom(addr, addr.BitLen()).String(), First: fmtTime(a.First), Last: fmtTime(a.Last), Pulls: a.Pulls})
	}
	return out, counts[t.ID], nil
}

func (c *Console) lockPage(w http.ResponseWriter, r *http.Request, s *session) {
	t, a, err := c.ownToken(r, s)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	seen, distinct, err := c.seenNetworks(r.Context(), s, t)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	v := &lockView{view: c.base(s, "Lock to seen addresses"), Seen: seen, Current: tollgate.FormatNetworks(t.Policy.Networks), Days: seenWindow}
	v.Token = c.tokenView(t, a, c.now(), "")
	if distinct > tollgate.MaxPolicyNetworks {
		v.TooMany = distinct
	}
	var nets []string
	for _, a := range seen {
		nets = append(nets, a.Network)
	}
	v.Networks = strings.Join(nets, "\n")
	if t.RevokedAt != nil {
		v.Error = "Token " + t.ID + " is revoked; revocation is final and it cannot be edited."
	}
	c.render(w, r, http.StatusOK, "lock", v)
}

// lockToken sets the token's networks to the list the confirm page
// showed; EditToken audits the change (networks: before → after).
func (c *Console) lockToken(w http.ResponseWriter, r *http.Request, s *session) {
	t, _, err := c.ownToken(r, s)
	if err == nil {
		var nets []netip.Prefix
		list := splitList(r.PostFormValue("networks"))
		if len(list) == 0 {
			err = tollgate.FieldError("networks", "no address to lock the token to: it was not used in the last %d days", seenWindow)
		} else if nets, err = tollgate.ParseNetworks("networks", list); err == nil {
			_, err = c.Service.EditToken(r.Context(), s.actor(), t.ID, tollgate.TokenEdit{Networks: &nets})
		}
	}
	if err != nil {
		c.renderTokensWithCardError(w, r, s, r.PathValue("id"), err)
		return
	}
	http.Redirect(w, r, "/console/tokens?done=locked&open="+t.ID+"#"+t.ID, http.StatusSeeOther)
}

// policyForm is the token form's policy beyond images and networks:
// package repositories, a valid-from date and the monthly caps.
type policyForm struct {
	packages           []string
	validFrom          *time.Time
	maxPulls, maxBytes int64
}

// readPolicyForm reads restrict_packages, valid_from (a date), max_pulls
// and max_bytes (a size: 500 MiB, 10 GiB, or bytes) and keeps them in
// v.Form to fill the form again.
func readPolicyForm(r *http.Request, v *view) (policyForm, error) {
	var f policyForm
	for _, k := range []string{"restrict_packages", "valid_from", "max_pulls", "max_bytes"} {
		v.Form[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	f.packages = splitList(v.Form["restrict_packages"])
	if d := v.Form["valid_from"]; d != "" {
		t, err := tollgate.ParseValidFrom(d)
		if err != nil {
			return f, err
		}
		f.validFrom = &t
	}
	if n := v.Form["max_pulls"]; n != "" {
		var err error
		if f.maxPulls, err = strconv.ParseInt(n, 10, 64); err != nil || f.maxPulls < 0 {
			return f, tollgate.FieldError("max_pulls", "must be a number of pulls (0 or empty: no cap)")
		}
	}
	var err error
	f.maxBytes, err = parseSize("max_bytes", v.Form["max_bytes"])
	return f, err
}

// fillPolicyForm puts p's values in the edit form.
func fillPolicyForm(v *view, p tollgate.TokenPolicy) {
	v.Form["restrict_packages"] = strings.Join(p.Packages, "\n")
	if p.ValidFrom != nil {
		v.Form["valid_from"] = p.ValidFrom.UTC().Format("2006-01-02")
	}
	if p.MaxPulls > 0 {
		v.Form["max_pulls"] = strconv.FormatInt(p.MaxPulls, 10)
	}
	v.Form["max_bytes"] = formatSize(p.MaxBytes)
}

// apply sets the form's parts on a new token's policy.
func (f policyForm) apply(p *tollgate.TokenPolicy) {
	p.Packages, p.ValidFrom, p.MaxPulls, p.MaxBytes = f.packages, f.validFrom, f.maxPulls, f.maxBytes
}

// edit asks for what the form changed of t's policy, nothing else. A
// valid-from date shown on the form (its day) stands for the stored time.
func (f policyForm) edit(t *tollgate.Token, e *tollgate.TokenEdit) {
	if !slices.Equal(f.packages, t.Policy.Packages) {
		e.RestrictPackages = &f.packages
	}
	day := func(p *time.Time) string {
		if p == nil {
			return ""
		}
		return p.UTC().Format("2006-01-02")
	}
	if day(f.validFrom) != day(t.Policy.ValidFrom) {
		vf := time.Time{}
		if f.validFrom != nil {
			vf = *f.validFrom
		}
		e.ValidFrom = &vf
	}
	if f.maxPulls != t.Policy.MaxPulls {
		e.MaxPulls = &f.maxPulls
	}
	if f.maxBytes != t.Policy.MaxBytes {
		e.MaxBytes = &f.maxBytes
	}
}

var sizeUnits = []struct {
	name string
	n    int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// parseSize reads a byte count: "" or 0 (none), a number of bytes, or a
// whole number of KiB, MiB, GiB or TiB ("500 MiB").
func parseSize(field, s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.name); ok {
			s, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, tollgate.FieldError(field, "must be a size like 500 MiB or 10 GiB, or a number of bytes (empty: no cap)")
	}
	return n * mult, nil
}

// formatSize is parseSize's inverse, exact: the largest unit that divides n.
func formatSize(n int64) string {
	if n <= 0 {
		return ""
	}
	for _, u := range sizeUnits {
		if n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
