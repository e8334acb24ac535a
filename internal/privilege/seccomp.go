package privilege

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ErrNoSeccompList says Confine has no allow-list for this architecture.
var ErrNoSeccompList = errors.New("seccomp: no allow-list for " + runtime.GOARCH)

// Confine installs a seccomp filter on every thread of the process (and so
// on every thread it starts later) that allows only the system calls a
// running gateway makes (seccomp_amd64.go lists them, and why) and fails
// every other one with EPERM: execve, ptrace, mount, bpf (but for map
// updates: seccompProgram), module loading and the rest of the kernel's
// surface are gone. A call of another
// architecture's ABI (x32 on amd64) kills the process.
//
// Call it after Drop (it needs NO_NEW_PRIVS, which Drop sets on every
// thread) and after setup: what runs afterwards must stay inside the list.
// A missed call fails with "operation not permitted" rather than killing
// the gateway, and `seccomp: false` in the configuration turns the filter
// off.
func Confine() error {
	allowed, arch, ok := seccompList()
	if !ok {
		return ErrNoSeccompList
	}
	prog, err := seccompProgram(allowed, arch)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// TSYNC puts the filter on every thread; on failure the call returns
	// the thread it could not sync.
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not take the filter", r)
	}
	return checkThreads("seccomp", map[string]string{"Seccomp": "2", "NoNewPrivs": "1"})
}

// seccompProgram is the filter: check the architecture, then bpf(2) for
// its two map commands, then the call's number against each allowed one;
// allow, or fail with EPERM.
//
// bpf(2) is allowed only to update and delete map elements: the AF_XDP
// device's XDP program keeps the kernel's addresses in maps that follow
// the namespace (packet/afxdp Program.SetLocal), and the maps were made
// before the filter. Loading a program, making a map, attaching: EPERM.
func seccompProgram(allowed []uintptr, arch uint32) ([]bpf.RawInstruction, error) {
	if len(allowed) == 0 || len(allowed) > 249 {
		return nil, fmt.Errorf("seccomp: %d allowed calls, want 1..249 (one jump reaches the allow)", len(allowed))
	}
	const (
		offNr    = 0 // struct seccomp_data: nr, arch, instruction_pointer, args
		offArch  = 4
		offArg0  = 16         // args[0]'s low 32 bits (little-endian: the list is amd64's)
		x32Bit   = 0x40000000 // __X32_SYSCALL_BIT: amd64's other ABI
		mapUpd   = 2          // BPF_MAP_UPDATE_ELEM
		mapDel   = 3          // BPF_MAP_DELETE_ELEM
		bpfBlock = 5          // the instructions that check bpf(2)
	)
	n := uint8(len(allowed))
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: arch, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipTrue: n + 1 + bpfBlock},
		// bpf(2): the map commands, else EPERM; other calls to the list.
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_BPF, SkipFalse: bpfBlock - 1},
		bpf.LoadAbsolute{Off: offArg0, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: mapUpd, SkipTrue: n + 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: mapDel, SkipTrue: n + 3},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	}
	for i, nr := range allowed {
		// Past the remaining checks, the EPERM and the kill, to the
		// allow.
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(nr), SkipTrue: n + 1 - uint8(i)})
	}
	prog = append(prog,
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS}, // the x32 ABI
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW})
	return bpf.Assemble(prog)
}
