package config

import (
	"errors"
	"github.com/tollgate/tollgate"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// Package repository formats.
const (
	FormatApt = tollgate.PackageApt
	FormatApk = tollgate.PackageApk
)

// PackagesConfig lists the apt and apk repositories served under
// /apt/NAME/ and /apk/NAME/. A subscription's package entitlements name
// repositories by NAME; the same NAME may be both an apt and an apk
// repository (one entitlement then covers both).
type PackagesConfig struct {
	// Repositories, each with its own upstream. In YAML a list of
	// objects; from the environment (TOLLGATE_PACKAGES_REPOSITORIES) a
	// comma separated list of FORMAT:NAME=URL, which replaces the whole
	// list and cannot carry per-repository CA or credentials.
	Repositories PackageRepositories `yaml:"repositories"`
	// MaxRedirects bounds the upstream redirects tollgate follows for one
	// request (clients never see them), 0 to 20.
	MaxRedirects int `yaml:"max_redirects"`
}

// PackageRepositories is the list of package repositories.
type PackageRepositories []PackageRepository

// PackageRepository is one apt or apk repository and its upstream.
type PackageRepository struct {
	// Name is the public name, the path segment after /apt/ or /apk/:
	// 1 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a
	// letter or digit.
	Name string `yaml:"name"`
	// Format is "apt" or "apk".
	Format tollgate.PackageFormat `yaml:"format"`
	// URL is the upstream base URL the repository's files are below, e.g.
	// https://apt.internal/debian (its dists/ and pool/ are below it).
	URL string `yaml:"url"`
	// CAFile is a PEM bundle trusted for the upstream's TLS certificate,
	// in addition to the system roots.
	CAFile string `yaml:"ca_file"`
	// Username and Password (or PasswordFile) are tollgate's own Basic
	// credentials at the upstream, sent only to the upstream's host.
	Username     string          `yaml:"username"`
	Password     tollgate.Secret `yaml:"password"`
	PasswordFile string          `yaml:"password_file"`
	// Suite and Component (apt only, optional) complete the sources line
	// of the set-up commands the CLI and the console print, e.g.
	// "bookworm" and "main". They do not change what is served.
	Suite     string `yaml:"suite"`
	Component string `yaml:"component"`
	// KeyFile is the repository's public signing key, which tollgate
	// publishes without authentication (it is public) at
	// /keys/FORMAT/NAME/FILE for the set-up commands to install. apt: an
	// OpenPGP public keyring, binary (served as key.gpg) or ASCII-armored
	// with a .asc name (served as key.asc); apk: the RSA public key, served
	// under its own file name, which apk matches against the name in the
	// index signature (e.g. vendor.rsa.pub).
	KeyFile string `yaml:"key_file"`
}

// PublishedKeyName is the file name KeyFile is published under (see
// KeyFile); "" without one.
func (r PackageRepository) PublishedKeyName() string {
	switch {
	case r.KeyFile == "":
		return ""
	case r.Format == FormatApk:
		return filepath.Base(r.KeyFile)
	case strings.HasSuffix(r.KeyFile, ".asc"):
		return "key.asc"
	}
	return "key.gpg"
}

// DefaultMaxRedirects is the default of packages.max_redirects.
const DefaultMaxRedirects = 5

// UnmarshalText parses the environment form: FORMAT:NAME=URL, comma
// separated. Validate checks the parts.
func (r *PackageRepositories) UnmarshalText(text []byte) error {
	var out PackageRepositories
	for item := range strings.SplitSeq(string(text), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		format, rest, ok1 := strings.Cut(item, ":")
		name, u, ok2 := strings.Cut(rest, "=")
		if !ok1 || !ok2 {
			// The value is not quoted: it may hold a URL with credentials.
			return errors.New("must be a comma separated list of FORMAT:NAME=URL, e.g. apt:os=https://apt.internal/debian")
		}
		out = append(out, PackageRepository{Format: tollgate.PackageFormat(strings.TrimSpace(format)), Name: strings.TrimSpace(name), URL: strings.TrimSpace(u)})
	}
	*r = out
	return nil
}

// Find returns the repository of the format with the name.
func (r PackageRepositories) Find(format tollgate.PackageFormat, name string) (PackageRepository, bool) {
	for _, p := range r {
		if p.Format == format && p.Name == name {
			return p, true
		}
	}
	return PackageRepository{}, false
}

// PackagePassword returns the upstream password of repository r, inline
// or from its file.
func (r PackageRepository) PackagePassword(field string) (tollgate.Secret, error) {
	switch {
	case r.Password != "":
		return r.Password, nil
	case r.PasswordFile != "":
		return readSecretFile(field+".password_file", r.PasswordFile)
	}
	return "", nil
}

// ValidPackageRepoName is tollgate.ValidPackageRepoName.
func ValidPackageRepoName(name string) bool { return tollgate.ValidPackageRepoName(name) }

func (p PackagesConfig) validate(pr *problems) {
	if p.MaxRedirects < 0 || p.MaxRedirects > 20 {
		pr.add("packages.max_redirects", "must be between 0 and 20")
	}
	seen := map[string]bool{}
	for i, r := range p.Repositories {
		field := "packages.repositories[" + strconv.Itoa(i) + "]"
		if !ValidPackageRepoName(r.Name) {
			pr.add(field+".name", "must be 1 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
		}
		if r.Format != FormatApt && r.Format != FormatApk {
			pr.add(field+".format", "must be apt or apk")
		} else if seen[string(r.Format)+"/"+r.Name] {
			pr.add(field+".name", "%s repository %s is listed twice", r.Format, r.Name)
		}
		seen[string(r.Format)+"/"+r.Name] = true
		// The parse error is not passed on: it quotes the URL.
		u, err := url.Parse(r.URL)
		switch {
		case r.URL == "":
			pr.add(field+".url", "required: the upstream base URL")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
			pr.add(field+".url", "must be an absolute http or https URL")
		case u.User != nil:
			pr.add(field+".url", "must not contain credentials (use username and password_file)")
		case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			pr.add(field+".url", "must not have a query or fragment")
		}
		if r.Password != "" && r.PasswordFile != "" {
			pr.add(field, "set at most one of password and password_file")
		}
		if (r.Password != "" || r.PasswordFile != "") && r.Username == "" {
			pr.add(field+".username", "required with a password")
		}
		if strings.Contains(r.Username, ":") {
			pr.add(field+".username", "must not contain ':'")
		}
		if name := filepath.Base(r.KeyFile); r.KeyFile != "" && r.Format == FormatApk &&
			(strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@+") != "" || !strings.HasSuffix(name, ".pub")) {
			pr.add(field+".key_file", "the file name must end in .pub and hold only letters, digits and ._-@+ (apk finds the key by it)")
		}
	}
}
