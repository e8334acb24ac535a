// dropper is TestDrop's subject: it drops to the user named by its first
// argument keeping CAP_NET_ADMIN, then tries what the drop must forbid
// and prints one line per outcome; then it installs the seccomp filter
// (Confine) and tries calls outside and inside its list; then it waits
// for its stdin to close, so that the test can read its /proc/PID/status.
package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/internal/privilege"
)

func main() {
	who, err := privilege.Lookup(os.Args[1])
	if err != nil {
		fmt.Println("lookup:", err)
		os.Exit(1)
	}
	if err := privilege.Drop(who, []privilege.Cap{unix.CAP_NET_ADMIN}); err != nil {
		fmt.Println("drop:", err)
		os.Exit(1)
	}
	fmt.Println("dropped")
	// Root again? The saved uid is gone and CAP_SETUID with it.
	fmt.Println("setuid 0:", syscall.Setuid(0))
	// A capability back? Not in the permitted set, and the bounding set
	// is empty.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: 1 << unix.CAP_SYS_ADMIN, Permitted: 1 << unix.CAP_SYS_ADMIN}}
	fmt.Println("capset CAP_SYS_ADMIN:", unix.Capset(&hdr, &data[0]))
	// A root-only file?
	_, err = os.ReadFile(os.Args[2])
	fmt.Println("read root's file:", err != nil)
	// The seccomp filter: calls outside the list fail, those inside work,
	// on threads started before and after it.
	if err := privilege.Confine(); err != nil {
		fmt.Println("confine:", err)
		os.Exit(1)
	}
	fmt.Println("confined")
	fmt.Println("execve /bin/true:", syscall.Exec("/bin/true", []string{"true"}, nil))
	var si unix.Sysinfo_t
	fmt.Println("sysinfo:", unix.Sysinfo(&si))
	fmt.Println("getpid:", os.Getpid() == syscall.Getpid())
	done := make(chan bool)
	go func() {
		runtime.LockOSThread() // this goroutine's thread stays its own: the runtime starts another
		_, err := os.ReadFile("/proc/self/status")
		done <- err == nil
	}()
	fmt.Println("a new thread reads /proc:", <-done)
	// The test reads /proc/PID/status now; it closes stdin when done.
	fmt.Println("ready")
	_, _ = os.Stdin.Read(make([]byte, 1))
}
