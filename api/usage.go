package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/tollgate/tollgate"
)

// Pull insight: an account's (or a token's) pulls per day, and the
// operator's view across accounts. Periods are whole UTC days: since is
// "30d" (today and the 29 days before) or a date; the answer names the
// first day and the day after the last.

// UsageRow is one day × token × repository aggregate.
type UsageRow struct {
	Day        string `json:"day"`
	Token      string `json:"token,omitempty"` // "" for anonymous pulls
	Kind       string `json:"kind"`            // image or package
	Repository string `json:"repository"`
	Pulls      int64  `json:"pulls"`
	Manifests  int64  `json:"manifests"`
	Bytes      int64  `json:"bytes"`
	Addresses  int64  `json:"addresses"`
}

// UsageAddress is a client address of the period.
type UsageAddress struct {
	Address   string    `json:"address"`
	Pulls     int64     `json:"pulls"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// UsageAgent is a client (user agent) of the period.
type UsageAgent struct {
	UserAgent string `json:"user_agent"`
	Pulls     int64  `json:"pulls"`
}

// UsageNetwork is a network a token was used from.
type UsageNetwork struct {
	Token     string    `json:"token"`
	Network   string    `json:"network"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Usage answers GET /api/v1/accounts/{name}/usage and
// GET /api/v1/tokens/{id}/usage.
type Usage struct {
	Account string `json:"account"`
	Token   string `json:"token,omitempty"`
	Since   string `json:"since"` // first day
	Until   string `json:"until"` // the day after the last
	// Days has one entry per day of the period (Token, Kind and
	// Repository empty): the totals.
	Days []UsageRow `json:"days"`
	// Repositories sums the period per repository, most pulls first.
	Repositories []UsageRow `json:"repositories"`
	// Rows are the aggregates themselves (what -o csv prints).
	Rows      []UsageRow     `json:"rows"`
	Addresses []UsageAddress `json:"addresses"`
	Agents    []UsageAgent   `json:"agents"`
	// NewNetworks are networks first seen in the last 7 days by tokens
	// that had been used from another network before.
	NewNetworks []UsageNetwork `json:"new_networks"`
}

// AccountUsage is one account in the overview.
type AccountUsage struct {
	Account string `json:"account"`
	Pulls   int64  `json:"pulls"`
	Bytes   int64  `json:"bytes"`
	LastDay string `json:"last_day"`
}

// UsageOverview answers GET /api/v1/usage (operator only).
type UsageOverview struct {
	Since string         `json:"since"`
	Until string         `json:"until"`
	Top   []AccountUsage `json:"top"`
	// Idle names the active accounts without a pull in the period.
	Idle []string `json:"idle"`
}

// NewNetworkWindow is how long a token's new network is news.
const NewNetworkWindow = 7 * 24 * time.Hour

func (s *Server) usageRoutes() []route {
	const p = "/api/v1"
	return []route{
		{"GET", p + "/accounts/{name}/usage", false, s.accountUsage},
		{"GET", p + "/tokens/{id}/usage", false, s.tokenUsage},
		{"GET", p + "/usage", true, s.usageOverview},
	}
}

func (s *Server) accountUsage(r *http.Request, who *actor) (int, any, error) {
	name := r.PathValue("name")
	if err := account(who, name); err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	return s.usage(r.Context(), name, q.Get("token"), q.Get("since"))
}

func (s *Server) tokenUsage(r *http.Request, who *actor) (int, any, error) {
	t, a, err := s.token(r.Context(), who, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return s.usage(r.Context(), a.Name, t.ID, r.URL.Query().Get("since"))
}

func (s *Server) usage(ctx context.Context, account, token, since string) (int, any, error) {
	now := s.now()
	from, err := tollgate.ParsePeriodStart(since, now)
	if err != nil {
		return 0, nil, err
	}
	rep, err := s.Service.Usage(ctx, account, token, from, tollgate.Day(now).AddDate(0, 0, 1))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, FromUsageReport(rep, now), nil
}

// FromUsageReport is the wire form of a report; now dates new networks.
func FromUsageReport(rep *tollgate.UsageReport, now time.Time) Usage {
	out := Usage{Account: rep.Account.Name, Token: rep.TokenID, Since: day(rep.Since), Until: day(rep.Until),
		Days: []UsageRow{}, Repositories: []UsageRow{}, Rows: []UsageRow{}, Addresses: []UsageAddress{}, Agents: []UsageAgent{}, NewNetworks: []UsageNetwork{}}
	for _, d := range rep.Totals() {
		out.Days = append(out.Days, UsageRow{Day: day(d.Day), Pulls: d.Pulls, Manifests: d.Manifests, Bytes: d.Bytes, Addresses: d.Addresses})
	}
	for _, d := range rep.Repositories() {
		out.Repositories = append(out.Repositories, UsageRow{Kind: d.Kind, Repository: d.Repository, Pulls: d.Pulls, Manifests: d.Manifests, Bytes: d.Bytes})
	}
	for _, d := range rep.Days {
		out.Rows = append(out.Rows, fromUsageDay(d))
	}
	for _, a := range rep.Addresses {
		out.Addresses = append(out.Addresses, UsageAddress{Address: a.Address, Pulls: a.Pulls, FirstSeen: a.First, LastSeen: a.Last})
	}
	for _, a := range rep.Agents {
		out.Agents = append(out.Agents, UsageAgent{UserAgent: a.UserAgent, Pulls: a.Pulls})
	}
	for _, nets := range rep.NewNetworks(now.Add(-NewNetworkWindow)) {
		for _, n := range nets {
			if rep.TokenID == "" || n.TokenID == rep.TokenID {
				out.NewNetworks = append(out.NewNetworks, UsageNetwork{Token: n.TokenID, Network: n.Network, FirstSeen: n.First, LastSeen: n.Last})
			}
		}
	}
	return out
}

func fromUsageDay(d tollgate.UsageDay) UsageRow {
	return UsageRow{Day: day(d.Day), Token: d.TokenID, Kind: d.Kind, Repository: d.Repository,
		Pulls: d.Pulls, Manifests: d.Manifests, Bytes: d.Bytes, Addresses: d.Addresses}
}

// ToUsageDays turns rows back into aggregates (for CSV output).
func ToUsageDays(rows []UsageRow) ([]tollgate.UsageDay, error) {
	out := make([]tollgate.UsageDay, 0, len(rows))
	for _, r := range rows {
		d, err := time.Parse(time.DateOnly, r.Day)
		if err != nil {
			return nil, tollgate.Errorf(tollgate.EINTERNAL, "usage row with day %q", r.Day)
		}
		out = append(out, tollgate.UsageDay{UsageKey: tollgate.UsageKey{Day: d, TokenID: r.Token, Kind: r.Kind, Repository: r.Repository},
			Pulls: r.Pulls, Manifests: r.Manifests, Bytes: r.Bytes, Addresses: r.Addresses})
	}
	return out, nil
}

func (s *Server) usageOverview(r *http.Request, _ *actor) (int, any, error) {
	now := s.now()
	from, err := tollgate.ParsePeriodStart(r.URL.Query().Get("since"), now)
	if err != nil {
		return 0, nil, err
	}
	ov, err := s.Service.UsageOverview(r.Context(), from, tollgate.Day(now).AddDate(0, 0, 1), 50)
	if err != nil {
		return 0, nil, err
	}
	out := UsageOverview{Since: day(ov.Since), Until: day(ov.Until), Top: []AccountUsage{}, Idle: []string{}}
	for _, a := range ov.Top {
		out.Top = append(out.Top, AccountUsage{Account: a.Account, Pulls: a.Pulls, Bytes: a.Bytes, LastDay: day(a.LastDay)})
	}
	for _, a := range ov.Idle {
		out.Idle = append(out.Idle, a.Name)
	}
	return http.StatusOK, out, nil
}

func day(t time.Time) string { return t.Format(time.DateOnly) }

// Usage returns an account's usage (token "" for all its tokens) since
// "30d" or a date.
func (c *Client) Usage(ctx context.Context, account, token, since string) (*Usage, error) {
	q := url.Values{}
	if token != "" {
		q.Set("token", token)
	}
	if since != "" {
		q.Set("since", since)
	}
	var out Usage
	if err := c.do(ctx, "GET", "accounts/"+url.PathEscape(account)+"/usage", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UsageOverview returns the operator's view across accounts.
func (c *Client) UsageOverview(ctx context.Context, since string) (*UsageOverview, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	var out UsageOverview
	if err := c.do(ctx, "GET", "usage", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
