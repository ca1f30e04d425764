package proxy

import (
	"net/http"
	"time"

	"github.com/tollgate/tollgate/internal/obs"
)

// PackageHooks sets o's hooks so that the package routes count decisions
// in g's metrics and charge failed authentications to g's limiter, as the
// image routes do, and shares g's Lookup, Keys, Usage and clock when o
// has none.
func (g *Registry) PackageHooks(o *PackagesOptions) {
	if o.Lookup == nil {
		o.Lookup = g.Lookup
	}
	if o.Keys == nil {
		o.Keys = g.Keys
	}
	if o.Usage == nil {
		o.Usage = g.Usage
	}
	if o.Now == nil {
		o.Now = g.now
	}
	o.Blocked = func(r *http.Request) (time.Duration, bool) {
		is, retry := g.Limiter.Blocked(r.Context(), clientIP(r))
		if is {
			info := obs.FromContext(r.Context())
			info.Reason = "rate_limited"
			g.Metrics.RateLimited(info.Route)
			g.Metrics.Decision("rate_limited")
		}
		return retry, is
	}
	o.Failed = g.failed
	o.Denied = g.denied
	o.Allowed = g.allowed
}
