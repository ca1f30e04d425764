package tollgate

import (
	"net/url"
	"strings"
)

// SetupCommand is one ready-to-paste snippet for a token's owner.
type SetupCommand struct {
	Title string
	Text  string
}

// SetupUsername is the user name the snippets use; tollgate accepts any
// non-empty user name, the password is what counts.
const SetupUsername = "tollgate"

// PackageRepo describes a package repository for the apt/apk snippets.
// Suite and Component are apt's; empty ones are shown as placeholders.
type PackageRepo struct {
	Name      string
	Kind      string // "apt" or "apk"
	Suite     string
	Component string
}

// SetupCommands returns the snippets for a token with the given scope:
// docker login and a Kubernetes pull secret for images; the apk
// repositories line (and its HTTP_AUTH form) and the apt auth.conf.d and
// sources entries for each package repository, when the scope has packages.
// publicURL is tollgate's public base URL; secret is the token's plaintext,
// or a placeholder when it is not to be shown.
func SetupCommands(publicURL, secret string, scope Scope, repos []PackageRepo) []SetupCommand {
	u, err := url.Parse(strings.TrimSuffix(publicURL, "/"))
	if err != nil || u.Host == "" {
		return nil
	}
	host := u.Host
	base := u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/")
	user := SetupUsername
	var out []SetupCommand
	if scope.Has(ScopeImages) {
		out = append(out,
			SetupCommand{"docker login", "echo '" + secret + "' | docker login " + host + " -u " + user + " --password-stdin"},
			SetupCommand{"Kubernetes pull secret", "kubectl create secret docker-registry tollgate-pull --docker-server=" + host +
				" --docker-username=" + user + " --docker-password='" + secret + "'"},
		)
	}
	if !scope.Has(ScopePackages) {
		return out
	}
	for _, r := range repos {
		switch r.Kind {
		case "apk":
			withAuth := u.Scheme + "://" + user + ":" + secret + "@" + u.Host + strings.TrimSuffix(u.Path, "/") + "/apk/" + r.Name
			out = append(out,
				SetupCommand{"apk repository " + r.Name, "echo '" + withAuth + "' >> /etc/apk/repositories"},
				SetupCommand{"apk repository " + r.Name + " (HTTP_AUTH)", "echo '" + base + "/apk/" + r.Name + "' >> /etc/apk/repositories\n" +
					"export HTTP_AUTH='basic:tollgate:" + user + ":" + secret + "'"},
			)
		case "apt":
			// apt matches a machine entry without a scheme only for https.
			machine := host + strings.TrimSuffix(u.Path, "/") + "/apt/" + r.Name
			if u.Scheme != "https" {
				machine = u.Scheme + "://" + machine
			}
			suite, comp := r.Suite, r.Component
			if suite == "" {
				suite = "SUITE"
			}
			if comp == "" {
				comp = "main"
			}
			out = append(out,
				SetupCommand{"apt credentials " + r.Name, "printf 'machine " + machine + " login " + user + " password " + secret + "\\n' > /etc/apt/auth.conf.d/tollgate-" + r.Name + ".conf\n" +
					"chmod 600 /etc/apt/auth.conf.d/tollgate-" + r.Name + ".conf"},
				SetupCommand{"apt source " + r.Name, "echo 'deb " + base + "/apt/" + r.Name + " " + suite + " " + comp + "' > /etc/apt/sources.list.d/tollgate-" + r.Name + ".list"},
			)
		}
	}
	return out
}
