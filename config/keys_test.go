package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// generated returns a directory holding freshly generated keys.
func generated(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateThenLoadKeys(t *testing.T) {
	dir := generated(t)

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v", fi.Mode().Perm())
	}
	for _, name := range keyFileNames {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v", name, fi.Mode().Perm())
		}
	}
	if admin := strings.TrimSpace(string(readFile(t, filepath.Join(dir, AdminKeyFileName)))); len(admin) != 43 {
		t.Errorf("admin key has %d characters", len(admin))
	} else if _, err := base64.RawURLEncoding.DecodeString(admin); err != nil {
		t.Errorf("admin key is not base64url: %v", err)
	}
	if block, _ := pem.Decode(readFile(t, filepath.Join(dir, SigningKeyFileName))); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("signing key is not a PKCS#8 PEM")
	}

	keys, err := LoadKeys(KeysConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.Lookup) != KeySize || len(keys.Seal) != KeySize || bytes.Equal(keys.Lookup, keys.Seal) {
		t.Errorf("lookup/seal keys: %d, %d bytes", len(keys.Lookup), len(keys.Seal))
	}
	if keys.Signing == nil || keys.Signing.Curve != elliptic.P256() {
		t.Fatal("no P-256 signing key")
	}
	if len(keys.Verification) != 1 || !keys.Verification[0].Equal(&keys.Signing.PublicKey) {
		t.Errorf("verification keys: %d", len(keys.Verification))
	}

	// A second generation gives different keys.
	other, err := LoadKeys(KeysConfig{Dir: generated(t)})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(keys.Lookup, other.Lookup) || keys.Signing.Equal(other.Signing) {
		t.Error("keys repeat")
	}

	// Explicit paths win over dir; verification keys follow the signing key.
	oldPub, err := MarshalPublicKeyPEM(&other.Signing.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ownPub, _ := MarshalPublicKeyPEM(&keys.Signing.PublicKey)
	rotation := filepath.Join(t.TempDir(), "old.pem")
	writeFile(t, rotation, append(oldPub, ownPub...)) // the duplicate is dropped
	keys2, err := LoadKeys(KeysConfig{
		Dir:                     dir,
		JWTSigningKeyFile:       filepath.Join(dir, SigningKeyFileName),
		JWTVerificationKeyFiles: []string{rotation},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys2.Verification) != 2 || !keys2.Verification[0].Equal(&keys.Signing.PublicKey) ||
		!keys2.Verification[1].Equal(&other.Signing.PublicKey) {
		t.Errorf("verification keys: %d", len(keys2.Verification))
	}
}

func TestLoadKeysAcceptsOtherEncodings(t *testing.T) {
	dir := generated(t)
	// openssl rand -base64 32 style, URL alphabet without padding, CRLF.
	raw := bytes.Repeat([]byte{0xfb}, KeySize)
	writeFile(t, filepath.Join(dir, LookupKeyFileName), []byte(base64.RawURLEncoding.EncodeToString(raw)+"\r\n"))
	// SEC 1 EC PRIVATE KEY, as `openssl ecparam -genkey` writes it.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(priv)
	sec1 := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	writeFile(t, filepath.Join(dir, SigningKeyFileName), sec1)

	keys, err := LoadKeys(KeysConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys.Lookup, raw) || !keys.Signing.Equal(priv) {
		t.Error("keys differ")
	}
}

func TestGenerateKeysRefusesToOverwrite(t *testing.T) {
	for _, name := range keyFileNames {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			existing := filepath.Join(dir, name)
			writeFile(t, existing, []byte("keep me\n"))
			err := GenerateKeys(dir)
			if err == nil || !strings.Contains(err.Error(), existing) {
				t.Fatalf("err = %v", err)
			}
			if got := string(readFile(t, existing)); got != "keep me\n" {
				t.Errorf("overwritten: %q", got)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("wrote files: %v", entries)
			}
		})
	}
	t.Run("all present", func(t *testing.T) {
		dir := generated(t)
		before := readFile(t, filepath.Join(dir, LookupKeyFileName))
		if err := GenerateKeys(dir); err == nil {
			t.Fatal("generated over existing keys")
		}
		if !bytes.Equal(before, readFile(t, filepath.Join(dir, LookupKeyFileName))) {
			t.Error("lookup key changed")
		}
	})
}

func TestEnsureKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	if err := EnsureKeys(dir); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if _, err := LoadKeys(KeysConfig{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(dir, SealKeyFileName))
	if err := EnsureKeys(dir); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if !bytes.Equal(before, readFile(t, filepath.Join(dir, SealKeyFileName))) {
		t.Error("keys were regenerated")
	}

	missing := filepath.Join(dir, LookupKeyFileName)
	if err := os.Remove(missing); err != nil {
		t.Fatal(err)
	}
	err := EnsureKeys(dir)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("partial dir: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Error("regenerated one key of a set")
	}
}

func TestLoadKeysRejectsBadFiles(t *testing.T) {
	ecPub := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		b, _ := MarshalPublicKeyPEM(&k.PublicKey)
		return b
	}
	tests := []struct {
		name  string
		file  string
		data  []byte
		extra bool // write data to a verification key file instead
		want  string
	}{
		{"lookup 12 bytes", LookupKeyFileName, []byte(base64.StdEncoding.EncodeToString(make([]byte, 12)) + "\n"), false,
			"keys.lookup_key_file: must hold 32 bytes of base64, got 12 bytes"},
		{"seal 33 bytes", SealKeyFileName, []byte(base64.StdEncoding.EncodeToString(make([]byte, 33))), false,
			"keys.seal_key_file: must hold 32 bytes of base64, got 33 bytes"},
		{"lookup raw bytes", LookupKeyFileName, bytes.Repeat([]byte{0xff}, 32), false,
			"keys.lookup_key_file: must hold 32 bytes of base64, got text that is not base64"},
		{"seal empty", SealKeyFileName, nil, false,
			"keys.seal_key_file: must hold 32 bytes of base64, got 0 bytes"},
		{"signing not PEM", SigningKeyFileName, []byte("hello"), false,
			"keys.jwt_signing_key_file: must hold a PEM ECDSA P-256 private key"},
		{"signing public key", SigningKeyFileName, ecPub(), false,
			"keys.jwt_signing_key_file: must hold a PEM ECDSA P-256 private key"},
		{"verification not a public key", "old.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), true,
			"keys.jwt_verification_key_files[0]: must hold PEM ECDSA P-256 public keys"},
		{"verification P-384", "old.pem", ecPub(), true,
			"keys.jwt_verification_key_files[0]: must hold PEM ECDSA P-256 public keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := generated(t)
			kc := KeysConfig{Dir: dir}
			path := filepath.Join(dir, tt.file)
			if tt.extra {
				kc.JWTVerificationKeyFiles = []string{path}
			}
			writeFile(t, path, tt.data)
			_, err := LoadKeys(kc)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}

	t.Run("same lookup and seal key", func(t *testing.T) {
		dir := generated(t)
		writeFile(t, filepath.Join(dir, SealKeyFileName), readFile(t, filepath.Join(dir, LookupKeyFileName)))
		_, err := LoadKeys(KeysConfig{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "keys.seal_key_file: must hold a different key") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("every problem reported", func(t *testing.T) {
		_, err := LoadKeys(KeysConfig{JWTVerificationKeyFiles: []string{""}})
		for _, want := range []string{"keys.jwt_signing_key_file: required", "keys.jwt_verification_key_files[0]: must not be empty",
			"keys.lookup_key_file: required", "keys.seal_key_file: required"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want %q", err, want)
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		dir := generated(t)
		os.Remove(filepath.Join(dir, SealKeyFileName))
		_, err := LoadKeys(KeysConfig{Dir: dir})
		if err == nil || !os.IsNotExist(unwrapAll(err)) || !strings.Contains(err.Error(), "keys.seal_key_file: open ") {
			t.Fatalf("err = %v", err)
		}
	})
}

// unwrapAll returns the innermost of a chain of single wraps and joins.
func unwrapAll(err error) error {
	for {
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			err = e.Unwrap()[0]
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		default:
			return err
		}
	}
}

// TestKeyMaterialNotInErrors corrupts each generated key file and checks
// that no error quotes what is in it.
func TestKeyMaterialNotInErrors(t *testing.T) {
	corruptions := []struct {
		name, file string
		corrupt    func([]byte) []byte
	}{
		{"lookup truncated", LookupKeyFileName, func(b []byte) []byte { return b[:20] }},
		{"lookup garbled", LookupKeyFileName, func(b []byte) []byte { return append(b[:20:20], append([]byte("!?"), b[22:]...)...) }},
		{"seal doubled", SealKeyFileName, func(b []byte) []byte { return append(bytes.TrimSpace(b), bytes.TrimSpace(b)...) }},
		{"signing flipped byte", SigningKeyFileName, func(b []byte) []byte {
			block, _ := pem.Decode(b)
			block.Bytes[len(block.Bytes)/2] ^= 0xff
			block.Bytes[10] ^= 0xff
			return pem.EncodeToMemory(block)
		}},
		{"signing truncated DER", SigningKeyFileName, func(b []byte) []byte {
			block, _ := pem.Decode(b)
			block.Bytes = block.Bytes[:len(block.Bytes)-9]
			return pem.EncodeToMemory(block)
		}},
		{"signing bare base64", SigningKeyFileName, func(b []byte) []byte {
			block, _ := pem.Decode(b)
			return []byte(base64.StdEncoding.EncodeToString(block.Bytes))
		}},
	}
	for _, tt := range corruptions {
		t.Run(tt.name, func(t *testing.T) {
			dir := generated(t)
			path := filepath.Join(dir, tt.file)
			original := readFile(t, path)
			corrupted := tt.corrupt(bytes.Clone(original))
			writeFile(t, path, corrupted)

			_, err := LoadKeys(KeysConfig{Dir: dir})
			if err == nil {
				t.Fatal("loaded corrupted keys")
			}
			assertNoMaterial(t, err.Error(), original, corrupted)
		})
	}

	t.Run("admin key", func(t *testing.T) {
		dir := generated(t)
		path := filepath.Join(dir, AdminKeyFileName)
		original := readFile(t, path)
		corrupted := append(original[:20:20], ' ', 'x')
		writeFile(t, path, corrupted)
		_, err := (&Config{Keys: KeysConfig{Dir: dir}}).AdminKey()
		if err == nil {
			t.Fatal("accepted")
		}
		assertNoMaterial(t, err.Error(), original, corrupted)
	})
}

// assertNoMaterial fails if msg holds any 8-character run of the files'
// contents, as text or as the bytes they encode.
func assertNoMaterial(t *testing.T, msg string, files ...[]byte) {
	t.Helper()
	for _, f := range files {
		texts := []string{string(f)}
		if block, _ := pem.Decode(f); block != nil {
			texts = append(texts, string(block.Bytes), fmt.Sprintf("%x", block.Bytes), fmt.Sprint(block.Bytes))
		}
		if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(f))); err == nil {
			texts = append(texts, string(raw), fmt.Sprintf("%x", raw), fmt.Sprint(raw))
		}
		for _, text := range texts {
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(line, "-----") {
					continue // PEM armour is not material
				}
				for i := 0; i+8 <= len(line); i++ {
					if strings.Contains(msg, line[i:i+8]) {
						t.Fatalf("error %q holds key material %q", msg, line[i:i+8])
					}
				}
			}
		}
	}
}

func TestKeysAreRedacted(t *testing.T) {
	keys, err := LoadKeys(KeysConfig{Dir: generated(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(keys), fmt.Sprintf("%+v", *keys), fmt.Sprintf("%#v", keys), fmt.Sprintf("%x", keys)} {
		if strings.Contains(out, fmt.Sprintf("%x", keys.Lookup[:8])) || strings.Contains(out, fmt.Sprint(keys.Seal[:4])) ||
			!strings.Contains(out, "REDACTED") {
			t.Errorf("keys shown: %s", out)
		}
	}
}
