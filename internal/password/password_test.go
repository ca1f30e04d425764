package password

import (
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	for name, h := range map[string]Argon2id{"default": {}, "fast": Fast} {
		t.Run(name, func(t *testing.T) {
			enc, err := h.Hash("correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(enc, "$argon2id$v=19$") {
				t.Fatalf("encoded = %q", enc)
			}
			if ok, err := h.Verify(enc, "correct horse battery"); !ok || err != nil {
				t.Fatalf("Verify(right) = %v, %v", ok, err)
			}
			if ok, err := h.Verify(enc, "correct horse batterz"); ok || err != nil {
				t.Fatalf("Verify(wrong) = %v, %v", ok, err)
			}
			again, _ := h.Hash("correct horse battery")
			if again == enc {
				t.Fatal("two hashes of one password are equal: no salt")
			}
		})
	}
}

func TestVerifyRefusesMalformed(t *testing.T) {
	for _, enc := range []string{
		"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		if ok, err := Fast.Verify(enc, "x"); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v; want false, error", enc, ok, err)
		}
	}
}
