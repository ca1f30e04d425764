package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/console"
	"github.com/tollgate/tollgate/internal/password"
	"github.com/tollgate/tollgate/internal/ratelimit"
)

// users is the console users' service on m's store and keys, with the
// argon2id password hasher.
func (m *Main) users() *tollgate.Users {
	return &tollgate.Users{Store: m.Store, Keys: m.Service.Keys, Hasher: password.Default, Now: m.Service.Now}
}

// consoleHandler builds the web console. Its apt/apk commands name the
// configured package repositories the account is entitled to.
func (m *Main) consoleHandler() http.Handler {
	// The sign-in limiters are internal/ratelimit's, shared through Redis
	// by every replica when there is one.
	ip, email := console.SignInLimiterOptions(0, 0)
	for _, o := range []*ratelimit.Options{&ip, &email} {
		o.Redis, o.KeyPrefix, o.Logger = m.redis, m.Config.Redis.KeyPrefix, m.Logger
	}
	c := &console.Console{
		Service:      m.Service,
		Users:        m.users(),
		PublicURL:    m.Config.PublicURL,
		Logger:       m.Logger,
		IPLimiter:    ratelimit.New(ip),
		EmailLimiter: ratelimit.New(email),
		WarnBefore:   m.Config.Notify.WarnBefore.Duration(),
	}
	if q := m.quota; q != nil {
		c.MonthUsage = func(ctx context.Context, id string) (int64, int64) {
			u := q.Get(ctx, id)
			return u.Pulls, u.Bytes
		}
	}
	if repos := m.packageRepos(); len(repos) > 0 {
		c.Repos = func(a *tollgate.Account) []tollgate.PackageRepo { return entitledRepos(repos, a.Subscription) }
	}
	return c.Handler()
}

// packageRepos are the configured package repositories as the set-up
// commands name them.
func (m *Main) packageRepos() []tollgate.PackageRepo {
	var out []tollgate.PackageRepo
	for _, r := range m.Config.Packages.Repositories {
		out = append(out, tollgate.PackageRepo{Name: r.Name, Format: r.Format, Suite: r.Suite, Component: r.Component, KeyFile: r.PublishedKeyName()})
	}
	return out
}

// entitledRepos keeps the repositories sub entitles.
func entitledRepos(repos []tollgate.PackageRepo, sub tollgate.Subscription) []tollgate.PackageRepo {
	var out []tollgate.PackageRepo
	for _, r := range repos {
		if sub.EntitledPackages(r.Name) {
			out = append(out, r)
		}
	}
	return out
}

// withConsole sends /console and everything below it to the console.
func withConsole(consoleHandler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/console" || strings.HasPrefix(p, console.Prefix) {
			consoleHandler.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The console user `tollgate dev` seeds in the demo account.
const demoConsoleEmail = "admin@demo.example"

// seedConsole makes sure the demo account has an admin console user. While
// that user has no password, every start issues a fresh one-time
// set-password link. It adds TOLLGATE_CONSOLE_* to d.Env and returns what
// to print.
func (d *devServer) seedConsole(ctx context.Context) (string, error) {
	users := d.Main.users()
	url := d.Main.Config.PublicURL + console.Prefix
	d.Env["TOLLGATE_CONSOLE_URL"] = url
	d.Env["TOLLGATE_CONSOLE_EMAIL"] = demoConsoleEmail
	u, link, err := users.CreateUser(ctx, devActor, tollgate.UserCreate{Account: demoAccount, Email: demoConsoleEmail, Role: tollgate.RoleAdmin})
	if tollgate.ErrorCode(err) == tollgate.ECONFLICT {
		var us []*tollgate.User
		if us, err = users.ListUsers(ctx, demoAccount); err != nil {
			return "", err
		}
		for _, x := range us {
			if x.Email == demoConsoleEmail && x.PasswordHash != "" {
				return fmt.Sprintf("web console: %s\n  sign in as %s (admin) with the password you chose\n\n", url, demoConsoleEmail), nil
			}
		}
		u, link, err = users.IssuePasswordLink(ctx, devActor, demoConsoleEmail)
	}
	if err != nil {
		return "", err
	}
	setURL := tollgate.SetPasswordURL(d.Main.Config.PublicURL, link)
	d.Env["TOLLGATE_CONSOLE_SET_PASSWORD_URL"] = setURL
	return fmt.Sprintf("web console: %s\n  %s (%s): choose a password at this one-time link, then sign in:\n  %s\n\n",
		url, u.Email, u.Role, setURL), nil
}
