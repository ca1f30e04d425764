package tollgate

import (
	"strings"
	"testing"
)

func setupText(cmds []SetupCommand) string {
	var b strings.Builder
	for _, c := range cmds {
		b.WriteString("# " + c.Title + "\n" + c.Text + "\n\n")
	}
	return b.String()
}

func TestSetupCommands(t *testing.T) {
	secret := NewSecret(TokenPrefix).Reveal()
	repos := []PackageRepo{
		{Name: "os", Format: PackageApk, KeyFile: "vendor.rsa.pub"},
		{Name: "bookworm", Format: PackageApt, Suite: "bookworm", Component: "main", KeyFile: "key.gpg"},
	}

	t.Run("ImagesOnly", func(t *testing.T) {
		img := SetupCommands("https://registry.example.com/", secret, ScopeImages, repos)
		text := setupText(img)
		for _, want := range []string{
			"echo '" + secret + "' | docker login registry.example.com -u tollgate --password-stdin",
			"kubectl create secret docker-registry tollgate-pull --docker-server=registry.example.com --docker-username=tollgate --docker-password='" + secret + "'",
			`kubectl patch serviceaccount default -p '{"imagePullSecrets":[{"name":"tollgate-pull"}]}'`,
			"imagePullSecrets: [{name: tollgate-pull}]",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("missing %q in\n%s", want, text)
			}
		}
		for _, unwanted := range []string{"apt", "apk", "hosts.toml", "--insecure", "tls-verify=false"} {
			if strings.Contains(text, unwanted) {
				t.Errorf("images-only snippets mention %q:\n%s", unwanted, text)
			}
		}
	})

	t.Run("PackagesOverHTTPS", func(t *testing.T) {
		text := setupText(SetupCommands("https://registry.example.com:8443", secret, ScopeImages|ScopePackages, repos))
		for _, want := range []string{
			// apk: key, repository, HTTP_AUTH with the host and no port
			// (apk-tools would take the port for the user name), URL form,
			// apko with the token in the URL (its HTTP_AUTH never matches
			// a host with a port).
			"$(command -v sudo) wget -q -O /etc/apk/keys/vendor.rsa.pub https://registry.example.com:8443/keys/apk/os/vendor.rsa.pub",
			"echo 'https://registry.example.com:8443/apk/os' | $(command -v sudo) tee -a /etc/apk/repositories >/dev/null",
			"export HTTP_AUTH='basic:registry.example.com:tollgate:" + secret + "'",
			`$(command -v sudo) env HTTP_AUTH="$HTTP_AUTH" apk update`,
			"echo 'https://tollgate:" + secret + "@registry.example.com:8443/apk/os' | $(command -v sudo) tee -a /etc/apk/repositories",
			"  keyring:\n    - https://registry.example.com:8443/keys/apk/os/vendor.rsa.pub\n  repositories:\n    - https://tollgate:" + secret + "@registry.example.com:8443/apk/os",
			// apt: key, credentials created 600 first, deb822 and one-line.
			"$(command -v sudo) curl -fsSL -o /etc/apt/keyrings/tollgate-bookworm.gpg https://registry.example.com:8443/keys/apt/bookworm/key.gpg",
			"$(command -v sudo) install -m 600 /dev/null /etc/apt/auth.conf.d/tollgate-bookworm.conf\n" +
				"echo 'machine registry.example.com:8443/apt/bookworm login tollgate password " + secret + "' | $(command -v sudo) tee /etc/apt/auth.conf.d/tollgate-bookworm.conf >/dev/null",
			"'Types: deb' 'URIs: https://registry.example.com:8443/apt/bookworm' 'Suites: bookworm' 'Components: main' 'Signed-By: /etc/apt/keyrings/tollgate-bookworm.gpg'",
			"echo 'deb [signed-by=/etc/apt/keyrings/tollgate-bookworm.gpg] https://registry.example.com:8443/apt/bookworm bookworm main'",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("missing %q in\n%s", want, text)
			}
		}
		if strings.Contains(text, "chmod") || strings.Contains(text, "\n\n\n") {
			t.Errorf("a credentials file made readable first, or an empty line in a snippet:\n%s", text)
		}
	})

	t.Run("ApkoUsesHTTPAuthWithoutAPort", func(t *testing.T) {
		text := setupText(SetupCommands("https://registry.example.com", secret, ScopePackages, repos))
		want := "# apko.yaml (melange: under environment:), built with HTTP_AUTH='basic:registry.example.com:tollgate:" + secret + "' exported\n" +
			"contents:\n  keyring:\n    - https://registry.example.com/keys/apk/os/vendor.rsa.pub\n  repositories:\n    - https://registry.example.com/apk/os"
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	})

	t.Run("PlainHTTPMachineHasScheme", func(t *testing.T) {
		// apt matches scheme-less machine entries only over https.
		text := setupText(SetupCommands("http://127.0.0.1:5000", secret, ScopePackages, repos))
		if !strings.Contains(text, "machine http://127.0.0.1:5000/apt/bookworm ") || strings.Contains(text, "docker login") {
			t.Errorf("http snippets:\n%s", text)
		}
	})

	t.Run("ArmoredKeyGoesToAscFile", func(t *testing.T) {
		text := setupText(SetupCommands("https://r.example", secret, ScopePackages, []PackageRepo{{Name: "x", Format: PackageApt, KeyFile: "key.asc"}}))
		if !strings.Contains(text, "-o /etc/apt/keyrings/tollgate-x.asc ") || !strings.Contains(text, "Signed-By: /etc/apt/keyrings/tollgate-x.asc") {
			t.Errorf("armored key:\n%s", text)
		}
	})

	t.Run("PrivateCAVerifiesTLS", func(t *testing.T) {
		text := setupText(Setup{PublicURL: "https://127.0.0.1:5000", Secret: secret, Scope: ScopeImages | ScopePackages, Repos: repos, CAFile: "/data/ca.crt"}.Commands())
		for _, want := range []string{
			"install -D -m 644 /data/ca.crt /etc/docker/certs.d/127.0.0.1:5000/ca.crt",
			"install -D -m 644 /data/ca.crt /etc/containerd/certs.d/127.0.0.1:5000/ca.crt",
			`'[host."https://127.0.0.1:5000"]'`,
			"update-ca-certificates",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("missing %q in\n%s", want, text)
			}
		}
	})
}
