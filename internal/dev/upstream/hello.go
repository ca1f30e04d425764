package upstream

import (
	"encoding/binary"
	"fmt"
)

// Greeting is what the demo image's /hello prints.
const Greeting = "Hello from tollgate! This image was pulled with a registry token.\n"

// helloELF returns a static Linux executable for arch ("amd64", "arm64")
// that writes Greeting to stdout and exits 0: one ELF header, one
// PT_LOAD program header, a few hand-assembled instructions and the
// message. Built here, byte by byte, so that seeding needs no toolchain
// and stays offline.
func helloELF(arch string) ([]byte, error) {
	const (
		base   = 0x400000 // load address of the file's first byte
		ehsize = 64
		phsize = 56
		entry  = base + ehsize + phsize
	)
	msg := []byte(Greeting)
	var machine uint16
	var code []byte
	switch arch {
	case "amd64":
		machine = 0x3e // EM_X86_64
		code = []byte{
			0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1 (write)
			0xbf, 0x01, 0x00, 0x00, 0x00, // mov edi, 1 (stdout)
			0x48, 0x8d, 0x35, 0x10, 0x00, 0x00, 0x00, // lea rsi, [rip+16] (msg, after the code)
			0xba, byte(len(msg)), 0x00, 0x00, 0x00, // mov edx, len
			0x0f, 0x05, // syscall
			0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
			0x31, 0xff, // xor edi, edi
			0x0f, 0x05, // syscall
		}
	case "arm64":
		machine = 0xb7 // EM_AARCH64
		for _, ins := range []uint32{
			0xd2800020,                       // mov x0, #1 (stdout)
			0x100000e1,                       // adr x1, .+28 (msg, after the code)
			0xd2800002 | uint32(len(msg))<<5, // mov x2, #len
			0xd2800808,                       // mov x8, #64 (write)
			0xd4000001,                       // svc #0
			0xd2800000,                       // mov x0, #0
			0xd2800ba8,                       // mov x8, #93 (exit)
			0xd4000001,                       // svc #0
		} {
			code = binary.LittleEndian.AppendUint32(code, ins)
		}
	default:
		return nil, fmt.Errorf("upstream: no demo program for %q", arch)
	}
	size := uint64(ehsize + phsize + len(code) + len(msg))
	le := binary.LittleEndian
	b := make([]byte, 0, size)
	b = append(b, 0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */, 0 /* System V */)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)      // EV_CURRENT
	b = le.AppendUint64(b, entry)  // e_entry
	b = le.AppendUint64(b, ehsize) // e_phoff
	b = le.AppendUint64(b, 0)      // e_shoff: no sections
	b = le.AppendUint32(b, 0)      // e_flags
	b = le.AppendUint16(b, ehsize)
	b = le.AppendUint16(b, phsize)
	b = le.AppendUint16(b, 1) // e_phnum
	b = le.AppendUint16(b, 0) // e_shentsize
	b = le.AppendUint16(b, 0) // e_shnum
	b = le.AppendUint16(b, 0) // e_shstrndx
	// The one PT_LOAD: the whole file, readable and executable.
	b = le.AppendUint32(b, 1)       // PT_LOAD
	b = le.AppendUint32(b, 5)       // PF_R|PF_X
	b = le.AppendUint64(b, 0)       // p_offset
	b = le.AppendUint64(b, base)    // p_vaddr
	b = le.AppendUint64(b, base)    // p_paddr
	b = le.AppendUint64(b, size)    // p_filesz
	b = le.AppendUint64(b, size)    // p_memsz
	b = le.AppendUint64(b, 0x10000) // p_align: fine with 4K and 64K pages
	b = append(b, code...)
	return append(b, msg...), nil
}
