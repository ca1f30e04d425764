package tollgate

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"log/slog"
	"strings"
	"sync"
)

// Secret is a plaintext credential (a registry token or an account API
// key). Printing or logging it shows a redaction; Reveal is the only way
// to the plaintext, so every place that needs it is greppable.
type Secret string

const redacted = "[REDACTED]"

func (Secret) String() string                  { return redacted }
func (Secret) GoString() string                { return redacted }
func (Secret) LogValue() slog.Value            { return slog.StringValue(redacted) }
func (Secret) MarshalJSON() ([]byte, error)    { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error)    { return []byte(redacted), nil }
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, redacted) }

// Reveal returns the plaintext. Call it only to hand the secret to its
// owner or to hash it.
func (s Secret) Reveal() string { return string(s) }

// Secret prefixes. A registry token starts with "tg_", an account API key
// with "tgk_". Both have the same shape: prefix, 30 random base62
// characters (178 bits), 6 base62 characters of CRC-32 checksum over what
// precedes them. No whitespace, no ':', 39 or 40 characters.
const (
	TokenPrefix      = "tg_"
	AccountKeyPrefix = "tgk_"

	secretRandomLen = 30
	secretCheckLen  = 6
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewSecret returns a fresh secret with the given prefix.
func NewSecret(prefix string) Secret {
	body := randomBase62(secretRandomLen)
	return Secret(prefix + body + checksum(prefix+body))
}

// randomBase62 returns n uniformly random base62 characters.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			panic("tollgate: crypto/rand failed: " + err.Error())
		}
		for _, b := range buf {
			// 248 = 4*62: rejecting larger bytes keeps the draw uniform.
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

func checksum(s string) string {
	out := checksumBytes(s)
	return string(out[:])
}

func checksumBytes(s string) [secretCheckLen]byte {
	c := crc32.ChecksumIEEE([]byte(s))
	var out [secretCheckLen]byte
	for i := secretCheckLen - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return out
}

// ErrMalformedSecret is returned (wrapped in an EUNAUTHORIZED *Error) for
// anything that is not a well-formed secret with a valid checksum.
var ErrMalformedSecret = errors.New("malformed secret")

// ParseSecret checks the shape and checksum of v for the given prefix
// without any lookup, so garbage never reaches a store.
func ParseSecret(prefix, v string) (Secret, error) {
	bad := func() error {
		return &Error{Code: EUNAUTHORIZED, Message: "invalid credentials", Err: ErrMalformedSecret}
	}
	if len(v) != len(prefix)+secretRandomLen+secretCheckLen || !strings.HasPrefix(v, prefix) {
		return "", bad()
	}
	for i := len(prefix); i < len(v); i++ {
		if strings.IndexByte(base62, v[i]) < 0 {
			return "", bad()
		}
	}
	split := len(v) - secretCheckLen
	if sum := checksumBytes(v[:split]); subtle.ConstantTimeCompare(sum[:], []byte(v[split:])) != 1 {
		return "", bad()
	}
	return Secret(v), nil
}

// ParseToken is ParseSecret for registry tokens.
func ParseToken(v string) (Secret, error) { return ParseSecret(TokenPrefix, v) }

// KeySize is the size of the lookup and sealing keys.
const KeySize = 32

// Keys hash secrets for lookup (HMAC-SHA256 under the lookup key) and seal
// them for later display (AES-256-GCM under the sealing key). The two keys
// are separate so that a leaked lookup key does not open sealed secrets.
type Keys struct {
	lookup []byte
	aead   cipher.AEAD
	macs   sync.Pool // of HMAC-SHA256 under lookup, for Hash
}

// NewKeys returns Keys for a 32-byte lookup key and a 32-byte sealing key.
func NewKeys(lookupKey, sealKey []byte) (*Keys, error) {
	if len(lookupKey) != KeySize {
		return nil, fmt.Errorf("lookup key must be %d bytes, got %d", KeySize, len(lookupKey))
	}
	if len(sealKey) != KeySize {
		return nil, fmt.Errorf("sealing key must be %d bytes, got %d", KeySize, len(sealKey))
	}
	if hmac.Equal(lookupKey, sealKey) {
		return nil, errors.New("lookup and sealing keys must differ")
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Keys{lookup: append([]byte(nil), lookupKey...), aead: aead}, nil
}

// Hash returns the lookup hash of s.
func (k *Keys) Hash(s Secret) []byte {
	m, _ := k.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, k.lookup)
	}
	m.Reset()
	m.Write([]byte(s.Reveal()))
	sum := m.Sum(make([]byte, 0, sha256.Size))
	k.macs.Put(m)
	return sum
}

// Seal encrypts s, bound to id (the token's public id) so that a sealed
// value copied onto another row does not open.
func (k *Keys) Seal(s Secret, id string) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("tollgate: crypto/rand failed: " + err.Error())
	}
	return k.aead.Seal(nonce, nonce, []byte(s.Reveal()), []byte(id))
}

// Open decrypts what Seal returned for the same id.
func (k *Keys) Open(sealed []byte, id string) (Secret, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed secret too short")
	}
	pt, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(id))
	if err != nil {
		return "", errors.New("sealed secret does not open")
	}
	return Secret(pt), nil
}

// NewID returns a public identifier: prefix + 16 base62 characters.
func NewID(prefix string) string { return prefix + randomBase62(16) }
