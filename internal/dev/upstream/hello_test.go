package upstream

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestHelloELF: both demo programs are valid static executables for
// their machine; the one for this machine runs and prints the greeting.
func TestHelloELF(t *testing.T) {
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		b, err := helloELF(arch)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if f.Machine != machine || f.Type != elf.ET_EXEC || len(f.Progs) != 1 || f.Progs[0].Filesz != uint64(len(b)) {
			t.Fatalf("%s: machine %v type %v progs %d", arch, f.Machine, f.Type, len(f.Progs))
		}
		if arch != runtime.GOARCH || runtime.GOOS != "linux" {
			continue
		}
		p := filepath.Join(t.TempDir(), "hello")
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(p).Output()
		if err != nil || string(out) != Greeting {
			t.Fatalf("%s: ran with %v, printed %q", arch, err, out)
		}
	}
	if _, err := helloELF("s390x"); err == nil {
		t.Fatal("an unknown arch gave a program")
	}
}
