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

// PullSecretName is the Kubernetes secret the snippets create and use.
const PullSecretName = "tollgate-pull"

// PackageRepo describes a package repository for the apt/apk snippets.
// Suite and Component are apt's; empty ones are shown as placeholders.
type PackageRepo struct {
	Name      string
	Format    PackageFormat
	Suite     string
	Component string
	// KeyFile is the file name the repository's public signing key is
	// published under, at PackageKeyPath (no authentication: it is
	// public); empty when no key is configured.
	KeyFile string
}

// PackageKeyPath is where tollgate serves a package repository's public
// signing key, below its public URL: /keys/KIND/NAME/FILE.
func PackageKeyPath(format PackageFormat, name, file string) string {
	return "/keys/" + string(format) + "/" + name + "/" + file
}

// sudo runs a command as root from a user's shell, and runs it as is in
// a root shell or a Dockerfile RUN, where sudo is usually not installed.
const sudo = "$(command -v sudo) "

// Setup is what the set-up commands are made for.
type Setup struct {
	// PublicURL is tollgate's public base URL.
	PublicURL string
	// Secret is the token's plaintext, or a placeholder when it is not to
	// be shown.
	Secret string
	Scope  Scope
	// Repos are the package repositories the token can reach.
	Repos []PackageRepo
	// CAFile is the path, on the client's machine, of the CA certificate
	// that verifies tollgate's TLS certificate when it is not publicly
	// trusted (a private CA, `tollgate dev --tls-cert`): the snippets then
	// install it where docker, containerd and the package managers look.
	CAFile string
}

// SetupCommands returns the snippets for a token with the given scope (see
// Setup.Commands): what the CLI, the console and the API print.
func SetupCommands(publicURL, secret string, scope Scope, repos []PackageRepo) []SetupCommand {
	return Setup{PublicURL: publicURL, Secret: secret, Scope: scope, Repos: repos}.Commands()
}

// Commands returns the snippets: for images, docker login, a Kubernetes
// pull secret and how pods use it (and, with a private CA, where docker
// and containerd find it); for packages, per repository, the key, the
// credentials and the source, for apt, apk-tools and apko/melange.
//
// Every snippet runs as printed, line by line, in a user's shell (with
// sudo), in a root shell and in a Dockerfile RUN. No snippet holds an
// empty line: printers separate them with one.
func (s Setup) Commands() []SetupCommand {
	u, err := url.Parse(strings.TrimSuffix(s.PublicURL, "/"))
	if err != nil || u.Host == "" {
		return nil
	}
	host := u.Host
	base := u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/")
	user, secret := SetupUsername, s.Secret
	var out []SetupCommand
	add := func(title string, lines ...string) {
		out = append(out, SetupCommand{Title: title, Text: strings.Join(lines, "\n")})
	}
	if s.Scope.Has(ScopeImages) {
		if s.CAFile != "" {
			add("docker: trust tollgate's CA",
				sudo+"install -D -m 644 "+s.CAFile+" /etc/docker/certs.d/"+host+"/ca.crt")
		}
		add("docker login",
			"echo '"+secret+"' | docker login "+host+" -u "+user+" --password-stdin")
		add("Kubernetes pull secret",
			"kubectl create secret docker-registry "+PullSecretName+" --docker-server="+host+
				" --docker-username="+user+" --docker-password='"+secret+"'")
		add("Kubernetes: pull with the secret",
			"# every pod of the namespace that runs as the default service account:",
			"kubectl patch serviceaccount default -p '{\"imagePullSecrets\":[{\"name\":\""+PullSecretName+"\"}]}'",
			"# or one pod, in its spec:  imagePullSecrets: [{name: "+PullSecretName+"}]")
		if s.CAFile != "" {
			dir := "/etc/containerd/certs.d/" + host
			add("containerd (kubelet): trust tollgate's CA with hosts.toml",
				sudo+"install -D -m 644 "+s.CAFile+" "+dir+"/ca.crt",
				"printf '%s\\n' 'server = \"https://"+host+"\"' '[host.\"https://"+host+"\"]' '  capabilities = [\"pull\", \"resolve\"]' '  ca = \""+dir+"/ca.crt\"' | "+
					sudo+"tee "+dir+"/hosts.toml >/dev/null",
				"# containerd reads it when its CRI registry config_path is /etc/containerd/certs.d")
		}
	}
	if !s.Scope.Has(ScopePackages) || len(s.Repos) == 0 {
		return out
	}
	if s.CAFile != "" {
		add("packages: trust tollgate's CA (curl, wget, apt, apk)",
			sudo+"install -D -m 644 "+s.CAFile+" /usr/local/share/ca-certificates/tollgate-ca.crt",
			sudo+"update-ca-certificates")
	}
	for _, r := range s.Repos {
		switch r.Format {
		case PackageApk:
			out = append(out, s.apk(r, u, base)...)
		case PackageApt:
			out = append(out, s.apt(r, u, host, base)...)
		}
	}
	return out
}

func (s Setup) apt(r PackageRepo, u *url.URL, host, base string) []SetupCommand {
	keyring := "/etc/apt/keyrings/tollgate-" + r.Name + ".gpg"
	if strings.HasSuffix(r.KeyFile, ".asc") {
		// apt reads an armored key only from a .asc file.
		keyring = strings.TrimSuffix(keyring, ".gpg") + ".asc"
	}
	key := "# no signing key is published for " + r.Name + ": install the one your vendor gave you as " + keyring
	if r.KeyFile != "" {
		key = sudo + "curl -fsSL -o " + keyring + " " + base + PackageKeyPath(PackageApt, r.Name, r.KeyFile)
	}
	// apt matches a machine entry without a scheme only for https.
	machine := host + strings.TrimSuffix(u.Path, "/") + "/apt/" + r.Name
	if u.Scheme != "https" {
		machine = u.Scheme + "://" + machine
	}
	creds := "/etc/apt/auth.conf.d/tollgate-" + r.Name + ".conf"
	suite, comp := r.Suite, r.Component
	if suite == "" {
		suite = "SUITE"
	}
	if comp == "" {
		comp = "main"
	}
	uri := base + "/apt/" + r.Name
	return []SetupCommand{
		{"apt archive key " + r.Name, sudo + "install -d -m 755 /etc/apt/keyrings\n" + key},
		{"apt credentials " + r.Name,
			// Created empty with mode 600 first: the token is never in a
			// file others can read, not even for a moment.
			sudo + "install -m 600 /dev/null " + creds + "\n" +
				"echo 'machine " + machine + " login " + SetupUsername + " password " + s.Secret + "' | " + sudo + "tee " + creds + " >/dev/null"},
		{"apt source " + r.Name,
			"printf '%s\\n' 'Types: deb' 'URIs: " + uri + "' 'Suites: " + suite + "' 'Components: " + comp + "' 'Signed-By: " + keyring + "' | " +
				sudo + "tee /etc/apt/sources.list.d/tollgate-" + r.Name + ".sources >/dev/null\n" +
				sudo + "apt-get update"},
		{"apt source " + r.Name + " (one-line format, instead of the .sources file)",
			"echo 'deb [signed-by=" + keyring + "] " + uri + " " + suite + " " + comp + "' | " +
				sudo + "tee /etc/apt/sources.list.d/tollgate-" + r.Name + ".list >/dev/null\n" +
				sudo + "apt-get update"},
	}
}

func (s Setup) apk(r PackageRepo, u *url.URL, base string) []SetupCommand {
	repo := base + "/apk/" + r.Name
	keyURL := base + PackageKeyPath(PackageApk, r.Name, r.KeyFile)
	key := "# no signing key is published for " + r.Name + ": copy the one your vendor gave you to /etc/apk/keys/"
	if r.KeyFile != "" {
		// apk finds the key by its file name, which the index signature names.
		key = sudo + "wget -q -O /etc/apk/keys/" + r.KeyFile + " " + keyURL
	}
	httpAuth := HTTPAuth(u, SetupUsername, s.Secret)
	withAuth := u.Scheme + "://" + SetupUsername + ":" + s.Secret + "@" + u.Host + strings.TrimSuffix(u.Path, "/") + "/apk/" + r.Name
	keyring := keyURL
	if r.KeyFile == "" {
		keyring = "/etc/apk/keys/KEY.rsa.pub"
	}
	// apko and melange match HTTP_AUTH's host against the request's
	// host[:port] (see HTTPAuth): behind a port they never send it, so
	// their repository URL carries the token instead.
	apkoRepo, apkoNote := repo, "built with HTTP_AUTH='"+httpAuth+"' exported"
	if u.Port() != "" {
		apkoRepo, apkoNote = withAuth, "apko's HTTP_AUTH never matches a host with a port: the token is in the URL, keep the file private"
	}
	return []SetupCommand{
		{"apk signing key " + r.Name, key},
		{"apk repository " + r.Name + " (token in HTTP_AUTH)",
			"echo '" + repo + "' | " + sudo + "tee -a /etc/apk/repositories >/dev/null\n" +
				"export HTTP_AUTH='" + httpAuth + "'\n" +
				sudo + "env HTTP_AUTH=\"$HTTP_AUTH\" apk update"},
		{"apk repository " + r.Name + " (token in the URL, instead of HTTP_AUTH)",
			"# /etc/apk/repositories is readable by every user of the machine\n" +
				"echo '" + withAuth + "' | " + sudo + "tee -a /etc/apk/repositories >/dev/null\n" +
				sudo + "apk update"},
		{"apko / melange " + r.Name,
			"# apko.yaml (melange: under environment:), " + apkoNote + "\n" +
				"contents:\n" +
				"  keyring:\n" +
				"    - " + keyring + "\n" +
				"  repositories:\n" +
				"    - " + apkoRepo},
	}
}

// HTTPAuth is the HTTP_AUTH value apk-tools, apko and melange read for
// tollgate at u: basic:HOST:USER:PASSWORD, HOST without a port.
//
// apk-tools (libfetch's http_authorize) skips the second field up to the
// first colon without comparing it, takes the user name up to the next
// colon and the rest as the password, and sends them after a 401: a port
// there would become the user name. apko (pkg/apk/auth, EnvAuth) splits
// the value on every colon, wants exactly four fields and sends the
// credentials when the second equals the request URL's host[:port]: so
// it matches only a URL without a port, and no value names one with a
// port. The package routes' Basic realm is the same HOST.
func HTTPAuth(u *url.URL, user, secret string) string {
	return "basic:" + u.Hostname() + ":" + user + ":" + secret
}

// PackageFormat is a package repository's format: the first segment of
// its routes, /apt/ or /apk/.
type PackageFormat string

// The package formats tollgate serves.
const (
	PackageApt PackageFormat = "apt"
	PackageApk PackageFormat = "apk"
)
