package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// File names in a keys directory (keys.dir), as GenerateKeys writes them.
const (
	SigningKeyFileName = "jwt-signing.pem"
	LookupKeyFileName  = "lookup.key"
	SealKeyFileName    = "seal.key"
	AdminKeyFileName   = "admin.key"
)

// KeySize is the size of the lookup and sealing keys.
const KeySize = 32

// KeysConfig names the key files. Validate checks only that they are
// named; LoadKeys reads them.
type KeysConfig struct {
	// Dir, when set, is a directory holding the files below under their
	// default names (SigningKeyFileName...): each unset path defaults to
	// one in Dir. GenerateKeys and EnsureKeys fill such a directory.
	Dir string `yaml:"dir"`
	// JWTSigningKeyFile is a PEM ECDSA P-256 private key (PKCS#8, "PRIVATE
	// KEY"; SEC 1 "EC PRIVATE KEY" is accepted too) that signs bearer JWTs.
	JWTSigningKeyFile string `yaml:"jwt_signing_key_file"`
	// JWTVerificationKeyFiles are PEM public keys ("PUBLIC KEY", ECDSA
	// P-256) whose JWTs are accepted besides the signing key's: during a
	// rotation, the previous signing key's public key.
	JWTVerificationKeyFiles []string `yaml:"jwt_verification_key_files"`
	// LookupKeyFile holds 32 random bytes, base64, that key the hash under
	// which registry tokens are looked up. Changing it invalidates every
	// token.
	LookupKeyFile string `yaml:"lookup_key_file"`
	// SealKeyFile holds 32 random bytes, base64, that encrypt the tokens
	// the console can show again. It must differ from the lookup key.
	SealKeyFile string `yaml:"seal_key_file"`
}

// Resolved returns k with unset file paths filled in from Dir.
func (k KeysConfig) Resolved() KeysConfig {
	if k.Dir == "" {
		return k
	}
	if k.JWTSigningKeyFile == "" {
		k.JWTSigningKeyFile = filepath.Join(k.Dir, SigningKeyFileName)
	}
	if k.LookupKeyFile == "" {
		k.LookupKeyFile = filepath.Join(k.Dir, LookupKeyFileName)
	}
	if k.SealKeyFile == "" {
		k.SealKeyFile = filepath.Join(k.Dir, SealKeyFileName)
	}
	return k
}

func (k KeysConfig) adminKeyFile() string { return filepath.Join(k.Dir, AdminKeyFileName) }

func (k KeysConfig) validate(p *problems) {
	k = k.Resolved()
	for _, f := range []struct{ path, value string }{
		{"keys.jwt_signing_key_file", k.JWTSigningKeyFile},
		{"keys.lookup_key_file", k.LookupKeyFile},
		{"keys.seal_key_file", k.SealKeyFile},
	} {
		if f.value == "" {
			p.add(f.path, "required (or set keys.dir)")
		}
	}
	if k.LookupKeyFile != "" && filepath.Clean(k.LookupKeyFile) == filepath.Clean(k.SealKeyFile) {
		p.add("keys.seal_key_file", "must not be the same file as keys.lookup_key_file")
	}
	for i, f := range k.JWTVerificationKeyFiles {
		if f == "" {
			p.add(fmt.Sprintf("keys.jwt_verification_key_files[%d]", i), "must not be empty")
		}
	}
}

// Keys is the key material the configuration names. Printing or logging
// it shows a redaction.
type Keys struct {
	// Signing signs the bearer JWTs (ES256).
	Signing *ecdsa.PrivateKey
	// Verification are the keys whose JWTs are accepted: Signing's public
	// key first, then those of keys.jwt_verification_key_files.
	Verification []*ecdsa.PublicKey
	// Lookup keys the registry-token lookup hash (KeySize bytes).
	Lookup []byte
	// Seal encrypts the registry tokens kept for display (KeySize bytes).
	Seal []byte
}

func (Keys) String() string                  { return "config.Keys{" + redacted + "}" }
func (k Keys) GoString() string              { return k.String() }
func (k Keys) Format(f fmt.State, verb rune) { io.WriteString(f, k.String()) }
func (Keys) LogValue() slog.Value            { return slog.StringValue(redacted) }

// LoadKeys reads and checks the key files k names (after Resolved). It
// reports every problem found, each naming the setting; no error holds
// key material.
func LoadKeys(k KeysConfig) (*Keys, error) {
	k = k.Resolved()
	var errs []error
	keys := &Keys{}
	var err error
	if keys.Signing, err = loadSigningKey("keys.jwt_signing_key_file", k.JWTSigningKeyFile); err != nil {
		errs = append(errs, err)
	} else {
		keys.Verification = append(keys.Verification, &keys.Signing.PublicKey)
	}
	for i, path := range k.JWTVerificationKeyFiles {
		pubs, err := loadPublicKeys(fmt.Sprintf("keys.jwt_verification_key_files[%d]", i), path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, pub := range pubs {
			if !containsKey(keys.Verification, pub) {
				keys.Verification = append(keys.Verification, pub)
			}
		}
	}
	if keys.Lookup, err = loadSymmetricKey("keys.lookup_key_file", k.LookupKeyFile); err != nil {
		errs = append(errs, err)
	}
	if keys.Seal, err = loadSymmetricKey("keys.seal_key_file", k.SealKeyFile); err != nil {
		errs = append(errs, err)
	}
	if keys.Lookup != nil && keys.Seal != nil && hmac.Equal(keys.Lookup, keys.Seal) {
		errs = append(errs, &FieldError{Path: "keys.seal_key_file", Problem: "must hold a different key than keys.lookup_key_file"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

func containsKey(keys []*ecdsa.PublicKey, k *ecdsa.PublicKey) bool {
	for _, have := range keys {
		if have.Equal(k) {
			return true
		}
	}
	return false
}

// notSet is the error for an empty path.
func notSet(field string) error {
	return &FieldError{Path: field, Problem: "required (or set keys.dir)"}
}

// loadSymmetricKey reads KeySize bytes, base64 (standard or URL alphabet,
// padded or not), from the file at path.
func loadSymmetricKey(field, path string) ([]byte, error) {
	if path == "" {
		return nil, notSet(field)
	}
	b, err := readSmallFile(field, path)
	if err != nil {
		return nil, err
	}
	text := strings.TrimRight(string(b), " \t\r\n")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key, err := enc.DecodeString(text)
		if err != nil {
			continue
		}
		if len(key) != KeySize {
			return nil, &FieldError{Path: field, Problem: fmt.Sprintf("must hold %d bytes of base64, got %d bytes", KeySize, len(key))}
		}
		return key, nil
	}
	return nil, &FieldError{Path: field, Problem: fmt.Sprintf("must hold %d bytes of base64, got text that is not base64", KeySize)}
}

// loadSigningKey reads a PEM ECDSA P-256 private key. Parse errors are
// not passed on: they may describe the bytes they choked on.
func loadSigningKey(field, path string) (*ecdsa.PrivateKey, error) {
	if path == "" {
		return nil, notSet(field)
	}
	b, err := readSmallFile(field, path)
	if err != nil {
		return nil, err
	}
	bad := &FieldError{Path: field, Problem: "must hold a PEM ECDSA P-256 private key (PKCS#8 \"PRIVATE KEY\")"}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, bad
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "EC PARAMETERS":
			continue // openssl ecparam -genkey writes these first
		default:
			return nil, bad
		}
		if err != nil {
			return nil, bad
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, bad
		}
		return ec, nil
	}
}

// loadPublicKeys reads one or more PEM ECDSA P-256 public keys.
func loadPublicKeys(field, path string) ([]*ecdsa.PublicKey, error) {
	if path == "" {
		return nil, &FieldError{Path: field, Problem: "must not be empty"}
	}
	b, err := readSmallFile(field, path)
	if err != nil {
		return nil, err
	}
	bad := &FieldError{Path: field, Problem: "must hold PEM ECDSA P-256 public keys (\"PUBLIC KEY\")"}
	var keys []*ecdsa.PublicKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, bad
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, bad
		}
		ec, ok := key.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, bad
		}
		keys = append(keys, ec)
	}
	if len(keys) == 0 || len(bytes.TrimSpace(b)) > 0 {
		return nil, bad
	}
	return keys, nil
}

// MarshalPublicKeyPEM encodes pub as a PEM "PUBLIC KEY", the form
// keys.jwt_verification_key_files reads.
func MarshalPublicKeyPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// keyFileNames are the files GenerateKeys writes, in order.
var keyFileNames = []string{SigningKeyFileName, LookupKeyFileName, SealKeyFileName, AdminKeyFileName}

// GenerateKeys creates dir (mode 0700) if needed and writes fresh keys
// into it, each file mode 0600: jwt-signing.pem (ECDSA P-256, PKCS#8 PEM),
// lookup.key and seal.key (32 random bytes, base64) and admin.key (43
// characters of base64url, 256 bits). If any of these files exists it
// writes nothing and returns an error naming it.
func GenerateKeys(dir string) error {
	if dir == "" {
		return errors.New("keys: no directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	for _, name := range keyFileNames {
		path := filepath.Join(dir, name)
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("keys: %s already exists; refusing to overwrite keys", path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("keys: %w", err)
		}
	}

	contents, err := newKeyFiles()
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	var written []string
	for _, name := range keyFileNames {
		path := filepath.Join(dir, name)
		if err := writeNewFile(path, contents[name]); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return fmt.Errorf("keys: %w", err)
		}
		written = append(written, path)
	}
	return nil
}

// newKeyFiles returns the content of each key file, fresh.
func newKeyFiles() (map[string][]byte, error) {
	signing, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(signing)
	if err != nil {
		return nil, err
	}
	random := func(enc *base64.Encoding) []byte {
		return []byte(enc.EncodeToString(randomBytes(KeySize)) + "\n")
	}
	return map[string][]byte{
		SigningKeyFileName: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		LookupKeyFileName:  random(base64.StdEncoding),
		SealKeyFileName:    random(base64.StdEncoding),
		AdminKeyFileName:   random(base64.RawURLEncoding),
	}, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return b
}

// writeNewFile creates path, mode 0600, failing if it exists.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// EnsureKeys generates keys in dir (see GenerateKeys) unless they are all
// there already. `tollgate dev` calls it so that keys made on the first
// run are kept. If only some of the files exist it changes nothing and
// returns an error naming a missing one: generating the rest would not
// match what is there.
func EnsureKeys(dir string) error {
	var present, missing []string
	for _, name := range keyFileNames {
		path := filepath.Join(dir, name)
		if _, err := os.Lstat(path); err == nil {
			present = append(present, path)
		} else if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, path)
		} else {
			return fmt.Errorf("keys: %w", err)
		}
	}
	switch {
	case len(missing) == 0:
		return nil
	case len(present) == 0:
		return GenerateKeys(dir)
	}
	return fmt.Errorf("keys: %s exists but %s is missing; restore it, or move %s away to start with new keys", present[0], missing[0], dir)
}
