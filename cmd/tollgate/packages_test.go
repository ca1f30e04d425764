package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/dev/pkgrepo"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestDevServesPackages: `tollgate dev` seeds signed apt and apk
// repositories, lets the demo token read the entitled ones and not the
// others, and writes the settings a client needs to dev.env.
func TestDevServesPackages(t *testing.T) {
	data := t.TempDir()
	logs := &testenv.Buffer{}
	d := startDev(t, data, logs)
	env := d.Env
	for _, k := range []string{"TOLLGATE_APT_URL", "TOLLGATE_APT_SUITE", "TOLLGATE_APT_COMPONENT", "TOLLGATE_APT_PACKAGE", "TOLLGATE_APT_KEYRING",
		"TOLLGATE_APK_URL", "TOLLGATE_APK_ARCH", "TOLLGATE_APK_PACKAGE", "TOLLGATE_APK_KEY",
		"TOLLGATE_APT_DENIED_URL", "TOLLGATE_APT_DENIED_PACKAGE", "TOLLGATE_APK_DENIED_URL", "TOLLGATE_APK_DENIED_PACKAGE"} {
		if env[k] == "" {
			t.Errorf("dev.env lacks %s", k)
		}
	}
	written, _ := os.ReadFile(data + "/dev.env")
	if !strings.Contains(string(written), "TOLLGATE_APK_URL="+env["TOLLGATE_APK_URL"]+"\n") {
		t.Fatalf("dev.env:\n%s", written)
	}
	get := func(url, secret string) (int, []byte) {
		req, _ := http.NewRequest("GET", url, nil)
		if secret != "" {
			req.SetBasicAuth("tollgate", secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	tok := env["TOLLGATE_DEMO_TOKEN"]
	suite := env["TOLLGATE_APT_URL"] + "/dists/" + env["TOLLGATE_APT_SUITE"] + "/InRelease"
	if code, b := get(suite, tok); code != 200 || !strings.Contains(string(b), "BEGIN PGP SIGNED MESSAGE") {
		t.Fatalf("InRelease: %d %s", code, b)
	}
	if code, _ := get(suite, ""); code != 401 {
		t.Fatalf("InRelease without credentials: %d", code)
	}
	if code, _ := get(env["TOLLGATE_APT_DENIED_URL"]+"/dists/stable/InRelease", tok); code != 403 {
		t.Fatalf("denied apt repository: %d", code)
	}
	code, idx := get(env["TOLLGATE_APK_URL"]+"/"+env["TOLLGATE_APK_ARCH"]+"/APKINDEX.tar.gz", tok)
	key, _ := os.ReadFile(env["TOLLGATE_APK_KEY"])
	if code != 200 || pkgrepo.VerifyApkSignature(idx, key) != nil {
		t.Fatalf("APKINDEX: %d, signature checked with %s", code, env["TOLLGATE_APK_KEY"])
	}
	if code, _ := get(env["TOLLGATE_APK_DENIED_URL"]+"/x86_64/APKINDEX.tar.gz", tok); code != 403 {
		t.Fatalf("denied apk repository: %d", code)
	}
	out := d.Out.(interface{ String() string }).String()
	for _, want := range []string{"apt-get install " + env["TOLLGATE_APT_PACKAGE"], "install -m 600 /dev/null /etc/apt/auth.conf.d/tollgate-os.conf",
		"Signed-By: /etc/apt/keyrings/tollgate-os.gpg", "/keys/apt/os/key.gpg", "apk add " + env["TOLLGATE_APK_PACKAGE"],
		"/apk/os' | $(command -v sudo) tee -a /etc/apk/repositories", "/keys/apk/os/tollgate-dev.rsa.pub"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(logs.String(), tok) {
		t.Fatal("the demo token is in the logs")
	}
	// The keys the commands install are public: served without credentials.
	aptKey, _ := os.ReadFile(env["TOLLGATE_APT_KEYRING"])
	if code, b := get(d.Env["TOLLGATE_URL"]+"/keys/apt/os/key.gpg", ""); code != 200 || string(b) != string(aptKey) {
		t.Fatalf("apt key: %d, %d bytes", code, len(b))
	}
	if code, b := get(d.Env["TOLLGATE_URL"]+"/keys/apk/os/tollgate-dev.rsa.pub", ""); code != 200 || string(b) != string(key) {
		t.Fatalf("apk key: %d, %d bytes", code, len(b))
	}
	if code, _ := get(d.Env["TOLLGATE_URL"]+"/keys/apt/restricted/nope.gpg", ""); code != 404 {
		t.Fatalf("unknown key: %d", code)
	}
	// The Basic realm is the package host (no port), as HTTP_AUTH=basic:HOST:... names it.
	req, _ := http.NewRequest("GET", suite, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.Header.Get("WWW-Authenticate") != `Basic realm="`+req.URL.Hostname()+`"` {
		t.Fatalf("package challenge: %q", resp.Header.Get("WWW-Authenticate"))
	}

	// A second start reuses the keys: clients set up once stay set up.
	d.Main.Close()
	d2 := startDev(t, data, logs)
	key2, _ := os.ReadFile(d2.Env["TOLLGATE_APK_KEY"])
	if string(key) != string(key2) || d2.Env["TOLLGATE_DEMO_TOKEN"] != tok {
		t.Fatal("second start changed the apk key or the demo token")
	}
}
