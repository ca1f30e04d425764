package tollgate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretShape(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := NewSecret(TokenPrefix).Reveal()
		if len(s) >= 100 || !strings.HasPrefix(s, "tg_") || strings.ContainsAny(s, ": \t\n") {
			t.Fatalf("bad secret shape %q", s)
		}
		if _, err := ParseToken(s); err != nil {
			t.Fatalf("ParseToken(own secret) = %v", err)
		}
		if seen[s] {
			t.Fatal("duplicate secret")
		}
		seen[s] = true
	}
}

func TestParseSecretRejects(t *testing.T) {
	good := NewSecret(TokenPrefix).Reveal()
	flip := []byte(good)
	flip[10] ^= 1 // still base62 in most cases, but the checksum breaks
	if flip[10] == ':' {
		flip[10] = 'A'
	}
	for name, v := range map[string]string{
		"empty":          "",
		"prefix only":    "tg_",
		"wrong prefix":   "tx_" + good[3:],
		"account key":    NewSecret(AccountKeyPrefix).Reveal(),
		"bad checksum":   string(flip),
		"truncated":      good[:len(good)-1],
		"extended":       good + "0",
		"with space":     good[:10] + " " + good[11:],
		"with colon":     good[:10] + ":" + good[11:],
		"non-ascii":      good[:10] + "é" + good[12:],
		"bearer wrapped": "Bearer " + good,
	} {
		_, err := ParseToken(v)
		if ErrorCode(err) != EUNAUTHORIZED {
			t.Errorf("%s: ParseToken = %v, want unauthorized", name, err)
		}
		if err != nil && strings.Contains(err.Error(), good[3:20]) {
			t.Errorf("%s: error echoes the secret: %v", name, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add(NewSecret(TokenPrefix).Reveal())
	f.Add("tg_")
	f.Add("tg_000000000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := ParseToken(v)
		if err != nil {
			return
		}
		if s.Reveal() != v || !strings.HasPrefix(v, TokenPrefix) || strings.ContainsAny(v, ": \t\r\n") || len(v) >= 100 {
			t.Fatalf("accepted %q", v)
		}
	})
}

func TestSecretRedacts(t *testing.T) {
	s := NewSecret(TokenPrefix)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("x", "secret", s, "struct", struct{ S Secret }{s})
	j, _ := json.Marshal(map[string]any{"s": s})
	out := logs.String() + string(j) + fmt.Sprintf("%v %s %q %+v %#v", s, s, s, s, s) + s.String()
	if strings.Contains(out, s.Reveal()) {
		t.Fatalf("secret leaked: %s", out)
	}
}

func TestKeysSealAndHash(t *testing.T) {
	k, err := NewKeys(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSecret(TokenPrefix)
	sealed := k.Seal(s, "tok_a")
	if bytes.Contains(sealed, []byte(s.Reveal())) {
		t.Fatal("sealed value holds the plaintext")
	}
	got, err := k.Open(sealed, "tok_a")
	if err != nil || got.Reveal() != s.Reveal() {
		t.Fatalf("Open = %v", err)
	}
	if _, err := k.Open(sealed, "tok_b"); err == nil {
		t.Fatal("sealed secret opened under another token id")
	}
	if !bytes.Equal(k.Hash(s), k.Hash(s)) || bytes.Equal(k.Hash(s), k.Hash(NewSecret(TokenPrefix))) {
		t.Fatal("hash not deterministic or collides")
	}
	k2, _ := NewKeys(bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{2}, 32))
	if bytes.Equal(k.Hash(s), k2.Hash(s)) {
		t.Fatal("hash does not depend on the key")
	}
	if _, err := NewKeys(make([]byte, 16), make([]byte, 32)); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := NewKeys(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{1}, 32)); err == nil {
		t.Fatal("equal keys accepted")
	}
}
