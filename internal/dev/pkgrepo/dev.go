package pkgrepo

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Dev is the set of repositories `tollgate dev` serves: an apt and an apk
// repository named Entitled (the demo account's) and one of each named
// Denied, all below Root as apt/NAME and apk/NAME.
type Dev struct {
	Root     string
	Entitled string // "os"
	Denied   string // "restricted"

	AptSuite, AptComponent       string
	AptPackage, AptDeniedPackage string
	// AptKeyring is the binary OpenPGP keyring that verifies the apt
	// repositories (for signed-by).
	AptKeyring string

	ApkArch                      string // the arch the demo lines name
	ApkPackage, ApkDeniedPackage string
	// ApkKey is the path of the .rsa.pub that verifies the apk
	// repositories (for /etc/apk/keys).
	ApkKey string
}

// SeedDev writes the dev repositories below dir (dir/repos), with keys
// kept in dir/keys: generated on the first run and reused after, so that
// a client set up once stays set up. The repositories are rewritten on
// every run.
func SeedDev(dir string) (*Dev, error) {
	d := &Dev{
		Root: filepath.Join(dir, "repos"), Entitled: "os", Denied: "restricted",
		AptSuite: "stable", AptComponent: "main", AptPackage: "tollgate-hello", AptDeniedPackage: "tollgate-secret",
		ApkArch: "x86_64", ApkPackage: "tollgate-hello", ApkDeniedPackage: "tollgate-secret",
	}
	keys := filepath.Join(dir, "keys")
	aptKey, err := LoadAptKey(filepath.Join(keys, "apt-signing.asc"))
	if errors.Is(err, fs.ErrNotExist) {
		if aptKey, err = NewAptKey("tollgate dev archive"); err == nil {
			err = SaveAptKey(filepath.Join(keys, "apt-signing.asc"), aptKey)
		}
	}
	if err != nil {
		return nil, err
	}
	d.AptKeyring = filepath.Join(keys, "tollgate-dev-archive-keyring.gpg")
	if err := WriteAptKeyring(d.AptKeyring, aptKey); err != nil {
		return nil, err
	}
	apkKey, err := LoadApkKey(keys, "tollgate-dev.rsa.pub")
	if errors.Is(err, fs.ErrNotExist) {
		if apkKey, err = NewApkKey("tollgate-dev"); err == nil {
			err = apkKey.Save(keys)
		}
	}
	if err != nil {
		return nil, err
	}
	d.ApkKey = filepath.Join(keys, apkKey.Name)

	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	hello := Package{Name: d.AptPackage, Version: "1.0.0", Description: "tollgate demo package", ModTime: mt, Files: map[string][]byte{
		"usr/share/tollgate-hello/hello.txt":     []byte("Hello from a package fetched through tollgate.\n"),
		"usr/share/doc/tollgate-hello/copyright": []byte("Public domain test data.\n"),
	}}
	motd := Package{Name: "tollgate-motd", Version: "0.1.0", Description: "tollgate demo message of the day", ModTime: mt, Files: map[string][]byte{
		"usr/share/tollgate-motd/motd": []byte("Packages through tollgate.\n"),
	}}
	secret := Package{Name: d.AptDeniedPackage, Version: "1.0.0", Description: "a package the demo account is not entitled to", ModTime: mt, Files: map[string][]byte{
		"usr/share/tollgate-secret/secret.txt": []byte("Not for the demo account.\n"),
	}}
	aptOpts := AptOptions{Suite: d.AptSuite, Component: d.AptComponent, Signer: aptKey, ByHash: true, Date: time.Now().Add(-time.Minute)}
	apkOpts := ApkOptions{Key: apkKey}
	apkVersion := func(p Package) Package { p.Version += "-r0"; return p }
	for _, r := range []struct {
		name string
		apt  []Package
	}{{d.Entitled, []Package{hello, motd}}, {d.Denied, []Package{secret}}} {
		aptDir := filepath.Join(d.Root, "apt", r.name)
		apkDir := filepath.Join(d.Root, "apk", r.name)
		for _, p := range []string{aptDir, apkDir} {
			if err := os.RemoveAll(p); err != nil {
				return nil, err
			}
		}
		if err := WriteApt(aptDir, r.apt, aptOpts); err != nil {
			return nil, err
		}
		var apks []Package
		for _, p := range r.apt {
			apks = append(apks, apkVersion(p))
		}
		apkOpts.Description = "tollgate dev " + r.name
		if err := WriteApk(apkDir, apks, apkOpts); err != nil {
			return nil, err
		}
	}
	return d, nil
}
