package config

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tollgate/tollgate"
)

// Settings that hold a secret (admin.key, store.postgres.dsn, the
// upstream, package and Redis passwords) are tollgate.Secret from loading
// to the one place each is used: printing, logging or marshalling a Config
// shows a redaction. The accessors below read the inline value or its
// file and hand a tollgate.Secret on; only its user reveals it.

// redacted stands for key material in what Keys prints.
const redacted = "[REDACTED]"

// maxSecretFileSize bounds the secret and key files read.
const maxSecretFileSize = 64 << 10

// AdminKey returns the admin key, from admin.key or read from
// admin.key_file (trailing whitespace ignored). Errors name the setting,
// never the key.
func (c *Config) AdminKey() (tollgate.Secret, error) {
	a := c.Admin
	if a.Key == "" && a.KeyFile == "" && c.Keys.Dir != "" {
		a.KeyFile = c.Keys.Resolved().adminKeyFile()
	}
	field := "admin.key"
	var key tollgate.Secret
	switch {
	case (a.Key == "") == (a.KeyFile == ""):
		return "", &FieldError{Path: "admin", Problem: "set exactly one of key and key_file"}
	case a.Key != "":
		key = a.Key
	default:
		field = "admin.key_file"
		var err error
		if key, err = readSecretFile(field, a.KeyFile); err != nil {
			return "", err
		}
	}
	if problem := checkAdminKey(key); problem != "" {
		return "", &FieldError{Path: field, Problem: problem}
	}
	return key, nil
}

// PostgresDSN returns the PostgreSQL connection string, from
// store.postgres.dsn or read from store.postgres.dsn_file (trailing
// whitespace ignored). Errors name the setting, never the DSN.
func (c *Config) PostgresDSN() (tollgate.Secret, error) {
	p := c.Store.Postgres
	switch {
	case (p.DSN == "") == (p.DSNFile == ""):
		return "", &FieldError{Path: "store.postgres", Problem: "set exactly one of dsn and dsn_file"}
	case p.DSN != "":
		return p.DSN, nil
	}
	return readSecretFile("store.postgres.dsn_file", p.DSNFile)
}

// readSecretFile returns the content of the file at path with trailing
// whitespace trimmed. Errors start with field and quote no content.
func readSecretFile(field, path string) (tollgate.Secret, error) {
	b, err := readSmallFile(field, path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), " \t\r\n")
	if s == "" {
		return "", &FieldError{Path: field, Problem: fmt.Sprintf("%s is empty", path)}
	}
	return tollgate.Secret(s), nil
}

// readSmallFile reads at most maxSecretFileSize bytes of the file at path.
func readSmallFile(field, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if len(b) > maxSecretFileSize {
		return nil, &FieldError{Path: field, Problem: fmt.Sprintf("%s is larger than %d bytes", path, maxSecretFileSize)}
	}
	return b, nil
}
