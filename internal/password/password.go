// Package password hashes console users' passwords with argon2id
// (golang.org/x/crypto/argon2), encoded in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash), and verifies them in
// constant time. It implements tollgate.PasswordHasher.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/tollgate/tollgate"
)

// Argon2id hashes with the given parameters. The zero value uses Default.
type Argon2id struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// Default follows OWASP's baseline for argon2id (19 MiB, 2 passes, one
// lane): a sign-in costs tens of milliseconds and 19 MiB.
var Default = Argon2id{Memory: 19 * 1024, Time: 2, Threads: 1}

// Fast is for tests only.
var Fast = Argon2id{Memory: 64, Time: 1, Threads: 1}

var _ tollgate.PasswordHasher = Argon2id{}

const (
	saltLen = 16
	keyLen  = 32
)

func (a Argon2id) params() Argon2id {
	if a.Memory == 0 || a.Time == 0 || a.Threads == 0 {
		return Default
	}
	return a
}

var b64 = base64.RawStdEncoding

// Hash returns the PHC-encoded argon2id hash of pw with a fresh salt.
func (a Argon2id) Hash(pw string) (string, error) {
	p := a.params()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrMalformed is returned for an encoded hash Verify cannot read.
var ErrMalformed = errors.New("password: malformed argon2id hash")

// Verify reports whether pw matches encoded, using the parameters stored
// in encoded (so hashes made with older parameters keep working).
func (Argon2id) Verify(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, ErrMalformed
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, ErrMalformed
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 ||
		m > 1<<22 || t > 64 { // refuse parameters that would make one check a denial of service
		return false, ErrMalformed
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, ErrMalformed
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, ErrMalformed
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
