package privilege

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability number (unix.CAP_NET_ADMIN, ...).
type Cap uint

// Name returns the capability's name as capabilities(7) spells it.
func (c Cap) Name() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return "CAP_" + strconv.Itoa(int(c))
}

var capNames = map[Cap]string{
	unix.CAP_NET_ADMIN: "CAP_NET_ADMIN", unix.CAP_NET_RAW: "CAP_NET_RAW",
	unix.CAP_NET_BIND_SERVICE: "CAP_NET_BIND_SERVICE", unix.CAP_SETPCAP: "CAP_SETPCAP",
}

// Mask returns the capability set of caps as /proc/PID/status prints it
// (CapEff and the others: 16 hex digits).
func Mask(caps []Cap) string {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return fmt.Sprintf("%016x", m)
}

// Identity is the user and group a process runs as.
type Identity struct {
	Name     string
	UID, GID int
}

// Lookup finds a user by name or number (from /etc/passwd: binaries built
// without cgo read it themselves), with its primary group.
func Lookup(name string) (Identity, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return Identity{}, fmt.Errorf("user %q: %w", name, err)
		}
		if u, err = user.LookupId(name); err != nil {
			return Identity{}, fmt.Errorf("user %q: no such user", name)
		}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return Identity{}, fmt.Errorf("user %q: uid %q gid %q are not numbers", name, u.Uid, u.Gid)
	}
	return Identity{Name: u.Username, UID: uid, GID: gid}, nil
}

// The securebits (linux/securebits.h).
const (
	secNoRoot                  = 1 << 0
	secNoRootLocked            = 1 << 1
	secNoSetuidFixup           = 1 << 2
	secNoSetuidFixupLocked     = 1 << 3
	secKeepCapsLocked          = 1 << 5
	secNoCapAmbientRaise       = 1 << 6
	secNoCapAmbientRaiseLocked = 1 << 7
)

// Drop makes every thread of the process run as who with only keep.
// The caller must be root (uid 0 with CAP_SETUID, CAP_SETGID and
// CAP_SETPCAP). A failure part way leaves the process in between: the
// caller must exit.
func Drop(who Identity, keep []Cap) error {
	if who.UID == 0 || who.GID == 0 {
		return fmt.Errorf("privileges: user %s is uid %d gid %d: choose a user that is not root", who.Name, who.UID, who.GID)
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	// The order matters: a capability enters the inheritable set only
	// while it is in the bounding set, and the ambient set only from the
	// inheritable one; the bounding set and the securebits change only
	// with CAP_SETPCAP, which goes last.
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var now [2]unix.CapUserData
	if err := unix.Capget(&hdr, &now[0]); err != nil {
		return fmt.Errorf("privileges: capget: %w", err)
	}
	lo, hi := capBits(keep)
	now[0].Inheritable, now[1].Inheritable = lo, hi
	if err := capsetAll(&hdr, &now); err != nil {
		return fmt.Errorf("privileges: inheritable %s: %w", Mask(keep), err)
	}
	for _, c := range keep {
		if err := prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c)); err != nil {
			return fmt.Errorf("privileges: raising %s into the ambient set: %w", c.Name(), err)
		}
	}
	for c := Cap(0); c <= last; c++ {
		if err := prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("privileges: dropping %s from the bounding set: %w", c.Name(), err)
		}
	}
	// With NO_SETUID_FIXUP the change of user below leaves the
	// capabilities alone (without it the kernel would clear them all);
	// NOROOT makes uid 0 mean nothing to an exec; nothing more may be
	// raised into the ambient set. All locked.
	bits := uintptr(secNoRoot | secNoRootLocked | secNoSetuidFixup | secNoSetuidFixupLocked | secKeepCapsLocked |
		secNoCapAmbientRaise | secNoCapAmbientRaiseLocked)
	if err := prctl(unix.PR_SET_SECUREBITS, bits, 0); err != nil {
		return fmt.Errorf("privileges: securebits: %w", err)
	}
	// Go applies these three to every thread itself.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("privileges: setgroups: %w", err)
	}
	if err := syscall.Setresgid(who.GID, who.GID, who.GID); err != nil {
		return fmt.Errorf("privileges: setresgid %d: %w", who.GID, err)
	}
	if err := syscall.Setresuid(who.UID, who.UID, who.UID); err != nil {
		return fmt.Errorf("privileges: setresuid %d: %w", who.UID, err)
	}
	only := [2]unix.CapUserData{{Effective: lo, Permitted: lo, Inheritable: lo}, {Effective: hi, Permitted: hi, Inheritable: hi}}
	if err := capsetAll(&hdr, &only); err != nil {
		return fmt.Errorf("privileges: capset %s: %w", Mask(keep), err)
	}
	if err := prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("privileges: no_new_privs: %w", err)
	}
	return verify(who, keep)
}

// prctl runs prctl(option, a, b, 0, 0) on every thread.
func prctl(option int, a, b uintptr) error {
	if _, _, errno := syscall.AllThreadsSyscall6(syscall.SYS_PRCTL, uintptr(option), a, b, 0, 0, 0); errno != 0 {
		if errno == syscall.ENOTSUP {
			return errors.New("the binary was built with cgo: build it with CGO_ENABLED=0 (make build)")
		}
		return errno
	}
	return nil
}

// capBits returns caps as the two words of a capability set.
func capBits(caps []Cap) (lo, hi uint32) {
	for _, c := range caps {
		if c < 32 {
			lo |= 1 << c
		} else {
			hi |= 1 << (c - 32)
		}
	}
	return lo, hi
}

// capsetAll sets data on every thread.
func capsetAll(hdr *unix.CapUserHeader, data *[2]unix.CapUserData) error {
	// The conversions stay in the call expression (unsafe.Pointer rule 4).
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return errno
	}
	return nil
}

// lastCap returns the highest capability this kernel knows.
func lastCap() (Cap, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("privileges: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("privileges: cap_last_cap %q", b)
	}
	return Cap(n), nil
}

// verify checks every thread of the process against what Drop promises:
// /proc's view of its credentials, field by field.
func verify(who Identity, keep []Cap) error {
	ids := func(n int) string { v := strconv.Itoa(n); return v + " " + v + " " + v + " " + v }
	caps := Mask(keep)
	return checkThreads("privileges", map[string]string{"Uid": ids(who.UID), "Gid": ids(who.GID), "Groups": "",
		"CapInh": caps, "CapPrm": caps, "CapEff": caps, "CapAmb": caps, "CapBnd": Mask(nil), "NoNewPrivs": "1"})
}

// checkThreads checks every thread's /proc status against want (field:
// value, blanks collapsed); errors start with what.
func checkThreads(what string, want map[string]string) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "status"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		got := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				got[k] = strings.Join(strings.Fields(v), " ")
			}
		}
		var bad []string
		for k, w := range want {
			if got[k] != w {
				bad = append(bad, fmt.Sprintf("%s %q, want %q", k, got[k], w))
			}
		}
		if len(bad) > 0 {
			slices.Sort(bad)
			return fmt.Errorf("%s: thread %s: %s", what, t.Name(), strings.Join(bad, "; "))
		}
	}
	return nil
}
