package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/vsgate/vsgate/proxy/h1"
	"golang.org/x/sys/unix"
)

// backendConn is one connection to a real server, kept between requests in
// its worker's pool.
type backendConn struct {
	c      net.Conn
	tcp    *net.TCPConn // c, when it is a kernel socket without TLS
	sk     *sock        // tcp's reads and writes, when it is one
	dl     deadlines    // c's
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool      // it served a request before this one
	idle   time.Time // when it went back to the pool
	resp   h1.Response
}

// backendPool holds a worker's idle connections, newest last.
type backendPool struct {
	mu     sync.Mutex
	idle   []*backendConn
	max    int
	closed bool
}

// aliveCheckAfter is how long a connection must have been idle before
// get asks the kernel whether the real server closed it (a system call):
// one that closes sooner after its response is rare, and a request
// without a body that meets one is sent again on a new connection.
const aliveCheckAfter = time.Second

// get takes the newest idle connection that the real server has not
// closed meanwhile, or nil.
func (bp *backendPool) get() *backendConn {
	for {
		bp.mu.Lock()
		n := len(bp.idle)
		if n == 0 {
			bp.mu.Unlock()
			return nil
		}
		bc := bp.idle[n-1]
		bp.idle[n-1] = nil
		bp.idle = bp.idle[:n-1]
		bp.mu.Unlock()
		if time.Since(bc.idle) < aliveCheckAfter || bc.alive() {
			bc.reused = true
			return bc
		}
		bc.c.Close()
	}
}

// put keeps bc for the next request, or closes it when the pool is full
// or closed.
func (bp *backendPool) put(bc *backendConn) {
	bc.idle = time.Now()
	bp.mu.Lock()
	if bp.closed || len(bp.idle) >= bp.max {
		bp.mu.Unlock()
		bc.c.Close()
		return
	}
	bp.idle = append(bp.idle, bc)
	bp.mu.Unlock()
}

// close closes the idle connections and every one put back later.
func (bp *backendPool) close() {
	bp.mu.Lock()
	idle := bp.idle
	bp.idle, bp.closed = nil, true
	bp.mu.Unlock()
	for _, bc := range idle {
		bc.c.Close()
	}
}

// alive tells whether an idle connection can carry a request: nothing to
// read (a real server that closed it has sent FIN; one that sends bytes
// unasked is out of step). Without a kernel socket it cannot tell, and
// says yes: a failed first exchange on a reused connection is retried.
func (bc *backendConn) alive() bool {
	if bc.br.Buffered() > 0 {
		return false
	}
	if bc.sk == nil {
		return true
	}
	// Control, not Read: the connection's read deadline, left from its
	// last request, may have passed.
	ok := false
	bc.sk.raw.Control(func(fd uintptr) {
		_, err := peek(fd)
		ok = err == unix.EAGAIN
	})
	return ok
}

// peek looks at the socket's next byte without taking it or waiting: 1
// when there is one, 0 at the peer's FIN, EAGAIN when there is nothing
// yet. (unix.Recvfrom would allocate the sender's address on every call.)
func peek(fd uintptr) (int, error) {
	var one [1]byte
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// handshakeError is a TLS handshake with a real server that failed (a
// certificate SSLProxyVerify refuses, no common protocol): Apache answers
// 502, and the worker stays usable.
type handshakeError struct {
	addr string
	err  error
}

func (e *handshakeError) Error() string { return "TLS handshake with " + e.addr + ": " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// dialBackend connects to w's real server within timeout (TLS for https://
// and wss://, as SSLProxyVerify says; the caller checked SSLProxyEngine).
func (p *Proxy) dialBackend(ctx context.Context, w *worker, t *target, timeout time.Duration) (*backendConn, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	addr := t.hostPort()
	c, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, &connectError{addr: addr, err: err}
	}
	bc := &backendConn{c: c}
	bc.dl.c = c
	if bc.tcp, _ = c.(*net.TCPConn); bc.tcp != nil {
		bc.sk = newSock(bc.tcp)
	}
	if t.scheme == "https" || t.scheme == "wss" {
		cfg := p.tlsBack.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
		cfg.ServerName = strings.Trim(cfg.ServerName, "[]")
		base := c
		if bc.sk != nil {
			base = sockConn{bc.tcp, bc.sk}
		}
		tc := tls.Client(base, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, &handshakeError{addr: addr, err: err}
		}
		bc.c, bc.dl.c, bc.tcp, bc.sk = tc, tc, nil, nil
	}
	var rw io.ReadWriter = bc.c
	if bc.sk != nil {
		rw = bc.sk
	}
	bc.br = bufio.NewReaderSize(rw, 8192)
	bc.bw = bufio.NewWriterSize(rw, 4096)
	return bc, nil
}
