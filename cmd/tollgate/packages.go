package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/dev/pkgrepo"
	"github.com/tollgate/tollgate/proxy"
)

// packageOptions turns packages.repositories into the edge's package
// routes (none configured: those paths are not found).
func (m *Main) packageOptions() (proxy.PackagesOptions, error) {
	c := m.Config.Packages
	opts := proxy.PackagesOptions{MaxRedirects: c.MaxRedirects}
	for i, r := range c.Repositories {
		field := "packages.repositories[" + strconv.Itoa(i) + "]"
		pw, err := r.PackagePassword(field)
		if err != nil {
			return opts, err
		}
		// The password is revealed to the package transport, which sends it
		// to this repository's host only.
		repo := proxy.PackageUpstream{Format: r.Format, Name: r.Name, URL: r.URL, Username: r.Username, Password: pw.Reveal()}
		if r.CAFile != "" {
			if repo.TLS, err = caTLSConfig(field+".ca_file", r.CAFile); err != nil {
				return opts, err
			}
		}
		opts.Repos = append(opts.Repos, repo)
	}
	return opts, nil
}

// caTLSConfig trusts the PEM bundle at path in addition to the system
// roots.
func caTLSConfig(field, path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in %s", field, path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// devPackages is what `tollgate dev` serves as package upstreams: the
// repositories pkgrepo.SeedDev writes, on a loopback file server.
type devPackages struct {
	*pkgrepo.Dev
	Repositories config.PackageRepositories
	server       *pkgrepo.Server
}

// Close stops the file server.
func (d *devPackages) Close() error { return d.server.Close() }

// seedDevPackages writes the dev apt and apk repositories below
// dataDir/packages (keys kept across runs) and serves them on a loopback
// port, as upstreams for packages.repositories.
func seedDevPackages(dataDir string) (*devPackages, error) {
	dev, err := pkgrepo.SeedDev(filepath.Join(dataDir, "packages"))
	if err != nil {
		return nil, fmt.Errorf("dev packages: %w", err)
	}
	for _, p := range []*string{&dev.AptKeyring, &dev.ApkKey} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	srv, err := pkgrepo.Serve(dev.Root, "")
	if err != nil {
		return nil, fmt.Errorf("dev packages: %w", err)
	}
	d := &devPackages{Dev: dev, server: srv}
	for _, f := range []tollgate.PackageFormat{config.FormatApt, config.FormatApk} {
		for _, name := range []string{dev.Entitled, dev.Denied} {
			r := config.PackageRepository{Name: name, Format: f, URL: srv.URL + "/" + string(f) + "/" + name}
			if f == config.FormatApt {
				r.Suite, r.Component, r.KeyFile = dev.AptSuite, dev.AptComponent, dev.AptKeyring
			} else {
				r.KeyFile = dev.ApkKey
			}
			d.Repositories = append(d.Repositories, r)
		}
	}
	return d, nil
}

// grantDemo entitles the demo account to the entitled repositories and
// grants it package access (its default token gains the packages scope).
func (d *devPackages) grantDemo(ctx context.Context, svc *tollgate.Service, account string) error {
	a, err := svc.Account(ctx, account)
	if err != nil {
		return err
	}
	if !slices.Contains(a.Subscription.Packages, d.Entitled) {
		sub := a.Subscription
		sub.Packages = append(slices.Clone(sub.Packages), d.Entitled)
		if _, err := svc.SetSubscription(ctx, devActor, account, sub); err != nil {
			return err
		}
	}
	if a.PackageAccess != tollgate.PackageAccessGranted {
		if _, err := svc.GrantPackages(ctx, devActor, account); err != nil {
			return err
		}
	}
	return nil
}

// env is what dev.env gets for the package repositories.
func (d *devPackages) env(publicURL string) map[string]string {
	return map[string]string{
		"TOLLGATE_APT_URL":            publicURL + "/apt/" + d.Entitled,
		"TOLLGATE_APT_SUITE":          d.AptSuite,
		"TOLLGATE_APT_COMPONENT":      d.AptComponent,
		"TOLLGATE_APT_PACKAGE":        d.AptPackage,
		"TOLLGATE_APT_KEYRING":        d.AptKeyring,
		"TOLLGATE_APK_URL":            publicURL + "/apk/" + d.Entitled,
		"TOLLGATE_APK_ARCH":           d.ApkArch,
		"TOLLGATE_APK_PACKAGE":        d.ApkPackage,
		"TOLLGATE_APK_KEY":            d.ApkKey,
		"TOLLGATE_APT_DENIED_URL":     publicURL + "/apt/" + d.Denied,
		"TOLLGATE_APT_DENIED_PACKAGE": d.AptDeniedPackage,
		"TOLLGATE_APK_DENIED_URL":     publicURL + "/apk/" + d.Denied,
		"TOLLGATE_APK_DENIED_PACKAGE": d.ApkDeniedPackage,
	}
}
