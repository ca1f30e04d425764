package pkgrepo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chainguard-dev/go-apk/pkg/apk"
	"github.com/chainguard-dev/go-apk/pkg/expandapk"

	"github.com/tollgate/tollgate/internal/testenv"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testenv.Required() {
			t.Fatalf("%s is required (TOLLGATE_TEST_REQUIRE_SERVICES=1) but missing", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

var hello = Package{Name: "hello", Version: "1.2.3", Description: "a test package", Files: map[string][]byte{
	"usr/share/hello/a.txt": []byte("a\n"),
	"usr/share/doc/hello/b": []byte(strings.Repeat("b", 3000)),
}}

func TestDebReadByDpkgDeb(t *testing.T) {
	dpkg := needTool(t, "dpkg-deb")
	deb, err := BuildDeb(hello)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "hello.deb")
	os.WriteFile(f, deb, 0o644)
	out, err := exec.Command(dpkg, "--field", f, "Package", "Version", "Architecture").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Package: hello\nVersion: 1.2.3\nArchitecture: all") {
		t.Fatalf("dpkg-deb --field: %v\n%s", err, out)
	}
	out, err = exec.Command(dpkg, "--contents", f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "./usr/share/hello/a.txt") || !strings.Contains(string(out), "./usr/share/doc/hello/b") {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, out)
	}
	x := t.TempDir()
	if out, err := exec.Command(dpkg, "-x", f, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(x, "usr/share/hello/a.txt")); string(b) != "a\n" {
		t.Fatalf("extracted a.txt = %q", b)
	}
}

func TestAptRepositorySignedAndConsistent(t *testing.T) {
	dir := t.TempDir()
	key, err := NewAptKey("test archive")
	if err != nil {
		t.Fatal(err)
	}
	amd := hello
	amd.Name, amd.Arch = "only-amd64", "amd64"
	if err := WriteApt(dir, []Package{hello, amd}, AptOptions{Signer: key, ByHash: true}); err != nil {
		t.Fatal(err)
	}
	release, err := os.ReadFile(filepath.Join(dir, "dists/stable/Release"))
	if err != nil {
		t.Fatal(err)
	}
	// Every index file listed in Release has the listed size and hash,
	// also under by-hash.
	inSHA := false
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(release))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			inSHA = line == "SHA256:"
			continue
		}
		if !inSHA {
			continue
		}
		f := strings.Fields(line)
		b, err := os.ReadFile(filepath.Join(dir, "dists/stable", f[2]))
		sum := sha256.Sum256(b)
		if err != nil || hex.EncodeToString(sum[:]) != f[0] {
			t.Errorf("%s: hash mismatch (%v)", f[2], err)
		}
		if _, err := os.Stat(filepath.Join(dir, "dists/stable", filepath.Dir(f[2]), "by-hash/SHA256", f[0])); err != nil {
			t.Errorf("%s: no by-hash copy", f[2])
		}
		n++
	}
	if n != 4 {
		t.Fatalf("Release lists %d files, want 4:\n%s", n, release)
	}
	pk, _ := os.ReadFile(filepath.Join(dir, "dists/stable/main/binary-arm64/Packages"))
	if !strings.Contains(string(pk), "Filename: pool/main/h/hello/hello_1.2.3_all.deb") || strings.Contains(string(pk), "only-amd64") {
		t.Fatalf("arm64 Packages:\n%s", pk)
	}
	deb, _ := os.ReadFile(filepath.Join(dir, "pool/main/h/hello/hello_1.2.3_all.deb"))
	if sum := sha256.Sum256(deb); !strings.Contains(string(pk), "SHA256: "+hex.EncodeToString(sum[:])) {
		t.Fatalf("Packages does not carry the .deb's hash")
	}

	gpgv := needTool(t, "gpgv")
	keyring := filepath.Join(t.TempDir(), "k.gpg")
	if err := WriteAptKeyring(keyring, key); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{filepath.Join(dir, "dists/stable/InRelease")},
		{filepath.Join(dir, "dists/stable/Release.gpg"), filepath.Join(dir, "dists/stable/Release")},
	} {
		cmd := exec.Command(gpgv, append([]string{"--keyring", keyring}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gpgv %v: %v\n%s", args, err, out)
		}
	}
	// A changed Release no longer verifies.
	os.WriteFile(filepath.Join(dir, "dists/stable/Release"), append(release, '#'), 0o644)
	if err := exec.Command(gpgv, "--keyring", keyring, filepath.Join(dir, "dists/stable/Release.gpg"), filepath.Join(dir, "dists/stable/Release")).Run(); err == nil {
		t.Fatal("gpgv accepted a changed Release")
	}
}

func TestApkRepositoryReadByGoApk(t *testing.T) {
	dir := t.TempDir()
	key, err := NewApkKey("test-key")
	if err != nil {
		t.Fatal(err)
	}
	p := hello
	p.Version = "1.2.3-r0"
	if err := WriteApk(dir, []Package{p}, ApkOptions{Key: key, Archs: []string{"x86_64"}}); err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(filepath.Join(dir, "x86_64/APKINDEX.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyApkSignature(idx, key.PublicPEM()); err != nil {
		t.Fatalf("index signature: %v", err)
	}
	other, _ := NewApkKey("other")
	if err := VerifyApkSignature(idx, other.PublicPEM()); err == nil {
		t.Fatal("index verified with another key")
	}
	// go-apk checks the signature the way apk does and parses the index.
	ctx := context.Background()
	indexes, err := apk.GetRepositoryIndexes(ctx, []string{dir}, map[string][]byte{key.Name: key.PublicPEM()}, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if len(indexes) != 1 || len(indexes[0].Packages()) != 1 {
		t.Fatalf("indexes = %+v", indexes)
	}
	rp := indexes[0].Packages()[0]
	if rp.Name != "hello" || rp.Version != "1.2.3-r0" || rp.Arch != "x86_64" {
		t.Fatalf("package = %+v", rp.Package)
	}
	f, err := os.Open(filepath.Join(dir, "x86_64", ApkFileName(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exp, err := expandapk.ExpandApk(ctx, f, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Close()
	if !exp.Signed || !bytes.Equal(exp.ControlHash, rp.Checksum) {
		t.Fatalf("signed %v, control hash %x, index checksum %x", exp.Signed, exp.ControlHash, rp.Checksum)
	}
	if st, _ := f.Stat(); uint64(st.Size()) != rp.Size {
		t.Fatalf("index size %d, file %d", rp.Size, st.Size())
	}
	b, err := fsRead(exp, "usr/share/hello/a.txt")
	if err != nil || string(b) != "a\n" {
		t.Fatalf("a.txt = %q, %v", b, err)
	}
	apkFile, _ := os.ReadFile(f.Name())
	if err := VerifyApkSignature(apkFile, key.PublicPEM()); err != nil {
		t.Fatalf("package signature: %v", err)
	}
}

func fsRead(exp *expandapk.APKExpanded, name string) ([]byte, error) {
	f, err := exp.TarFS.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

func TestFileServerConditionalAndRange(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("0123456789"), 0o644)
	srv := httptest.NewServer(FileServer(dir))
	defer srv.Close()
	get := func(path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	r := get("/f", nil)
	etag := r.Header.Get("ETag")
	if r.StatusCode != 200 || etag == "" || r.Header.Get("Last-Modified") == "" {
		t.Fatalf("GET: %d %v", r.StatusCode, r.Header)
	}
	if r := get("/f", map[string]string{"If-None-Match": etag}); r.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", r.StatusCode)
	}
	if r := get("/f", map[string]string{"Range": "bytes=2-", "If-Range": etag}); r.StatusCode != 206 || r.Header.Get("Content-Range") != "bytes 2-9/10" {
		t.Fatalf("Range: %d %v", r.StatusCode, r.Header)
	}
	for _, p := range []string{"/", "/../f", "/nope"} {
		if r := get(p, nil); r.StatusCode != 404 && p != "/../f" {
			t.Fatalf("%s: %d", p, r.StatusCode)
		}
	}
}

func TestSeedDevKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	d1, err := SeedDev(dir)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := os.ReadFile(d1.AptKeyring)
	a1, _ := os.ReadFile(d1.ApkKey)
	time.Sleep(10 * time.Millisecond)
	d2, err := SeedDev(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := os.ReadFile(d2.AptKeyring)
	a2, _ := os.ReadFile(d2.ApkKey)
	if !bytes.Equal(k1, k2) || !bytes.Equal(a1, a2) || len(k1) == 0 || len(a1) == 0 {
		t.Fatal("keys changed between runs")
	}
	for _, p := range []string{
		"apt/os/dists/stable/InRelease", "apt/os/pool/main/t/tollgate-hello/tollgate-hello_1.0.0_all.deb",
		"apt/restricted/pool/main/t/tollgate-secret/tollgate-secret_1.0.0_all.deb",
		"apk/os/x86_64/APKINDEX.tar.gz", "apk/os/x86_64/tollgate-hello-1.0.0-r0.apk", "apk/os/aarch64/APKINDEX.tar.gz",
		"apk/restricted/x86_64/tollgate-secret-1.0.0-r0.apk",
	} {
		if _, err := os.Stat(filepath.Join(d2.Root, p)); err != nil {
			t.Error(err)
		}
	}
}
