package console

import (
	"context"
	"net/http"
	"net/netip"
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

// refusalReasons says in words what a refusal's reason label means.
var refusalReasons = map[string]string{
	"address_not_allowed": "outside its networks",
	"paused":              "paused",
	"revoked":             "revoked",
	"expired":             "expired",
	"suspended":           "account suspended",
	"not_yet_valid":       "before its valid-from date",
	"restricted":          "outside its restrictions",
	"not_entitled":        "not in the subscription",
	"wrong_scope":         "scope does not cover it",
	"cap_reached":         "monthly cap reached",
}

// attachPolicy puts caps usage and refused attempts on the cards of
// tokens that are not revoked. A source that cannot answer leaves its
// part out: the token list still works.
func (c *Console) attachPolicy(ctx context.Context, cards []*tokenView, toks map[string]*tollgate.Token) {
	now := c.now()
	for _, v := range cards {
		t := toks[v.ID]
		if t == nil || t.RevokedAt != nil {
			continue
		}
		p := &cardPolicy{}
		if t.Policy.Capped() && c.MonthUsage != nil {
			pulls, bytes := c.MonthUsage(ctx, t.ID)
			p.Cap = capOf(t.Policy, pulls, bytes, now)
		}
		rs, err := c.Service.Refusals(ctx, t.ID)
		if err != nil {
			c.log().WarnContext(ctx, "console: refused attempts unavailable", "err", err)
		}
		for _, r := range rs {
			reason := refusalReasons[r.Reason]
			if reason == "" {
				reason = r.Reason
			}
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
