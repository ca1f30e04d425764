package main

import (
	"net/http"
	"strings"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/console"
	"github.com/tollgate/tollgate/internal/password"
)

// users is the console users' service on m's store and keys, with the
// argon2id password hasher.
func (m *Main) users() *tollgate.Users {
	return &tollgate.Users{Store: m.Store, Keys: m.Service.Keys, Hasher: password.Default, Now: m.Service.Now}
}

// consoleHandler builds the web console. Its apt/apk commands name the
// configured package repositories the account is entitled to.
func (m *Main) consoleHandler() http.Handler {
	c := &console.Console{
		Service:   m.Service,
		Users:     m.users(),
		PublicURL: m.Config.PublicURL,
		Logger:    m.Logger,
	}
	if repos := m.Config.Packages.Repositories; len(repos) > 0 {
		c.Repos = func(a *tollgate.Account) []tollgate.PackageRepo {
			var out []tollgate.PackageRepo
			for _, r := range repos {
				if a.Subscription.EntitledPackages(r.Name) {
					out = append(out, tollgate.PackageRepo{Name: r.Name, Kind: r.Format})
				}
			}
			return out
		}
	}
	return c.Handler()
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
