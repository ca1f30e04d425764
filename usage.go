package tollgate

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Pull insight: the edge hands every authorized pull to a recorder as a
// PullEvent (package usage), which folds them into UsageDeltas per token ×
// repository × UTC day and adds those, in batches, to the store through
// Service.RecordPulls. Every replica writes its own deltas; they add up.
//
// What is kept: daily aggregates (UsageDay: pulls, manifest fetches, bytes,
// distinct client addresses) for months, and detail (per client address:
// pulls, first and last seen; per user agent: pulls) for days. Networks a
// token was used from (/24 for IPv4, /64 for IPv6) are kept with the
// aggregates, so that a token seen from a new network stands out.

// PullKind says what an event fetched.
type PullKind string

const (
	PullManifest PullKind = "manifest" // an image manifest (GET)
	PullBlob     PullKind = "blob"     // an image layer or config (GET)
	PullPackage  PullKind = "package"  // a file of an apt or apk repository (GET)
)

// Repository kinds of the aggregates.
const (
	UsageImage   = "image"   // Repository is an image repository
	UsagePackage = "package" // Repository is "apt/NAME" or "apk/NAME"
)

// PullEvent is one authorized GET the edge answered. It holds no secret:
// the token's public id, never its secret.
type PullEvent struct {
	Kind PullKind
	// TokenID is the registry token's id; "" for an anonymous pull.
	TokenID   string
	AccountID string
	Account   string // the account's name
	// Repository is the image repository (public name), or "apt/NAME" /
	// "apk/NAME" for a package repository.
	Repository string
	Reference  string // tag or digest of a manifest, digest of a blob
	Digest     string // the manifest's Docker-Content-Digest, if any
	// Platform is, for a manifest fetched by digest that an index fetched
	// before listed, the platform the index gave it ("linux/arm64/v8").
	Platform string
	Path     string // the package file below its repository
	Status   int    // the HTTP status sent
	// Bytes is how many body bytes were handed to the connection;
	// Complete says whether that was the whole body (false when the
	// client went away mid-way or the length was unknown and cut short).
	Bytes     int64
	Complete  bool
	ClientIP  string
	UserAgent string
	At        time.Time
}

// UsageKind is the aggregate kind of an event's repository.
func (e *PullEvent) UsageKind() string {
	if e.Kind == PullPackage {
		return UsagePackage
	}
	return UsageImage
}

// UsageKey names one daily aggregate. Day is midnight UTC.
type UsageKey struct {
	Day        time.Time
	TokenID    string // "" for anonymous pulls
	AccountID  string // "" for anonymous pulls
	Kind       string // UsageImage or UsagePackage
	Repository string
}

// UsageDelta is what one replica adds to one daily aggregate.
type UsageDelta struct {
	UsageKey
	Pulls     int64 // image pulls (see package usage) and package downloads
	Manifests int64 // manifest GETs
	Bytes     int64 // body bytes sent (manifests, blobs, package files)
	Addresses []AddressUse
	Agents    []AgentUse
}

// AddressUse is one client address's share of a delta or a period.
type AddressUse struct {
	Address     string
	Pulls       int64 // requests recorded from the address
	First, Last time.Time
}

// AgentUse is one user agent's share of a delta or a period.
type AgentUse struct {
	UserAgent string
	Pulls     int64
}

// UsageDay is one stored daily aggregate.
type UsageDay struct {
	UsageKey
	Pulls, Manifests, Bytes int64
	// Addresses is the number of distinct client addresses that day,
	// across replicas.
	Addresses int64
}

// TokenNetwork is a network (/24 or /64) a token was used from.
type TokenNetwork struct {
	TokenID     string
	Network     string
	First, Last time.Time
}

// AccountUsage is an account's total over a period.
type AccountUsage struct {
	AccountID string
	Account   string // name, filled by Service
	Pulls     int64
	Bytes     int64
	LastDay   time.Time // zero: no pull in the period
}

// UsageQuery selects aggregates: one account (and optionally one token),
// days in [Since, Until).
type UsageQuery struct {
	AccountID string
	TokenID   string // "": every token of the account
	Since     time.Time
	Until     time.Time
}

// UsageTx is the pull-usage part of a transaction. The Tx values of
// store/sqlite and store/postgres implement it; Service reaches it with a
// type assertion so that Tx itself stays unchanged. Errors: EUNAVAILABLE
// when the database cannot be reached, EINTERNAL otherwise (a write
// inside View included); nothing returns ENOTFOUND or ECONFLICT.
type UsageTx interface {
	// AddUsage adds each delta to its daily aggregate, creating it if
	// needed: counts add up, address first/last seen widen, and the
	// distinct address count is recounted from the stored detail so that
	// replicas writing the same key agree. Rows are written in key order
	// (concurrent writers do not deadlock).
	AddUsage(ctx context.Context, deltas []UsageDelta) error
	// SeeNetworks records networks tokens were used from: first seen
	// never moves later, last seen never earlier.
	SeeNetworks(ctx context.Context, nets []TokenNetwork) error
	// UsageDays returns the aggregates q selects, by day then repository.
	UsageDays(ctx context.Context, q UsageQuery) ([]UsageDay, error)
	// UsageAddresses returns the client addresses of the period with
	// pulls and first/last seen, most pulls first, at most limit.
	UsageAddresses(ctx context.Context, q UsageQuery, limit int) ([]AddressUse, error)
	// UsageAgents returns the period's user agents, most pulls first.
	UsageAgents(ctx context.Context, q UsageQuery, limit int) ([]AgentUse, error)
	// TokenNetworks returns the networks of the account's tokens, by
	// token then first seen.
	TokenNetworks(ctx context.Context, accountID string) ([]TokenNetwork, error)
	// UsageByAccount sums the aggregates of [since, until) per account
	// (anonymous pulls excluded), most pulls first.
	UsageByAccount(ctx context.Context, since, until time.Time) ([]AccountUsage, error)
	// PruneUsage deletes detail of days before detailBefore, and
	// aggregates and networks last seen before aggregatesBefore. It says
	// how many rows went.
	PruneUsage(ctx context.Context, detailBefore, aggregatesBefore time.Time) (int64, error)
}

func usageTx(tx Tx) (UsageTx, error) {
	u, ok := tx.(UsageTx)
	if !ok {
		return nil, Internal(fmt.Errorf("store %T does not record pull usage", tx))
	}
	return u, nil
}

// Day returns midnight UTC of t's day.
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// NetworkOf returns the /24 (IPv4) or /64 (IPv6) holding addr, or "" if
// addr is not an address.
func NetworkOf(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// RecordPulls adds a batch of deltas to the store in one transaction,
// with the networks the batch's tokens were seen from.
func (s *Service) RecordPulls(ctx context.Context, deltas []UsageDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	nets := map[[2]string]*TokenNetwork{}
	for _, d := range deltas {
		if d.TokenID == "" {
			continue
		}
		for _, a := range d.Addresses {
			n := NetworkOf(a.Address)
			if n == "" {
				continue
			}
			k := [2]string{d.TokenID, n}
			if cur := nets[k]; cur != nil {
				cur.First, cur.Last = minTime(cur.First, a.First), maxTime(cur.Last, a.Last)
			} else {
				nets[k] = &TokenNetwork{TokenID: d.TokenID, Network: n, First: a.First, Last: a.Last}
			}
		}
	}
	list := make([]TokenNetwork, 0, len(nets))
	for _, n := range nets {
		list = append(list, *n)
	}
	slices.SortFunc(list, func(a, b TokenNetwork) int {
		return strings.Compare(a.TokenID+"\x00"+a.Network, b.TokenID+"\x00"+b.Network)
	})
	accounts := map[string]string{} // token id → account id
	for _, d := range deltas {
		if d.TokenID != "" {
			accounts[d.TokenID] = d.AccountID
		}
	}
	return s.Store.Update(ctx, func(tx Tx) error {
		u, err := usageTx(tx)
		if err != nil {
			return err
		}
		if err := u.AddUsage(ctx, deltas); err != nil {
			return err
		}
		fresh, err := s.newNetworks(ctx, tx, u, list, accounts)
		if err != nil {
			return err
		}
		if err := u.SeeNetworks(ctx, list); err != nil {
			return err
		}
		for _, n := range fresh {
			t, err := tx.TokenByID(ctx, n.TokenID)
			if err != nil {
				continue // deleted meanwhile: nobody to tell
			}
			if t.Ephemeral() {
				continue // a workload's minutes-long credential: CI runners' addresses vary by design
			}
			a, err := tx.AccountByID(ctx, t.AccountID, false)
			if err != nil {
				return err
			}
			if err := s.emitNewNetwork(ctx, tx, a, t, n.Network, s.now()); err != nil {
				return err
			}
		}
		return nil
	})
}

// newNetworks returns the networks of list that their token, already used
// from some other network, had never been seen from.
func (s *Service) newNetworks(ctx context.Context, tx Tx, u UsageTx, list []TokenNetwork, accounts map[string]string) ([]TokenNetwork, error) {
	known := map[string]map[string]bool{} // token → networks
	seen := map[string]bool{}             // account ids read
	var out []TokenNetwork
	for _, n := range list {
		acct := accounts[n.TokenID]
		if acct == "" {
			continue
		}
		if !seen[acct] {
			seen[acct] = true
			nets, err := u.TokenNetworks(ctx, acct)
			if err != nil {
				return nil, err
			}
			for _, k := range nets {
				if known[k.TokenID] == nil {
					known[k.TokenID] = map[string]bool{}
				}
				known[k.TokenID][k.Network] = true
			}
		}
		if len(known[n.TokenID]) > 0 && !known[n.TokenID][n.Network] {
			out = append(out, n)
		}
	}
	return out, nil
}

// UsageReport is an account's (or one token's) usage over a period.
type UsageReport struct {
	Account      *Account
	TokenID      string
	Since, Until time.Time
	Days         []UsageDay // per day and repository
	Addresses    []AddressUse
	Agents       []AgentUse
	Networks     []TokenNetwork // of every token of the account
}

// Totals sums the report per day: one entry per day of the period, in
// order, zero where nothing was pulled.
func (r *UsageReport) Totals() []UsageDay {
	var out []UsageDay
	i := 0
	for d := r.Since; d.Before(r.Until); d = d.AddDate(0, 0, 1) {
		t := UsageDay{UsageKey: UsageKey{Day: d}}
		for ; i < len(r.Days) && !r.Days[i].Day.After(d); i++ {
			if r.Days[i].Day.Equal(d) {
				t.Pulls += r.Days[i].Pulls
				t.Manifests += r.Days[i].Manifests
				t.Bytes += r.Days[i].Bytes
				t.Addresses += r.Days[i].Addresses
			}
		}
		out = append(out, t)
	}
	return out
}

// Repositories sums the report per repository, most pulls first.
func (r *UsageReport) Repositories() []UsageDay {
	by := map[[2]string]*UsageDay{}
	var out []*UsageDay
	for _, d := range r.Days {
		k := [2]string{d.Kind, d.Repository}
		cur := by[k]
		if cur == nil {
			cur = &UsageDay{UsageKey: UsageKey{Kind: d.Kind, Repository: d.Repository}}
			by[k] = cur
			out = append(out, cur)
		}
		cur.Pulls += d.Pulls
		cur.Manifests += d.Manifests
		cur.Bytes += d.Bytes
	}
	slices.SortStableFunc(out, func(a, b *UsageDay) int {
		if a.Pulls != b.Pulls {
			return int(b.Pulls - a.Pulls)
		}
		return int(b.Bytes - a.Bytes)
	})
	res := make([]UsageDay, len(out))
	for i, d := range out {
		res[i] = *d
	}
	return res
}

// NewNetworks returns, per token, the networks first seen at or after
// since when the token had been used from another network before: a
// token that shows up somewhere new.
func (r *UsageReport) NewNetworks(since time.Time) map[string][]TokenNetwork {
	out := map[string][]TokenNetwork{}
	byToken := map[string][]TokenNetwork{}
	for _, n := range r.Networks {
		byToken[n.TokenID] = append(byToken[n.TokenID], n)
	}
	for id, nets := range byToken {
		var older bool
		for _, n := range nets {
			if n.First.Before(since) {
				older = true
			}
		}
		if !older {
			continue
		}
		for _, n := range nets {
			if !n.First.Before(since) {
				out[id] = append(out[id], n)
			}
		}
	}
	return out
}

// MaxUsagePeriod bounds a usage query (the aggregates' default retention).
const MaxUsagePeriod = 400 * 24 * time.Hour

// Usage reports an account's usage (or one of its tokens') for the days
// in [since, until). ENOTFOUND for an unknown account or a token of
// another account; EINVALID for an empty or too long period.
func (s *Service) Usage(ctx context.Context, accountName, tokenID string, since, until time.Time) (*UsageReport, error) {
	since, until = Day(since), Day(until)
	if !since.Before(until) {
		return nil, FieldError("since", "must be before the end of the period")
	}
	if until.Sub(since) > MaxUsagePeriod {
		return nil, FieldError("since", "the period may be at most %d days", int(MaxUsagePeriod/(24*time.Hour)))
	}
	rep := &UsageReport{TokenID: tokenID, Since: since, Until: until}
	err := s.Store.View(ctx, func(tx Tx) error {
		u, err := usageTx(tx)
		if err != nil {
			return err
		}
		a, err := tx.AccountByName(ctx, accountName, false)
		if err != nil {
			return accountNotFound(err, accountName)
		}
		rep.Account = a
		if tokenID != "" {
			t, err := tx.TokenByID(ctx, tokenID)
			if err != nil || t.AccountID != a.ID {
				return Errorf(ENOTFOUND, "token %s not found", tokenID)
			}
		}
		q := UsageQuery{AccountID: a.ID, TokenID: tokenID, Since: since, Until: until}
		if rep.Days, err = u.UsageDays(ctx, q); err != nil {
			return err
		}
		if rep.Addresses, err = u.UsageAddresses(ctx, q, 50); err != nil {
			return err
		}
		if rep.Agents, err = u.UsageAgents(ctx, q, 20); err != nil {
			return err
		}
		rep.Networks, err = u.TokenNetworks(ctx, a.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// UsageOverview is the operator's view across accounts.
type UsageOverview struct {
	Since, Until time.Time
	Top          []AccountUsage // most pulls first
	// Idle lists active accounts without a pull in the period.
	Idle []*Account
}

// UsageOverview reports the accounts with the most pulls in [since,
// until) and the active accounts with none.
func (s *Service) UsageOverview(ctx context.Context, since, until time.Time, top int) (*UsageOverview, error) {
	since, until = Day(since), Day(until)
	if !since.Before(until) {
		return nil, FieldError("since", "must be before the end of the period")
	}
	ov := &UsageOverview{Since: since, Until: until}
	err := s.Store.View(ctx, func(tx Tx) error {
		u, err := usageTx(tx)
		if err != nil {
			return err
		}
		sums, err := u.UsageByAccount(ctx, since, until)
		if err != nil {
			return err
		}
		accts, err := tx.ListAccounts(ctx)
		if err != nil {
			return err
		}
		byID := map[string]*Account{}
		for _, a := range accts {
			byID[a.ID] = a
		}
		seen := map[string]bool{}
		for _, s := range sums {
			seen[s.AccountID] = true
			if a := byID[s.AccountID]; a != nil {
				s.Account = a.Name
			}
			if s.Pulls > 0 && len(ov.Top) < top {
				ov.Top = append(ov.Top, s)
			}
		}
		for _, a := range accts {
			if !seen[a.ID] && a.Status == AccountActive {
				ov.Idle = append(ov.Idle, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ov, nil
}

// PruneUsage applies retention: detail of days before now-detail, and
// aggregates before now-aggregates, are deleted.
func (s *Service) PruneUsage(ctx context.Context, detail, aggregates time.Duration) (int64, error) {
	now := s.Now()
	var n int64
	err := s.Store.Update(ctx, func(tx Tx) error {
		u, err := usageTx(tx)
		if err != nil {
			return err
		}
		n, err = u.PruneUsage(ctx, Day(now.Add(-detail)), Day(now.Add(-aggregates)))
		return err
	})
	return n, err
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// MergeUsage folds deltas of one key into one (counts add up, addresses
// and agents merge) and sorts them by key, addresses by address and
// agents by user agent, so that stores write rows in one order.
func MergeUsage(deltas []UsageDelta) []UsageDelta {
	idx := map[UsageKey]int{}
	var out []UsageDelta
	for _, d := range deltas {
		d.Day = Day(d.Day)
		i, ok := idx[d.UsageKey]
		if !ok {
			idx[d.UsageKey] = len(out)
			d.Addresses = slices.Clone(d.Addresses)
			d.Agents = slices.Clone(d.Agents)
			out = append(out, d)
			continue
		}
		m := &out[i]
		m.Pulls += d.Pulls
		m.Manifests += d.Manifests
		m.Bytes += d.Bytes
		m.Addresses = append(m.Addresses, d.Addresses...)
		m.Agents = append(m.Agents, d.Agents...)
	}
	for i := range out {
		out[i].Addresses = mergeAddresses(out[i].Addresses)
		out[i].Agents = mergeAgents(out[i].Agents)
	}
	slices.SortFunc(out, func(a, b UsageDelta) int { return compareKeys(a.UsageKey, b.UsageKey) })
	return out
}

func compareKeys(a, b UsageKey) int {
	if c := a.Day.Compare(b.Day); c != 0 {
		return c
	}
	for _, p := range [][2]string{{a.TokenID, b.TokenID}, {a.Kind, b.Kind}, {a.Repository, b.Repository}} {
		if c := strings.Compare(p[0], p[1]); c != 0 {
			return c
		}
	}
	return 0
}

func mergeAddresses(as []AddressUse) []AddressUse {
	slices.SortStableFunc(as, func(a, b AddressUse) int { return strings.Compare(a.Address, b.Address) })
	var out []AddressUse
	for _, a := range as {
		if n := len(out); n > 0 && out[n-1].Address == a.Address {
			m := &out[n-1]
			m.Pulls += a.Pulls
			m.First, m.Last = minTime(m.First, a.First), maxTime(m.Last, a.Last)
			continue
		}
		out = append(out, a)
	}
	return out
}

func mergeAgents(as []AgentUse) []AgentUse {
	slices.SortStableFunc(as, func(a, b AgentUse) int { return strings.Compare(a.UserAgent, b.UserAgent) })
	var out []AgentUse
	for _, a := range as {
		if n := len(out); n > 0 && out[n-1].UserAgent == a.UserAgent {
			out[n-1].Pulls += a.Pulls
			continue
		}
		out = append(out, a)
	}
	return out
}

// EpochDay is the number of days from 1970-01-01 UTC to t's day, the
// stores' form of a day.
func EpochDay(t time.Time) int64 { return Day(t).Unix() / 86400 }

// FromEpochDay is EpochDay's inverse.
func FromEpochDay(d int64) time.Time { return time.Unix(d*86400, 0).UTC() }

// ParsePeriodStart reads the start of a usage period: "30d" (that many
// days back, today included), or a date "2006-01-02". "" is 30 days.
// EINVALID (field "since") otherwise.
func ParsePeriodStart(s string, now time.Time) (time.Time, error) {
	today := Day(now)
	if s == "" {
		s = "30d"
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err == nil && fmt.Sprint(days) == n && days >= 1 && days <= int(MaxUsagePeriod/(24*time.Hour)) {
			return today.AddDate(0, 0, 1-days), nil
		}
		return time.Time{}, FieldError("since", "must be a number of days from 1 to %d (e.g. 30d) or a date (2006-01-02)", int(MaxUsagePeriod/(24*time.Hour)))
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, FieldError("since", "must be a number of days (e.g. 30d) or a date (2006-01-02)")
	}
	return d, nil
}
