// Package console is tollgate's web console: the pages customers use to
// manage their account's registry tokens (cards with status badges, reveal
// and copy, ready-to-paste docker/kubectl/apk/apt commands, create, edit,
// extend, revoke), request package access and, for admins, read the audit
// log. Templates and assets are embedded; the pages work without
// JavaScript, which only adds copy buttons and in-place reveal.
//
// Console users sign in with email and password (see tollgate.Users);
// sessions live in an HttpOnly, SameSite=Lax cookie (Secure when the
// public URL is https), every form carries a CSRF token bound to the
// session, and sign-in attempts are rate-limited per address and per email.
// Every rule of tokens is tollgate.Service's, as for the management API.
package console

import (
	"context"
	"crypto/hmac"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/obs"
	"github.com/tollgate/tollgate/internal/ratelimit"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console is mounted.
const Prefix = "/console/"

// Cookie names. The session cookie holds a session secret (tgs_...); the
// pre-session cookie holds the CSRF token of the sign-in and set-password
// forms, which are posted before there is a session.
const (
	sessionCookie = "tollgate_session"
	preCookie     = "tollgate_csrf"
	cookiePath    = "/console"
)

// Console serves the web console. Set the exported fields, then call
// Handler once.
type Console struct {
	Service *tollgate.Service
	Users   *tollgate.Users
	// PublicURL is tollgate's public base URL: the commands shown use it,
	// and cookies are Secure when it is https.
	PublicURL string
	// Repos returns the package repositories to show apt/apk commands for;
	// nil derives them from the account's subscription (each name that is
	// not a pattern, as both an apt and an apk repository).
	Repos func(a *tollgate.Account) []tollgate.PackageRepo
	// MonthUsage returns a capped token's pulls and bytes this month, as
	// the edge counts them (quota); nil: cards show no usage against caps.
	MonthUsage func(ctx context.Context, tokenID string) (pulls, bytes int64)
	// Logger gets the causes of internal errors (the request line is
	// obs.Observer's, to which the console adds the signed-in user); nil
	// discards.
	Logger *slog.Logger
	// SignInLimit is how many failed sign-ins an address (SignInLimit*4)
	// or an email (SignInLimit) may make per SignInWindow before being
	// told to wait. Defaults: 5 per 15 minutes.
	SignInLimit  int
	SignInWindow time.Duration
	// IPLimiter and EmailLimiter, if set, are the limiters of failed
	// sign-ins by client address and by e-mail (see SignInLimiterOptions,
	// which cmd/tollgate gives Redis to share them across replicas); nil
	// ones are made in memory from SignInLimit and SignInWindow.
	IPLimiter    *ratelimit.Limiter
	EmailLimiter *ratelimit.Limiter
	// WarnBefore: tokens expiring within it make the tokens page's
	// banner (the edge's notify.warn_before); 0 means DefaultWarnBefore.
	WarnBefore time.Duration

	once  sync.Once
	pages map[string]*template.Template
}

// SignInLimiterOptions are the options of the sign-in limiters for limit
// failures per window per e-mail, and ipFactor times that per address
// (defaults for zero values: 5 per 15 minutes). A bucket starts full and
// gets one attempt back every window/limit.
func SignInLimiterOptions(limit int, window time.Duration) (ip, email ratelimit.Options) {
	if limit <= 0 {
		limit = 5
	}
	if window <= 0 {
		window = 15 * time.Minute
	}
	ip = ratelimit.Options{Burst: limit * ipFactor, Every: window / time.Duration(limit*ipFactor)}
	email = ratelimit.Options{Burst: limit, Every: window / time.Duration(limit)}
	return ip, email
}

func (c *Console) now() time.Time {
	if c.Service != nil && c.Service.Now != nil {
		return c.Service.Now()
	}
	return time.Now()
}

func (c *Console) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Console) secure() bool { return strings.HasPrefix(c.PublicURL, "https://") }

func (c *Console) init() {
	c.once.Do(func() {
		c.pages = parsePages()
		ip, email := SignInLimiterOptions(c.SignInLimit, c.SignInWindow)
		if c.IPLimiter == nil {
			ip.Now = c.now
			c.IPLimiter = ratelimit.New(ip)
		}
		if c.EmailLimiter == nil {
			email.Now = c.now
			c.EmailLimiter = ratelimit.New(email)
		}
	})
}

// Handler returns the console's handler for everything under /console/.
func (c *Console) Handler() http.Handler {
	c.init()
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", cacheStatic(http.FileServerFS(static))))
	mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/tokens", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/tokens", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /console/sign-in", c.signInPage)
	mux.HandleFunc("POST /console/sign-in", c.signIn)
	mux.HandleFunc("POST /console/sign-out", c.signOut)
	mux.HandleFunc("GET /console/set-password", c.setPasswordPage)
	mux.HandleFunc("POST /console/set-password", c.setPassword)

	authed := func(pattern string, need func(tollgate.Role) bool, h func(w http.ResponseWriter, r *http.Request, s *session)) {
		mux.Handle(pattern, c.withSession(need, h))
	}
	everyone := func(tollgate.Role) bool { return true }
	manage := tollgate.Role.CanManageTokens
	authed("GET /console/tokens", everyone, c.tokensPage)
	authed("GET /console/tokens/new", manage, c.newTokenPage)
	authed("POST /console/tokens", manage, c.createToken)
	authed("GET /console/tokens/{id}/edit", manage, c.editTokenPage)
	authed("POST /console/tokens/{id}/edit", manage, c.editToken)
	authed("POST /console/tokens/{id}/extend", manage, c.extendToken)
	authed("POST /console/tokens/{id}/reveal", manage, c.revealToken)
	authed("GET /console/tokens/{id}/revoke", manage, c.revokeTokenPage)
	authed("POST /console/tokens/{id}/revoke", manage, c.revokeToken)
	authed("POST /console/tokens/{id}/pause", manage, c.pauseToken)
	authed("POST /console/tokens/{id}/resume", manage, c.resumeToken)
	authed("POST /console/tokens/{id}/rotate", manage, c.rotateToken) // rotation.go
	admin := tollgate.Role.CanReadAudit
	authed("GET /console/webhooks", admin, c.webhooksPage) // webhooks.go
	authed("POST /console/webhooks", admin, c.createWebhook)
	authed("POST /console/webhooks/{id}/delete", admin, c.deleteWebhook)
	authed("POST /console/webhooks/{id}/test", admin, c.testWebhook)
	authed("POST /console/deliveries/{id}/redeliver", admin, c.redeliver)
	authed("GET /console/tokens/{id}/lock", manage, c.lockPage) // policy.go
	authed("POST /console/tokens/{id}/lock", manage, c.lockToken)
	authed("POST /console/account/request-packages", manage, c.requestPackages)
	authed("GET /console/trust", everyone, c.trustPage) // trust.go
	authed("POST /console/trust", manage, c.createTrust)
	authed("POST /console/trust/{id}/delete", manage, c.deleteTrust)
	authed("GET /console/audit", tollgate.Role.CanReadAudit, c.auditPage)
	authed("GET /console/usage", everyone, c.usagePage) // usage.go
	authed("GET /console/usage.csv", everyone, c.usageCSV)
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	return headers(mux)
}

// headers sets what every console answer carries: no caching of pages
// that may hold secrets, no framing, no referrer (a set-password link is
// in a URL), and a policy that runs only the console's own script.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The assets hold nothing secret; pages still say no-store.
		w.Header().Set("Cache-Control", "public, max-age=300")
		next.ServeHTTP(w, r)
	})
}

// session is a signed-in request.
type session struct {
	user    *tollgate.User
	account *tollgate.Account
	secret  string // the cookie's value, for the CSRF token
	csrf    string
}

func (s *session) actor() string { return tollgate.UserActor(s.user.Email) }

// withSession requires a live session whose role passes need, and a
// valid CSRF token on anything but GET and HEAD.
func (c *Console) withSession(need func(tollgate.Role) bool, h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		if err != nil {
			c.toSignIn(w, r)
			return
		}
		u, _, err := c.Users.SessionUser(r.Context(), ck.Value)
		if err != nil {
			if tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
				c.clearCookie(w, sessionCookie)
				c.toSignIn(w, r)
				return
			}
			c.errorPage(w, r, nil, statusOf(err), tollgate.ErrorMessage(err))
			return
		}
		a, err := c.Service.AccountByID(r.Context(), u.AccountID)
		if err != nil {
			c.errorPage(w, r, nil, statusOf(err), tollgate.ErrorMessage(err))
			return
		}
		// The request's one log line (obs.Observer's) names the user by
		// id: no e-mail address in the logs.
		obs.FromContext(r.Context()).Actor = "user:" + u.ID
		s := &session{user: u, account: a, secret: ck.Value}
		s.csrf = c.csrfToken("session", ck.Value)
		// The CSRF check parses the form: cap it here (the largest form
		// is a token's), since the handlers' own caps come too late.
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !c.csrfOK(r, s.csrf) {
			c.errorPage(w, r, s, http.StatusForbidden, "This form has expired. Go back, reload the page and try again.")
			return
		}
		if !need(u.Role) {
			c.errorPage(w, r, s, http.StatusForbidden, "Your role ("+string(u.Role)+") may not do this.")
			return
		}
		h(w, r, s)
	})
}

func (c *Console) toSignIn(w http.ResponseWriter, r *http.Request) {
	if wantsJSON(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "your session has ended; sign in again"})
		return
	}
	if r.Method == http.MethodGet {
		http.Redirect(w, r, "/console/sign-in?next="+escapePath(r.URL.Path), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/sign-in", http.StatusSeeOther)
}

// csrfToken derives a form token from a cookie's secret value under the
// server's lookup key: an attacker who cannot read the cookie cannot make
// it, and it changes with every session.
func (c *Console) csrfToken(kind, secret string) string {
	sum := c.Service.Keys.Hash(tollgate.Secret("console-csrf:" + kind + ":" + secret))
	return base64.RawURLEncoding.EncodeToString(sum[:24])
}

// csrfOK checks the form's (or, for fetch, the X-CSRF-Token header's)
// token, and refuses requests a browser marks as cross-site.
func (c *Console) csrfOK(r *http.Request, want string) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" {
		return false
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return got != "" && hmac.Equal([]byte(got), []byte(want))
}

// preSessionCSRF returns the CSRF token of the sign-in and set-password
// forms, setting the pre-session cookie it derives from if need be.
func (c *Console) preSessionCSRF(w http.ResponseWriter, r *http.Request) string {
	// Keep a cookie that is there: reissuing it on every load of a form
	// invalidated the form of every other open tab.
	if ck, err := r.Cookie(preCookie); err == nil && validPreCookie(ck.Value) {
		return c.csrfToken("pre", ck.Value)
	}
	v := tollgate.NewID("pre_")
	c.setCookie(w, preCookie, v, 0)
	return c.csrfToken("pre", v)
}

// validPreCookie reports whether v has the shape preSessionCSRF gives the
// cookie (tollgate.NewID("pre_")): anything else is replaced.
func validPreCookie(v string) bool {
	return strings.HasPrefix(v, "pre_") && len(v) >= 20 && len(v) <= 64 &&
		!strings.ContainsFunc(v, func(r rune) bool {
			return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
		})
}

func (c *Console) preSessionOK(r *http.Request) bool {
	ck, err := r.Cookie(preCookie)
	if err != nil {
		return false
	}
	return c.csrfOK(r, c.csrfToken("pre", ck.Value))
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	ck := &http.Cookie{Name: name, Value: value, Path: cookiePath, HttpOnly: true, Secure: c.secure(), SameSite: http.SameSiteLaxMode}
	if maxAge > 0 {
		ck.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, ck)
}

func (c *Console) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: cookiePath, MaxAge: -1, HttpOnly: true, Secure: c.secure(), SameSite: http.SameSiteLaxMode})
}

// clientIP is the client's address as the access log middleware found
// it: X-Forwarded-For is believed only from ops.trusted_proxies, so a
// client cannot set it to dodge the sign-in limit, and users behind the
// load balancer do not share one address.
func clientIP(r *http.Request) string { return obs.ClientIP(r) }

// statusOf is err's status from the one table, tollgate.HTTPStatus.
func statusOf(err error) int { return tollgate.HTTPStatus(tollgate.ErrorCode(err)) }

// errText is what a page shows for err; internal causes go to the log.
func (c *Console) errText(r *http.Request, err error) string {
	switch tollgate.ErrorCode(err) {
	case tollgate.EINTERNAL:
		c.log().ErrorContext(r.Context(), "console: internal error", "path", obs.RedactPath(r.URL.Path), "err", err)
		return "Something went wrong on our side. Try again; if it persists, tell your operator."
	case tollgate.EUNAVAILABLE:
		c.log().WarnContext(r.Context(), "console: dependency unavailable", "path", obs.RedactPath(r.URL.Path), "err", err)
	}
	var te *tollgate.Error
	if errors.As(err, &te) {
		return te.Message
	}
	return tollgate.ErrorMessage(err)
}

func escapePath(p string) string {
	if !strings.HasPrefix(p, "/console/") || strings.ContainsAny(p, "\\") || strings.HasPrefix(p, "//") {
		return "/console/tokens"
	}
	return p
}

// safeNext is where to go after signing in: only a console path.
func safeNext(v string) string {
	if !strings.HasPrefix(v, "/console/") || strings.HasPrefix(v, "//") || strings.ContainsAny(v, "\\\r\n") ||
		strings.HasPrefix(v, "/console/sign-") || strings.HasPrefix(v, "/console/set-password") {
		return "/console/tokens"
	}
	return v
}
