package privilege

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestSeccompProgram runs the filter in a BPF interpreter: every listed
// call of the right architecture is allowed, an unlisted one gets EPERM,
// bpf(2) only for map updates and deletes, another architecture and
// amd64's x32 ABI are killed.
func TestSeccompProgram(t *testing.T) {
	allowed, arch, ok := seccompList()
	if !ok {
		t.Skip("no seccomp list for this architecture (Confine says so)")
	}
	raw, err := seccompProgram(allowed, arch)
	if err != nil {
		t.Fatal(err)
	}
	prog := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		prog[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	// struct seccomp_data: nr, arch, ip, args. The kernel's seccomp loads
	// its words as the host stores them; this interpreter loads words big
	// endian, so the data is written big endian to read the same values.
	runArg := func(nr, arch, arg0 uint32) uint32 {
		data := make([]byte, 64)
		binary.BigEndian.PutUint32(data[0:], nr)
		binary.BigEndian.PutUint32(data[4:], arch)
		binary.BigEndian.PutUint32(data[16:], arg0)
		v, err := vm.Run(data)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(v)
	}
	run := func(nr, arch uint32) uint32 { return runArg(nr, arch, 0) }
	listed := map[uintptr]bool{}
	for _, nr := range allowed {
		listed[nr] = true
		if got := run(uint32(nr), arch); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("listed call %d: %#x, want allow", nr, got)
		}
	}
	if len(listed) != len(allowed) {
		t.Errorf("the list names %d calls, %d of them once: a call is listed twice", len(allowed), len(listed))
	}
	for nr := range uint32(512) {
		if listed[uintptr(nr)] {
			continue
		}
		if got := run(nr, arch); got != unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM) {
			t.Fatalf("unlisted call %d: %#x, want EPERM", nr, got)
		}
	}
	for _, nr := range []uintptr{unix.SYS_EXECVE, unix.SYS_PTRACE, unix.SYS_MOUNT, unix.SYS_BPF, unix.SYS_INIT_MODULE, unix.SYS_SETNS, unix.SYS_UNSHARE} {
		if listed[nr] {
			t.Errorf("call %d is on the list: it must not be", nr)
		}
	}
	// bpf(2): only map updates and deletes (the XDP program's address
	// maps), nothing that loads, makes or attaches.
	for cmd, want := range map[uint32]uint32{2: unix.SECCOMP_RET_ALLOW, 3: unix.SECCOMP_RET_ALLOW,
		0: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM), 1: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM),
		5: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM), 8: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM), 28: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)} {
		if got := runArg(unix.SYS_BPF, arch, cmd); got != want {
			t.Errorf("bpf command %d: %#x, want %#x", cmd, got, want)
		}
	}
	if got := runArg(uint32(unix.SYS_READ), arch, 2); got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("read with a first argument of 2: %#x, want allow", got)
	}
	if got := run(uint32(unix.SYS_READ), arch+1); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("another architecture's read: %#x, want kill", got)
	}
	if got := run(0x40000000|uint32(unix.SYS_READ), arch); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("x32 read: %#x, want kill", got)
	}
}
