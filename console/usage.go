package console

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/usage"
)

// The Usage page: an account's pulls and bytes per day as SVG charts,
// top repositories, client addresses (first and last seen) and clients,
// networks tokens were newly used from; a period picker and a CSV
// download. Token cards show a 30-day sparkline and flag a token used
// from a new network (/24 or /64) in the last 7 days. Every role may
// read usage; addresses are the account's own clients'.

// newNetworkWindow is how long a token's new network is flagged.
const newNetworkWindow = 7 * 24 * time.Hour

// periods are the picker's choices.
var periods = []struct{ Value, Label string }{
	{"7d", "7 days"}, {"30d", "30 days"}, {"90d", "90 days"}, {"365d", "12 months"},
}

type usageRow struct {
	Name, Kind       string
	Pulls, Manifests int64
	Bytes            string
}

type addressRow struct {
	Address, First, Last string
	Pulls                int64
}

type networkRow struct {
	Token, TokenName, Network, First string
}

// usageView is the Usage page's data, on top of the common view.
type usageView struct {
	*view
	Since        string
	Periods      []struct{ Value, Label string }
	TokenID      string
	TokenChoices []*tokenView
	From, To     string // first and last day shown
	PullsChart   template.HTML
	BytesChart   template.HTML
	Pulls        int64
	Manifests    int64
	Bytes        string
	Repos        []usageRow
	Addresses    []addressRow
	Agents       []usageRow
	NewNetworks  []networkRow
	CSV          string // the download's URL
}

// cardUsage is a token card's usage line.
type cardUsage struct {
	Spark       template.HTML
	Pulls       int64
	Bytes       string
	NewNetworks []string // networks first seen in the last 7 days
}

var (
	usageOnce sync.Once
	usageTmpl *template.Template
)

func usageTemplate() *template.Template {
	usageOnce.Do(func() {
		usageTmpl = template.Must(template.New("layout.html").Funcs(funcs).
			ParseFS(templateFS, "templates/layout.html", "templates/card*.html", "templates/usage.html"))
	})
	return usageTmpl
}

// period reads ?since= and ?token= (a token of the account, or "").
func (c *Console) usagePeriod(r *http.Request) (since, token string, from, until time.Time, err error) {
	q := r.URL.Query()
	since, token = q.Get("since"), q.Get("token")
	if since == "" {
		since = "30d"
	}
	now := c.now()
	from, err = tollgate.ParsePeriodStart(since, now)
	return since, token, from, tollgate.Day(now).AddDate(0, 0, 1), err
}

func (c *Console) usagePage(w http.ResponseWriter, r *http.Request, s *session) {
	since, token, from, until, err := c.usagePeriod(r)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	rep, err := c.Service.Usage(r.Context(), s.account.Name, token, from, until)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	toks, a, err := c.Service.ListTokens(r.Context(), s.account.Name, "")
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	now := c.now()
	v := &usageView{view: c.base(s, "Usage"), Since: since, Periods: periods, TokenID: token,
		From: from.Format(time.DateOnly), To: until.AddDate(0, 0, -1).Format(time.DateOnly)}
	names := map[string]string{}
	for _, t := range toks {
		tv := &tokenView{ID: t.ID, Name: tollgate.EscapeText(t.Name), Status: string(t.Status(a, now))}
		v.TokenChoices = append(v.TokenChoices, tv)
		names[t.ID] = tv.Name
	}
	var pulls, bytes []bar
	var total int64
	for _, d := range rep.Totals() {
		day := d.Day.Format(time.DateOnly)
		pulls = append(pulls, bar{Label: day, Value: d.Pulls, Text: pullsText(d.Pulls)})
		bytes = append(bytes, bar{Label: day, Value: d.Bytes, Text: usage.HumanBytes(d.Bytes)})
		v.Pulls += d.Pulls
		v.Manifests += d.Manifests
		total += d.Bytes
	}
	v.Bytes = usage.HumanBytes(total)
	v.PullsChart = barChart("Pulls per day", pulls)
	v.BytesChart = barChart("Bytes sent per day", bytes)
	for _, d := range rep.Repositories() {
		v.Repos = append(v.Repos, usageRow{Name: tollgate.EscapeText(d.Repository), Kind: d.Kind, Pulls: d.Pulls, Manifests: d.Manifests, Bytes: usage.HumanBytes(d.Bytes)})
	}
	for _, ad := range rep.Addresses {
		v.Addresses = append(v.Addresses, addressRow{Address: tollgate.EscapeText(ad.Address), Pulls: ad.Pulls, First: fmtTime(ad.First), Last: fmtTime(ad.Last)})
	}
	for _, ag := range rep.Agents {
		v.Agents = append(v.Agents, usageRow{Name: tollgate.EscapeText(ag.UserAgent), Pulls: ag.Pulls})
	}
	for id, nets := range rep.NewNetworks(now.Add(-newNetworkWindow)) {
		if token != "" && id != token {
			continue
		}
		for _, n := range nets {
			v.NewNetworks = append(v.NewNetworks, networkRow{Token: id, TokenName: names[id], Network: n.Network, First: fmtTime(n.First)})
		}
	}
	q := url.Values{"since": {since}}
	if token != "" {
		q.Set("token", token)
	}
	v.CSV = "/console/usage.csv?" + q.Encode()
	buf := &bytesBuffer{}
	if err := usageTemplate().ExecuteTemplate(buf, "layout.html", v); err != nil {
		c.log().ErrorContext(r.Context(), "console: template", "page", "usage", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.b)
}

// usageCSV downloads the period's aggregates, one row per day × token ×
// repository (usage.WriteCSV, the CLI's -o csv).
func (c *Console) usageCSV(w http.ResponseWriter, r *http.Request, s *session) {
	_, token, from, until, err := c.usagePeriod(r)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	rep, err := c.Service.Usage(r.Context(), s.account.Name, token, from, until)
	if err != nil {
		c.errorPage(w, r, s, statusOf(err), c.errText(r, err))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="usage-%s-%s.csv"`, s.account.Name, from.Format("20060102")))
	usage.WriteCSV(w, rep.Days)
}

// attachUsage puts each card's last 30 days on it. A store that cannot
// answer leaves the cards without usage: the token list still works.
func (c *Console) attachUsage(ctx context.Context, s *session, cards []*tokenView) {
	if len(cards) == 0 {
		return
	}
	now := c.now()
	until := tollgate.Day(now).AddDate(0, 0, 1)
	rep, err := c.Service.Usage(ctx, s.account.Name, "", until.AddDate(0, 0, -30), until)
	if err != nil {
		c.log().WarnContext(ctx, "console: token usage unavailable", "err", err)
		return
	}
	type acc struct {
		perDay map[time.Time]int64
		pulls  int64
		bytes  int64
	}
	by := map[string]*acc{}
	for _, d := range rep.Days {
		a := by[d.TokenID]
		if a == nil {
			a = &acc{perDay: map[time.Time]int64{}}
			by[d.TokenID] = a
		}
		a.perDay[d.Day] += d.Pulls
		a.pulls += d.Pulls
		a.bytes += d.Bytes
	}
	fresh := rep.NewNetworks(now.Add(-newNetworkWindow))
	for _, t := range cards {
		a := by[t.ID]
		if a == nil {
			a = &acc{perDay: map[time.Time]int64{}}
		}
		var vals []int64
		for d := rep.Since; d.Before(until); d = d.AddDate(0, 0, 1) {
			vals = append(vals, a.perDay[d])
		}
		u := &cardUsage{Spark: sparkline(pullsText(a.pulls)+" in 30 days", vals), Pulls: a.pulls, Bytes: usage.HumanBytes(a.bytes)}
		for _, n := range fresh[t.ID] {
			u.NewNetworks = append(u.NewNetworks, n.Network+" since "+fmtTime(n.First))
		}
		t.Usage = u
	}
}

type bytesBuffer struct{ b []byte }

func (b *bytesBuffer) Write(p []byte) (int, error) { b.b = append(b.b, p...); return len(p), nil }

func pullsText(n int64) string {
	if n == 1 {
		return "1 pull"
	}
	return fmt.Sprintf("%d pulls", n)
}
