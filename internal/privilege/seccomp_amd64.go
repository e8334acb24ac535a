package privilege

import "golang.org/x/sys/unix"

// seccompList is what Confine allows on amd64, and the architecture's
// audit number. The list is what a running gateway was seen to call
// (strace -f of every demo pass: TUN, AF_PACKET, the handbook; reloads,
// adm, captures, health checks, L7, metrics) and what the Go runtime and
// standard library call on paths a run may not reach (garbage collection
// returning memory, profiling timers, new threads, signals, splice between
// sockets, path lookups under os.Root).
func seccompList() ([]uintptr, uint32, bool) {
	return []uintptr{
		// The filter compares in this order: the calls of the packet
		// path and the scheduler come first.
		unix.SYS_FUTEX, unix.SYS_EPOLL_PWAIT, unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV,
		unix.SYS_SENDMMSG, unix.SYS_RECVMMSG, unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDTO, unix.SYS_RECVFROM,
		unix.SYS_PPOLL, unix.SYS_POLL, unix.SYS_NANOSLEEP, unix.SYS_SCHED_YIELD, unix.SYS_GETPID, unix.SYS_TGKILL,
		unix.SYS_RT_SIGRETURN, unix.SYS_MADVISE, unix.SYS_MMAP, unix.SYS_MUNMAP,
		// Files and descriptors: captures, configuration reloads,
		// /proc and /sys reads, sysctls, the control socket's unlink.
		unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_OPENAT, unix.SYS_OPENAT2, unix.SYS_CLOSE, unix.SYS_FSTAT,
		unix.SYS_NEWFSTATAT, unix.SYS_LSEEK, unix.SYS_FCNTL, unix.SYS_DUP, unix.SYS_DUP3, unix.SYS_GETDENTS64,
		unix.SYS_READLINKAT, unix.SYS_UNLINKAT, unix.SYS_MKDIRAT, unix.SYS_FSYNC, unix.SYS_FDATASYNC,
		unix.SYS_PIPE2, unix.SYS_SPLICE, unix.SYS_EVENTFD2,
		// Polling: the Go netpoller.
		unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT2,
		// Sockets: netlink (rewiring, nftables, neighbours), health
		// checks, L7 backends, metrics, control.
		unix.SYS_SOCKET, unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT4, unix.SYS_CONNECT, unix.SYS_SHUTDOWN,
		unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME, unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT,
		// Memory.
		unix.SYS_MPROTECT, unix.SYS_MINCORE,
		// Threads, scheduling, time.
		unix.SYS_CLONE, unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_SCHED_GETAFFINITY, unix.SYS_CLOCK_NANOSLEEP,
		unix.SYS_CLOCK_GETTIME, unix.SYS_GETTIMEOFDAY, unix.SYS_ARCH_PRCTL, unix.SYS_GETTID, unix.SYS_RESTART_SYSCALL,
		// Signals: SIGHUP reloads, SIGTERM, the runtime's preemption
		// and profiling timers.
		unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_SIGALTSTACK, unix.SYS_SETITIMER,
		unix.SYS_TIMER_CREATE, unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_DELETE,
		// Identity and limits (read only).
		unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID, unix.SYS_PRLIMIT64,
		unix.SYS_GETRANDOM, unix.SYS_UNAME,
	}, unix.AUDIT_ARCH_X86_64, true
}
