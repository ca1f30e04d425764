package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// view is what every page template gets. Pages use the fields they need.
type view struct {
	Title   string
	User    *tollgate.User
	Account *tollgate.Account
	CSRF    string
	Flash   string            // a success message
	Error   string            // a message about the whole form or page
	Errors  map[string]string // field name -> message, shown next to it
	Form    map[string]string // values to fill the form with again
	Next    string            // sign-in: where to go afterwards
	Link    string            // set-password: the link's secret
	LinkBad bool

	// Tokens page.
	Tokens   []*tokenView
	Filter   string
	Active   int
	Limit    int
	AtLimit  bool
	Counts   map[string]int
	Packages packagesView
	Stale    staleFilter // policy.go

	// Create/edit/revoke pages and the one-time secret.
	Token   *tokenView
	Created *tokenView

	// Tokens expiring soon (the banner; rotation.go).
	Expiring []expiringView

	// Webhooks page (webhooks.go).
	Webhooks   []webhookView
	Deliveries []deliveryView
	EventTypes []string
	NewSecret  string // a webhook's signing secret, shown once

	// Trust policies page (trust.go).
	Trust []trustView

	// Audit page.
	Events     []eventView
	NextBefore int64
	Status     int
}

func (v *view) CanManage() bool { return v.User != nil && v.User.Role.CanManageTokens() }
func (v *view) CanAudit() bool  { return v.User != nil && v.User.Role.CanReadAudit() }

// packagesView is the account's package access, for the scope checkbox.
type packagesView struct {
	State   string // none, requested, granted, denied
	Granted bool
}

// tokenView is a token as pages show it. Text users typed is escaped
// (tollgate.EscapeText): html/template escapes HTML, not the control
// and bidirectional characters that make text pass for something else.
type tokenView struct {
	ID          string
	Name        string
	Description string
	Scopes      []string
	Packages    bool
	Status      string
	Badge       string
	BadgeClass  string
	Expires     string // human
	ExpiresDate string // YYYY-MM-DD for a date input, "" if never
	Never       bool
	Created     string
	LastUsed    string
	LastUsedIP  string
	LastUsedUA  string
	Pulls       int64
	Revoked     string
	// The token's effective access: its restriction, or the whole
	// subscription; networks ("anywhere" when none), valid-from, pause.
	Images, PackageRepos []string
	ImagesRestricted     bool
	PackagesRestricted   bool
	Networks             []string
	ValidFrom            string
	Paused               bool
	Secret               string // only when revealed or just created
	Commands             []tollgate.SetupCommand
	Open                 bool
	Error                string // a failed action on this token

	Usage  *cardUsage  // last 30 days (usage.go); nil when unknown
	Policy *cardPolicy // caps and refused attempts (policy.go); nil when revoked

	Previous *previousView // after a rotation (rotation.go)
}

// secretPlaceholder stands in the commands until the secret is revealed.
const secretPlaceholder = "<TOKEN>"

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func (c *Console) tokenView(t *tollgate.Token, a *tollgate.Account, now time.Time, secret string) *tokenView {
	v := &tokenView{
		ID: t.ID, Name: tollgate.EscapeText(t.Name), Description: tollgate.EscapeText(t.Description), Scopes: t.Scope.Names(), Packages: t.Scope.Has(tollgate.ScopePackages),
		Status: string(t.Status(a, now)), Created: fmtTime(t.CreatedAt), Pulls: t.Pulls, Expires: "never", Never: t.ExpiresAt == nil,
		LastUsed: "never", LastUsedIP: tollgate.EscapeText(t.LastUsedIP), LastUsedUA: tollgate.EscapeText(t.LastUsedUA), Secret: secret,
	}
	if t.ExpiresAt != nil {
		v.Expires = fmtTime(*t.ExpiresAt)
		v.ExpiresDate = t.ExpiresAt.UTC().Format("2006-01-02")
	}
	if t.LastUsedAt != nil {
		v.LastUsed = fmtTime(*t.LastUsedAt)
	}
	if t.RevokedAt != nil {
		v.Revoked = fmtTime(*t.RevokedAt)
	}
	v.Images, v.ImagesRestricted = a.Subscription.Images, len(t.Policy.Images) > 0
	if v.ImagesRestricted {
		v.Images = t.Policy.Images
	}
	v.PackageRepos, v.PackagesRestricted = a.Subscription.Packages, len(t.Policy.Packages) > 0
	if v.PackagesRestricted {
		v.PackageRepos = t.Policy.Packages
	}
	v.Networks = tollgate.FormatNetworks(t.Policy.Networks)
	if t.Policy.ValidFrom != nil {
		v.ValidFrom = fmtTime(*t.Policy.ValidFrom)
	}
	v.Paused = t.Policy.PausedAt != nil
	v.Previous = previousOf(t, now)
	v.Badge, v.BadgeClass = v.Status, v.Status
	if v.Status == string(tollgate.TokenActive) && t.ExpiresAt != nil {
		if left := t.ExpiresAt.Sub(now); left <= 30*24*time.Hour {
			days := int(math.Ceil(left.Hours() / 24))
			switch {
			case left < 24*time.Hour:
				v.Badge = "expires today"
			case days == 1:
				v.Badge = "expires in 1 day"
			default:
				v.Badge = fmt.Sprintf("expires in %d days", days)
			}
			v.BadgeClass = "expiring"
		}
	}
	if v.Status != string(tollgate.TokenRevoked) {
		shown := secret
		if shown == "" {
			shown = secretPlaceholder
		}
		// The packages scope works only while access is granted.
		sc := t.Scope
		if a.PackageAccess != tollgate.PackageAccessGranted {
			sc &^= tollgate.ScopePackages
		}
		v.Commands = tollgate.SetupCommands(c.PublicURL, shown, sc, c.repos(a))
	}
	return v
}

func (c *Console) repos(a *tollgate.Account) []tollgate.PackageRepo {
	if c.Repos != nil {
		return c.Repos(a)
	}
	var out []tollgate.PackageRepo
	for _, p := range a.Subscription.Packages {
		if strings.ContainsAny(p, "*?") {
			continue
		}
		out = append(out, tollgate.PackageRepo{Name: p, Format: tollgate.PackageApt}, tollgate.PackageRepo{Name: p, Format: tollgate.PackageApk})
	}
	return out
}

type eventView struct {
	ID      int64
	Time    string
	Actor   string
	Action  string
	Target  string
	Changes []string
}

// cardData is what the card template gets: the token and what the
// signed-in user may do with it.
type cardData struct {
	T         *tokenView
	CanManage bool
	CSRF      string
}

var funcs = template.FuncMap{
	"join": strings.Join,
	"card": func(v *view, t *tokenView) cardData { return cardData{T: t, CanManage: v.CanManage(), CSRF: v.CSRF} },
	"plural64": func(n int64, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"signin", "setpassword", "tokens", "tokenform", "created", "revoke", "audit", "error", "lock", "rotated", "webhooks", "trust"}

func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).
			ParseFS(templateFS, "templates/layout.html", "templates/card*.html", "templates/"+name+".html"))
	}
	return out
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v any) {
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.log().ErrorContext(r.Context(), "console: template", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	v := &view{Title: http.StatusText(status), Error: msg, Status: status}
	if s != nil {
		v.User, v.Account, v.CSRF = s.user, s.account, s.csrf
	}
	c.render(w, r, status, "error", v)
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
