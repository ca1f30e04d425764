package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPackagesValidation(t *testing.T) {
	ok := PackageRepository{Name: "os", Format: FormatApt, URL: "https://apt.internal/debian"}
	with := func(f func(*PackageRepository)) PackageRepositories {
		r := ok
		f(&r)
		return PackageRepositories{r}
	}
	tests := []struct {
		name  string
		repos PackageRepositories
		max   int
		want  string // "" = valid
	}{
		{"none", nil, 5, ""},
		{"apt and apk of one name", PackageRepositories{ok, {Name: "os", Format: FormatApk, URL: "http://apk.internal:8080/alpine/"}}, 5, ""},
		{"credentials", with(func(r *PackageRepository) { r.Username = "u"; r.PasswordFile = "/run/pw" }), 0, ""},
		{"dotted name", with(func(r *PackageRepository) { r.Name = "os-3.20_x" }), 5, ""},
		{"empty name", with(func(r *PackageRepository) { r.Name = "" }), 5, "packages.repositories[0].name: must be"},
		{"dot dot name", with(func(r *PackageRepository) { r.Name = ".." }), 5, "packages.repositories[0].name: must be"},
		{"upper case name", with(func(r *PackageRepository) { r.Name = "OS" }), 5, "packages.repositories[0].name: must be"},
		{"slash in name", with(func(r *PackageRepository) { r.Name = "a/b" }), 5, "packages.repositories[0].name: must be"},
		{"pattern in name", with(func(r *PackageRepository) { r.Name = "os*" }), 5, "packages.repositories[0].name: must be"},
		{"long name", with(func(r *PackageRepository) { r.Name = strings.Repeat("a", 64) }), 5, "packages.repositories[0].name: must be"},
		{"bad format", with(func(r *PackageRepository) { r.Format = "rpm" }), 5, "packages.repositories[0].format: must be apt or apk"},
		{"twice", PackageRepositories{ok, ok}, 5, "packages.repositories[1].name: apt repository os is listed twice"},
		{"no url", with(func(r *PackageRepository) { r.URL = "" }), 5, "packages.repositories[0].url: required"},
		{"relative url", with(func(r *PackageRepository) { r.URL = "apt.internal/debian" }), 5, "packages.repositories[0].url: must be an absolute"},
		{"url userinfo", with(func(r *PackageRepository) { r.URL = "https://u:hunter2@apt.internal" }), 5, "packages.repositories[0].url: must not contain credentials"},
		{"url query", with(func(r *PackageRepository) { r.URL = "https://apt.internal/?x=1" }), 5, "packages.repositories[0].url: must not have a query"},
		{"both passwords", with(func(r *PackageRepository) { r.Username = "u"; r.Password = "hunter2"; r.PasswordFile = "/f" }), 5, "packages.repositories[0]: set at most one"},
		{"password without user", with(func(r *PackageRepository) { r.Password = "hunter2" }), 5, "packages.repositories[0].username: required"},
		{"redirects", nil, 21, "packages.max_redirects: must be between 0 and 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Packages = PackagesConfig{Repositories: tt.repos, MaxRedirects: tt.max}
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error quotes a secret: %v", err)
			}
		})
	}
}

func TestPackagesYAMLAndEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600)
	yaml := `public_url: https://r.example.com
store: {driver: sqlite, sqlite: {path: /tmp/x.db}}
admin: {key_file: /tmp/admin.key}
keys: {dir: /tmp/keys}
packages:
  max_redirects: 3
  repositories:
    - name: os
      format: apt
      url: https://apt.internal/debian
      ca_file: /etc/ssl/apt-ca.pem
      username: tollgate
      password_file: ` + filepath.Join(dir, "pw") + `
    - name: os
      format: apk
      url: https://apk.internal/alpine
`
	os.WriteFile(path, []byte(yaml), 0o600)
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Packages.MaxRedirects != 3 || len(c.Packages.Repositories) != 2 {
		t.Fatalf("packages = %+v", c.Packages)
	}
	apt, ok := c.Packages.Repositories.Find(FormatApt, "os")
	if !ok || apt.CAFile != "/etc/ssl/apt-ca.pem" || apt.Username != "tollgate" {
		t.Fatalf("apt repo = %+v, %v", apt, ok)
	}
	if pw, err := apt.PackagePassword("packages.repositories[0]"); err != nil || pw.Reveal() != "s3cret" {
		t.Fatalf("password = %q, %v", pw, err)
	}
	if _, ok := c.Packages.Repositories.Find(FormatApk, "other"); ok {
		t.Fatal("found a repository that is not there")
	}

	// The environment replaces the list (URL only).
	env := map[string]string{"TOLLGATE_PACKAGES_REPOSITORIES": "apt:main=http://127.0.0.1:8080/apt, apk:main=http://127.0.0.1:8080/apk"}
	c, err = Load(path, envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Packages.Repositories; len(got) != 2 || got[0] != (PackageRepository{Name: "main", Format: "apt", URL: "http://127.0.0.1:8080/apt"}) || got[1].Format != "apk" {
		t.Fatalf("from env: %+v", got)
	}
	env["TOLLGATE_PACKAGES_REPOSITORIES"] = "https://u:hunter2@apt.internal"
	if _, err := Load(path, envMap(env)); err == nil || !strings.Contains(err.Error(), "TOLLGATE_PACKAGES_REPOSITORIES: must be") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad env value: %v", err)
	}
	// An unknown key in a repository is an error, as everywhere.
	os.WriteFile(path, []byte(strings.Replace(yaml, "ca_file:", "cafile:", 1)), 0o600)
	if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), "cafile") {
		t.Fatalf("unknown key: %v", err)
	}
}
