package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sock reads and writes a kernel socket with system calls the Go
// scheduler is not told about (RawSyscall), and waits in the runtime's
// poller, as net.Conn does, only when the socket has nothing to read or
// no room.
//
// Why not net.Conn's Read and Write: on a non-blocking socket neither call
// ever sleeps, but a write that sends a segment also runs the receiver's
// side of the network stack and can last tens of microseconds. Through the
// runtime's system call path, its monitor thread takes the processor away
// from such a call, wakes another thread to run the goroutines waiting,
// and the caller then has to win a processor back: on the benchmark's
// machine those thread switches cost more than the proxy's own work per
// request (docs/BENCHMARKS.md). A raw call keeps its processor.
//
// Deadlines are the connection's (SetDeadline on the net.Conn): the waits
// go through the same poller. A sock belongs to one goroutine at a time
// for reading and one for writing, as a net.Conn's buffered reader and
// writer do.
type sock struct {
	raw syscall.RawConn
	// readFn and writeFn are the callbacks given to raw, bound once so
	// that a read or write allocates nothing.
	readFn, writeFn func(fd uintptr) bool
	rb, wb          []byte
	rn, wn          int
	rerr, werr      error
}

// newSock returns a sock for c, or nil when c gives no raw access.
func newSock(c *net.TCPConn) *sock {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sock{raw: raw}
	s.readFn, s.writeFn = s.tryRead, s.tryWrite
	return s
}

func (s *sock) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.rb, s.rn, s.rerr = b, 0, nil
	err := s.raw.Read(s.readFn)
	s.rb = nil
	if err != nil {
		return 0, err // the wait failed: a deadline, a closed connection
	}
	return s.rn, s.rerr
}

// tryRead is one read; false: nothing to read yet, wait.
func (s *sock) tryRead(fd uintptr) bool {
	for {
		n, _, errno := recvRaw(fd, uintptr(unsafe.Pointer(&s.rb[0])), uintptr(len(s.rb)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return false
		case errno != 0:
			s.rerr = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
		case n == 0:
			s.rerr = io.EOF
		default:
			s.rn = int(n)
		}
		return true
	}
}

func (s *sock) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.wb, s.wn, s.werr = b, 0, nil
	err := s.raw.Write(s.writeFn)
	s.wb = nil
	if err != nil {
		return s.wn, err
	}
	return s.wn, s.werr
}

// tryWrite writes what is left of wb; false: the socket is full, wait
// for room.
func (s *sock) tryWrite(fd uintptr) bool {
	for s.wn < len(s.wb) {
		b := s.wb[s.wn:]
		n, _, errno := sendRaw(fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return false
		case errno != 0:
			s.werr = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
			return true
		}
		s.wn += int(n)
	}
	return true
}

// sockConn is a kernel TCP connection whose reads and writes go through a
// sock, for crypto/tls, which reads and writes a net.Conn.
type sockConn struct {
	*net.TCPConn
	s *sock
}

func (c sockConn) Read(b []byte) (int, error)  { return c.s.Read(b) }
func (c sockConn) Write(b []byte) (int, error) { return c.s.Write(b) }

// recvRaw and sendRaw are recv(2) and send(2) as raw system calls. On a
// socket they do what read and write do, without the file layer's work
// (position lock, permission and notification hooks) that read and write
// pay; send never raises SIGPIPE (MSG_NOSIGNAL).
func recvRaw(fd, p, n uintptr) (uintptr, uintptr, unix.Errno) {
	return unix.RawSyscall6(unix.SYS_RECVFROM, fd, p, n, 0, 0, 0)
}

func sendRaw(fd, p, n uintptr) (uintptr, uintptr, unix.Errno) {
	return unix.RawSyscall6(unix.SYS_SENDTO, fd, p, n, unix.MSG_NOSIGNAL, 0, 0)
}
