package tollgate

import (
	"strings"
	"testing"
)

func TestSetupCommands(t *testing.T) {
	secret := NewSecret(TokenPrefix).Reveal()
	repos := []PackageRepo{{Name: "os", Kind: "apk"}, {Name: "bookworm", Kind: "apt", Suite: "bookworm", Component: "main"}}

	img := SetupCommands("https://registry.example.com/", secret, ScopeImages, repos)
	if len(img) != 2 {
		t.Fatalf("images-only token got %d snippets: %v", len(img), img)
	}
	if want := "echo '" + secret + "' | docker login registry.example.com -u tollgate --password-stdin"; img[0].Text != want {
		t.Errorf("docker login = %q", img[0].Text)
	}
	if !strings.Contains(img[1].Text, "--docker-server=registry.example.com") || !strings.Contains(img[1].Text, "--docker-password='"+secret+"'") {
		t.Errorf("kubectl = %q", img[1].Text)
	}

	all := SetupCommands("https://registry.example.com", secret, ScopeImages|ScopePackages, repos)
	text := ""
	for _, c := range all {
		text += c.Text + "\n"
	}
	for _, want := range []string{
		"echo 'https://tollgate:" + secret + "@registry.example.com/apk/os' >> /etc/apk/repositories",
		"export HTTP_AUTH='basic:tollgate:tollgate:" + secret + "'",
		"machine registry.example.com/apt/bookworm login tollgate password " + secret,
		"deb https://registry.example.com/apt/bookworm bookworm main",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
	// apt matches scheme-less machine entries only over https.
	plain := SetupCommands("http://127.0.0.1:5000", secret, ScopePackages, repos)
	if len(plain) != 4 || !strings.Contains(plain[2].Text, "machine http://127.0.0.1:5000/apt/bookworm ") {
		t.Errorf("http apt entry = %v", plain)
	}
}
