package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/vsgate/vsgate/proxy/h1"
	"golang.org/x/sys/unix"
)

// An event loop serves the plain HTTP/1.1 clients of one kernel listener
// as nginx's workers do: one goroutine waits for many sockets in one
// epoll instance (edge-triggered), keeps each socket's readiness itself,
// and so reads a socket only when it has something — where a goroutine
// per connection reads before it waits (Go's poller forgets readiness
// before every read) and is parked and woken per request.
//
// The loop serves what is common and simple: a request without a body,
// routed to an http:// real server named by its address, answered with a
// body of known length up to loopBodyMax (or none). Everything else goes
// to the goroutine path of front.go and forward.go, which keeps every
// Apache semantic: the loop hands the connection over — as it is, with
// the bytes it read and not yet served — before it acts on a request it
// does not serve (a body, Upgrade, Expect, TLS, a refusal, a partial or
// bad head), or in the middle of an exchange whose response it does not
// serve (chunked, until close, large), giving the goroutine the response
// head it read and the real server's connection. A handed-over request is
// read again from its first byte, so the goroutine path answers it
// exactly as it would have from the start.
//
// Timeouts are the goroutine path's: KeepAliveTimeout between requests,
// the header timeout for a first request, the worker's connect and
// response timeouts, Timeout for a client that does not take its
// response. They fire at most loopTick late.
const (
	loopBodyMax   = 64 << 10 // bodies larger than this go to the goroutine path (splice)
	loopInSize    = readerSize
	loopBackSize  = 8192
	loopTick      = 50 * time.Millisecond // the timer's resolution
	loopMaxEvents = 256
)

// loopState is where a client connection of the loop is.
type loopState int

const (
	awaitingHead loopState = iota // waiting for (the rest of) a request head
	exchanging                    // its request is with a real server
	closing                       // its last response is being sent
	lingering                     // half-closed after its last response while the Front drains
)

// backState is where a connection to a real server of the loop is.
type backState int

const (
	connecting backState = iota
	sending
	awaitingResponse
	relayingBody
	idleBackend
)

// loopItem is a socket registered in the loop's epoll instance.
type loopItem interface {
	event(l *eventLoop, ev uint32)
	expire(l *eventLoop, now int64)
	// deadline is the item's timer; nil once its socket closed.
	deadline() *loopTimer
}

// loopTimer is an item's deadline and whether the timer heap holds an
// entry for it (at that time or earlier).
type loopTimer struct {
	at     int64 // unix nanoseconds; 0: none
	queued bool
}

func (lc *loopConn) deadline() *loopTimer {
	if lc.fd < 0 {
		return nil
	}
	return &lc.timer
}

func (be *loopBackend) deadline() *loopTimer {
	if be.fd < 0 {
		return nil
	}
	return &be.timer
}

type loopSlot struct {
	gen  uint32
	item loopItem
}

// eventLoop serves one listener's connections (see above).
type eventLoop struct {
	f      *Front
	ln     syscall.RawConn
	lnFD   int
	epfd   int
	ep     *os.File        // epfd, waited for in the runtime's poller
	epRaw  syscall.RawConn // ep's
	waitFn func(fd uintptr) bool
	nready int   // events waitFn found
	tickAt int64 // ep's read deadline, unix nanoseconds; 0: none
	wakeFD int   // eventfd: Close and Shutdown wake the loop through it
	slots  []loopSlot
	gen    uint32
	conns  int // client connections
	paused bool

	events []unix.EpollEvent
	timers timerHeap

	idle  map[*worker][]*loopBackend
	free  [][]byte // spare client read buffers
	outs  [][]byte // spare client write buffers
	headR *bufio.Reader
	bytes bytes.Reader
	outW  *bufio.Writer
	out   appendWriter

	draining, stopped bool
	proxy             *Proxy // the Proxy of the last request: idle connections of others close
}

// appendWriter appends to a byte slice: a loop's bufio.Writer flushes
// response and request heads into the buffer that is sent next.
type appendWriter struct{ b *[]byte }

func (a *appendWriter) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

// loopConn is a client connection served by the loop.
type loopConn struct {
	fd     int
	gen    uint32
	remote string
	state  loopState
	in     []byte // read, not yet served: in[start:]
	start  int
	out    []byte // to send: out[sent:]
	sent   int
	eof    bool // the client half-closed or failed
	ready  bool // may have more to read
	hup    bool // the client's end (or an error) was reported: read until the read says so
	nodely bool // TCP_NODELAY set
	served int
	began  int64  // when the request under way was read whole, unix nanoseconds; 0: none
	acked  uint64 // lingering: bytes the client acknowledged at progress
	since  int64  // lingering: when acked last moved
	timer  loopTimer
	idleIn bool // counted in Front.waiting

	// the exchange under way
	req      h1.Request
	call     *call
	p        *Proxy
	keep     bool
	be       *loopBackend
	attempts int
	retried  bool
}

// loopBackend is a connection to a real server opened by the loop; it
// stays registered in the loop's epoll instance while it is idle.
type loopBackend struct {
	fd     int
	gen    uint32
	p      *Proxy
	w      *worker
	state  backState
	in     []byte // received: in[start:end]
	start  int
	end    int
	out    []byte
	sent   int
	reused bool
	ready  bool
	hup    bool // the real server's end (or an error) was reported
	timer  loopTimer

	client       *loopConn
	resp         h1.Response
	left         int64 // body bytes still to pass on
	closeBackend bool
	target       target
}

// serveLoop serves ln with an event loop; false: ln cannot be served so
// (the caller serves it with a goroutine per connection).
func (f *Front) serveLoop(ln *net.TCPListener) (bool, error) {
	raw, err := ln.SyscallConn()
	if err != nil {
		return false, nil
	}
	lnFD := -1
	raw.Control(func(fd uintptr) { lnFD = int(fd) })
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return false, nil
	}
	// The loop's goroutine waits for its epoll instance to have events
	// in the runtime's own poller (an epoll instance is pollable): the
	// goroutine parks like any other, where a blocking epoll_wait would
	// hold a thread the runtime then works around.
	unix.SetNonblock(epfd, true)
	ep := os.NewFile(uintptr(epfd), "epoll")
	epRaw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return false, nil
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		ep.Close()
		return false, nil
	}
	l := &eventLoop{f: f, ln: raw, lnFD: lnFD, epfd: epfd, ep: ep, epRaw: epRaw, wakeFD: wake, events: make([]unix.EpollEvent, loopMaxEvents),
		idle: map[*worker][]*loopBackend{}, headR: bufio.NewReaderSize(nil, loopInSize)}
	l.waitFn = l.poll
	l.outW = bufio.NewWriterSize(&l.out, 4096)
	if err := l.register(wake, 0, unix.EPOLLIN); err != nil {
		l.closeFDs()
		return false, nil
	}
	if err := l.register(lnFD, 0, unix.EPOLLIN|unix.EPOLLET); err != nil {
		l.closeFDs()
		return false, nil
	}
	f.mu.Lock()
	if f.closed || f.draining.Load() {
		f.mu.Unlock()
		l.closeFDs()
		return true, http.ErrServerClosed
	}
	f.lns[ln] = struct{}{}
	f.loops = append(f.loops, l)
	f.mu.Unlock()
	l.run()
	// Out of f.loops before its descriptors close: wake must never
	// write to a number the process gave to another file since.
	f.mu.Lock()
	f.loops = slices.DeleteFunc(f.loops, func(x *eventLoop) bool { return x == l })
	f.mu.Unlock()
	l.closeFDs()
	return true, http.ErrServerClosed
}

func (l *eventLoop) closeFDs() {
	l.ep.Close()
	unix.Close(l.wakeFD)
}

// wake makes the loop look at its Front's state (Close, Shutdown).
func (l *eventLoop) wake() {
	one := [8]byte{1}
	unix.Write(l.wakeFD, one[:])
}

// register adds fd with the loop's generation gen (0: the listener and
// the wake-up fd, which are no items).
func (l *eventLoop) register(fd int, gen uint32, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(gen)}
	return l.epollCtl(unix.EPOLL_CTL_ADD, fd, &ev)
}

// epollCtl is epoll_ctl on the loop's instance, as a raw system call
// (it never blocks; see sock for why raw).
func (l *eventLoop) epollCtl(op, fd int, ev *unix.EpollEvent) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(l.epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// poll takes the events ready now (epoll_pwait without waiting); false:
// none, the goroutine waits for ep in the runtime's poller.
func (l *eventLoop) poll(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			l.nready = -int(errno)
			return true
		}
		l.nready = int(n)
		return n > 0
	}
}

// add registers item's fd, edge-triggered for reading and writing.
func (l *eventLoop) add(fd int, item loopItem) (uint32, error) {
	l.gen++
	if l.gen == 0 {
		l.gen = 1
	}
	if err := l.register(fd, l.gen, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET); err != nil {
		return 0, err
	}
	for fd >= len(l.slots) {
		l.slots = append(l.slots, make([]loopSlot, max(len(l.slots), 64))...)
	}
	l.slots[fd] = loopSlot{gen: l.gen, item: item}
	return l.gen, nil
}

// remove forgets fd (its events from now on are ignored).
func (l *eventLoop) remove(fd int) {
	if fd < len(l.slots) {
		l.slots[fd] = loopSlot{}
	}
}

func (l *eventLoop) run() {
	for {
		if l.stopped || l.draining && l.conns == 0 {
			l.closeIdleBackends(nil)
			return
		}
		now := time.Now().UnixNano()
		if l.paused || l.timers.Len() > 0 {
			// Timers fire at the next tick (loopTick); a tick needs a
			// deadline on ep, set once per tick.
			if l.tickAt == 0 || now >= l.tickAt {
				l.tickAt = now + int64(loopTick)
				l.ep.SetReadDeadline(time.Unix(0, l.tickAt))
			}
		} else if l.tickAt != 0 {
			l.tickAt = 0
			l.ep.SetReadDeadline(time.Time{})
		}
		if err := l.epRaw.Read(l.waitFn); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.f.log.Error("proxy: event loop", "err", err)
			l.stop()
			return
		}
		n := l.nready
		l.nready = 0
		if n < 0 {
			l.f.log.Error("proxy: epoll_pwait", "err", syscall.Errno(-n))
			l.stop()
			return
		}
		for i := range n {
			ev := &l.events[i]
			fd, gen := int(ev.Fd), uint32(ev.Pad)
			switch {
			case fd == l.wakeFD && gen == 0:
				var b [8]byte
				unix.Read(l.wakeFD, b[:])
				l.frontChanged()
			case fd == l.lnFD && gen == 0:
				l.accept()
			case fd < len(l.slots) && l.slots[fd].gen == gen && l.slots[fd].item != nil:
				l.slots[fd].item.event(l, ev.Events)
			}
		}
		if l.paused {
			l.accept()
		}
		if l.timers.Len() > 0 && l.timers.peek().at <= now {
			l.runTimers(time.Now().UnixNano())
		}
	}
}

// frontChanged acts on Close (everything ends) and Shutdown (no new
// connections; idle ones end, busy ones after their response).
func (l *eventLoop) frontChanged() {
	f := l.f
	if f.isClosed() {
		l.stop()
		return
	}
	if f.draining.Load() && !l.draining {
		l.draining = true
		l.paused = false
		for fd := range l.slots {
			if lc, ok := l.slots[fd].item.(*loopConn); ok && lc.state == awaitingHead && len(lc.in) == lc.start {
				l.closeClient(lc)
			}
		}
	}
}

// stop closes every connection of the loop.
func (l *eventLoop) stop() {
	l.stopped = true
	for fd := range l.slots {
		switch it := l.slots[fd].item.(type) {
		case *loopConn:
			l.closeClient(it)
		case *loopBackend:
			l.closeBackend(it)
		}
	}
}

// accept takes the listener's new connections while a slot is free.
func (l *eventLoop) accept() {
	f := l.f
	l.paused = false
	if l.draining || l.stopped {
		return
	}
	for {
		select {
		case f.slots <- struct{}{}:
		default:
			// MaxConnections are open: try again on the next tick.
			if !l.paused {
				f.paused.Add(1)
			}
			l.paused = true
			return
		}
		var nfd int
		var aerr error
		var rsa unix.RawSockaddrAny
		if err := l.ln.Control(func(fd uintptr) {
			for {
				size := uint32(unix.SizeofSockaddrAny)
				r, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)),
					unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
				if errno == unix.EINTR {
					continue
				}
				nfd = int(r)
				if errno != 0 {
					aerr = errno
				}
				return
			}
		}); err != nil {
			aerr = err // the listener was closed
		}
		if aerr != nil {
			<-f.slots
			switch aerr {
			case unix.EAGAIN:
				return
			case unix.ECONNABORTED:
				continue
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				// Out of descriptors: try again on the next tick, as
				// net/http's server waits and goes on.
				f.log.Warn("proxy: accept", "err", aerr)
				l.paused = true
			}
			return
		}
		f.accepted.Add(1)
		lc := &loopConn{fd: nfd, remote: sockaddrIP(&rsa)}
		gen, err := l.add(nfd, lc)
		if err != nil {
			closeFD(nfd)
			<-f.slots
			continue
		}
		lc.gen = gen
		l.conns++
		f.loopConns.Add(1)
		p := f.cur.Load()
		if p.tlsFront != nil {
			// A reload turned TLS on: the goroutine path serves it.
			l.handOver(lc, nil)
			continue
		}
		l.awaitRequest(lc, p, p.limits.HeaderTimeout)
	}
}

// sockaddrIP is the IP address of an accepted connection's peer.
func sockaddrIP(rsa *unix.RawSockaddrAny) string {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrFrom4(a.Addr).String()
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrFrom16(a.Addr).Unmap().String()
	}
	return ""
}

// closeFD closes a socket of the loop's (raw: see sock).
func closeFD(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// awaitRequest waits up to wait for lc's next request.
func (l *eventLoop) awaitRequest(lc *loopConn, p *Proxy, wait time.Duration) {
	lc.state = awaitingHead
	if !lc.idleIn {
		lc.idleIn = true
		l.f.waiting.Add(1)
	}
	l.setTimer(lc, &lc.timer, wait)
}

// setTimer sets an item's deadline d from now (0: none).
func (l *eventLoop) setTimer(it loopItem, t *loopTimer, d time.Duration) {
	if d <= 0 {
		t.at = 0
		return
	}
	t.at = time.Now().Add(d).UnixNano()
	if !t.queued {
		t.queued = true
		l.timers.push(timerEntry{at: t.at, item: it})
	}
}

// runTimers expires the items whose deadlines passed. An entry whose
// item's deadline moved later is queued again at it.
func (l *eventLoop) runTimers(now int64) {
	for l.timers.Len() > 0 && l.timers.peek().at <= now {
		e := l.timers.pop()
		t := e.item.deadline()
		if t == nil {
			continue
		}
		t.queued = false
		switch {
		case t.at == 0:
		case t.at > now:
			t.queued = true
			l.timers.push(timerEntry{at: t.at, item: e.item})
		default:
			t.at = 0
			e.item.expire(l, now)
		}
	}
}

// event: the client's socket is readable or writable (or failed).
func (lc *loopConn) event(l *eventLoop, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		lc.ready = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		lc.hup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && lc.sent < len(lc.out) {
		if !l.flushClient(lc) {
			return
		}
	}
	if lc.fd < 0 || !lc.ready || lc.sent < len(lc.out) {
		return
	}
	switch lc.state {
	case awaitingHead:
		l.readRequest(lc)
	case lingering:
		l.drainLingering(lc)
	}
}

// expire: the client waited too long for a request, did not take its
// response, or lingered long enough.
func (lc *loopConn) expire(l *eventLoop, now int64) {
	if lc.state == lingering {
		l.lingerCheck(lc, now)
		return
	}
	l.abandon(lc)
}

// abandon closes lc, and the real server's connection of the exchange it
// has under way, if any.
func (l *eventLoop) abandon(lc *loopConn) {
	if be := lc.be; be != nil {
		if be.state != connecting {
			be.w.busy.Add(-1)
		}
		l.closeBackend(be)
		lc.be = nil
	}
	l.closeClient(lc)
}

// linger half-closes lc after its last response while the Front drains,
// and keeps it until the client closed or took everything, as
// lingerClose does on the goroutine path: a removed service's wiring is
// taken back once the last connection ended, and must not cut the end of
// a response still in the send buffer.
func (l *eventLoop) linger(lc *loopConn) {
	if unix.Shutdown(lc.fd, unix.SHUT_WR) != nil {
		l.closeClient(lc)
		return
	}
	lc.state = lingering
	lc.since = time.Now().UnixNano()
	l.setTimer(lc, &lc.timer, lingerPoll)
	if lc.ready {
		l.drainLingering(lc)
	}
}

// lingerPoll is how often a lingering connection's progress is looked at.
const lingerPoll = 2 * time.Second

// drainLingering reads and drops what a lingering client sends, and
// closes at its end.
func (l *eventLoop) drainLingering(lc *loopConn) {
	var buf [512]byte
	for {
		n, _, errno := recvRaw(uintptr(lc.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			lc.ready = false
			return
		case errno != 0 || n == 0:
			l.closeClient(lc)
			return
		}
	}
}

// lingerCheck closes a lingering connection once the client acknowledged
// everything, or acknowledged nothing for Timeout.
func (l *eventLoop) lingerCheck(lc *loopConn, now int64) {
	info, err := unix.GetsockoptTCPInfo(lc.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != unix.BPF_TCP_FIN_WAIT1 && info.State != unix.BPF_TCP_CLOSING {
		l.closeClient(lc)
		return
	}
	if info.Bytes_acked != lc.acked {
		lc.acked, lc.since = info.Bytes_acked, now
	} else if time.Duration(now-lc.since) >= l.f.cur.Load().limits.Timeout {
		l.closeClient(lc)
		return
	}
	l.setTimer(lc, &lc.timer, lingerPoll)
}

// readRequest reads what the client sent and serves the request whose
// head is whole.
func (l *eventLoop) readRequest(lc *loopConn) {
	if lc.start > 0 {
		lc.in = lc.in[:copy(lc.in, lc.in[lc.start:])]
		lc.start = 0
	}
	if lc.in == nil {
		if n := len(l.free); n > 0 {
			lc.in, l.free = l.free[n-1][:0], l.free[:n-1]
		} else {
			lc.in = make([]byte, 0, loopInSize)
		}
	}
	for lc.ready && len(lc.in) < cap(lc.in) {
		b := lc.in[len(lc.in):cap(lc.in)]
		n, _, errno := recvRaw(uintptr(lc.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			lc.ready = false
		case errno != 0 || n == 0:
			lc.ready, lc.eof = false, true
		default:
			lc.in = lc.in[:len(lc.in)+int(n)]
			if int(n) < len(b) && !lc.hup {
				// A short read took all there was: edge-triggered epoll
				// reports what comes next. Not so for the end, reported
				// once, perhaps with the last bytes: after it, reads go
				// on until one returns the end.
				lc.ready = false
			}
		}
	}
	l.serveBuffered(lc)
}

// serveBuffered serves the request whose head lc holds, hands the
// connection over when it holds one the loop does not serve, and ends it
// when the client closed with no request begun.
func (l *eventLoop) serveBuffered(lc *loopConn) {
	if lc.start == len(lc.in) {
		if lc.eof {
			l.closeClient(lc)
			return
		}
		l.releaseIn(lc)
		return
	}
	p := l.f.cur.Load()
	l.bytes.Reset(lc.in[lc.start:])
	l.headR.Reset(&l.bytes)
	err := h1.ReadRequest(l.headR, p.limits.Head, &lc.req)
	if err != nil {
		var he *h1.Error
		if errors.As(err, &he) || lc.eof || !lc.ready || len(lc.in) == cap(lc.in) {
			// A bad head, or a partial one with nothing more to read
			// now: the goroutine path reads on under the header
			// timeout and answers as Apache.
			l.handOver(lc, nil)
		}
		return
	}
	// The request's bytes are taken before it is served: serving it may
	// go on to the next one (pipelined) before serve returns.
	used := len(lc.in) - lc.start - l.headR.Buffered() - l.bytes.Len()
	lc.start += used
	if !l.serve(lc, p) {
		lc.start -= used
		l.handOver(lc, nil)
	}
}

// clientOut gives lc a write buffer (an idle connection holds none).
func (l *eventLoop) clientOut(lc *loopConn) {
	if lc.out != nil {
		return
	}
	if n := len(l.outs); n > 0 {
		lc.out, l.outs = l.outs[n-1][:0], l.outs[:n-1]
		return
	}
	lc.out = make([]byte, 0, loopInSize)
}

// putOut takes lc's write buffer back once all of it was sent.
func (l *eventLoop) putOut(lc *loopConn) {
	if lc.out != nil && cap(lc.out) <= loopBodyMax+loopBackSize && len(l.outs) < 1024 {
		l.outs = append(l.outs, lc.out[:0])
	}
	lc.out, lc.sent = nil, 0
}

// releaseIn gives an empty read buffer back.
func (l *eventLoop) releaseIn(lc *loopConn) {
	if lc.in != nil && lc.start == len(lc.in) {
		if len(l.free) < 1024 {
			l.free = append(l.free, lc.in[:0])
		}
		lc.in, lc.start = nil, 0
	}
}

// serve begins the exchange of lc's request; false: the loop does not
// serve it (nothing was done: the goroutine path takes it from its
// first byte).
func (l *eventLoop) serve(lc *loopConn, p *Proxy) bool {
	req := &lc.req
	if req.Length > 0 || req.Chunked || req.Upgrade || req.LengthAndChunked || req.Has("Expect") {
		return false
	}
	c, status := p.route(req)
	if status == 0 {
		status = p.checkRequest(req)
	}
	if status != 0 || !c.r.loopable {
		return false
	}
	f := l.f
	if p != l.proxy {
		l.closeIdleBackends(p)
		l.proxy = p
	}
	lim := &p.limits
	if lc.served > 0 && (!lim.KeepAlive || lim.MaxKeepAliveRequests > 0 && lc.served >= lim.MaxKeepAliveRequests) {
		return false
	}
	lc.served++
	lc.began = time.Now().UnixNano()
	f.loopRequests.Add(1)
	if lc.idleIn {
		lc.idleIn = false
		f.waiting.Add(-1)
	}
	lc.keep = !req.Close && lim.KeepAlive && (lim.MaxKeepAliveRequests <= 0 || lc.served < lim.MaxKeepAliveRequests) && !f.draining.Load()
	lc.state, lc.call, lc.p, lc.attempts, lc.retried, lc.timer.at = exchanging, c, p, 0, false, 0
	l.reach(lc)
	return true
}

// reach picks the worker for lc's request and sends it there: an idle
// connection of the loop's, or a new one (Proxy.reach's failover, one
// attempt at a time).
func (l *eventLoop) reach(lc *loopConn) {
	p, c := lc.p, lc.call
	attempts := 1
	if b := c.r.bal; b != nil && !b.noFailover {
		attempts += b.maxAttempts
	}
	for lc.attempts < attempts {
		lc.attempts++
		w, u := c.pickWorker(time.Now().UnixNano())
		if w == nil {
			break
		}
		t, st := canonURL(u, c.args, c.hasArgs, c.nocanon, p.cfg.EncodedSlashes)
		if st != 0 {
			l.answer(lc, st)
			return
		}
		be := l.takeIdle(w)
		if be == nil {
			var err error
			if be, err = l.dial(p, w); err != nil {
				w.failures.Add(1)
				w.errUntil.Store(time.Now().Add(w.retry()).UnixNano())
				p.log.Warn("proxy: backend connect failed", "worker", w.name, "err", err)
				continue
			}
		}
		be.target = t
		be.closeBackend = p.closesBackend(c, &t)
		l.begin(lc, be)
		return
	}
	p.log.Warn("proxy: request failed", "uri", lc.req.Target, "status", http.StatusServiceUnavailable)
	l.answer(lc, http.StatusServiceUnavailable)
}

// takeIdle takes the newest idle connection of the loop's to w.
func (l *eventLoop) takeIdle(w *worker) *loopBackend {
	list := l.idle[w]
	n := len(list)
	if n == 0 {
		return nil
	}
	be := list[n-1]
	list[n-1] = nil
	l.idle[w] = list[:n-1]
	be.reused = true
	return be
}

// dial starts a connection to w (non-blocking).
func (l *eventLoop) dial(p *Proxy, w *worker) (*loopBackend, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if w.ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(w.ap.Port()), Addr: w.ap.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(w.ap.Port()), Addr: w.ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	be := &loopBackend{fd: fd, p: p, w: w, state: connecting}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	gen, err := l.add(fd, be)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	be.gen = gen
	return be, nil
}

// begin sends lc's request on be (once be is connected).
func (l *eventLoop) begin(lc *loopConn, be *loopBackend) {
	p, w := lc.p, be.w
	lc.be, be.client = be, lc
	l.out = appendWriter{&be.out}
	be.out, be.sent = be.out[:0], 0
	p.writeRequestHead(l.outW, lc.remote, &lc.req, lc.call, &be.target, "", be.closeBackend)
	l.outW.Flush()
	if be.state == connecting {
		l.setTimer(be, &be.timer, p.connectTimeout(w))
		return
	}
	l.startSending(be)
}

// startSending counts the request as the worker's and sends it.
func (l *eventLoop) startSending(be *loopBackend) {
	be.state = sending
	be.w.busy.Add(1)
	be.w.requests.Add(1)
	l.sendRequest(be)
}

// event: the real server's socket is readable or writable (or failed).
func (be *loopBackend) event(l *eventLoop, ev uint32) {
	readable := ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0
	if readable {
		be.ready = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		be.hup = true
	}
	switch be.state {
	case idleBackend:
		if readable {
			// The real server closed it, or sent what nobody asked for.
			l.dropIdle(be)
		}
		return
	case connecting:
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		errno, err := unix.GetsockoptInt(be.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = syscall.Errno(errno)
		}
		if err != nil {
			l.connectFailed(be, err)
			return
		}
		l.startSending(be)
		return
	case sending:
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.sendRequest(be)
		}
		return
	}
	if readable {
		l.readResponse(be)
	}
}

// expire: the real server took too long to connect, or to answer.
func (be *loopBackend) expire(l *eventLoop, now int64) {
	switch be.state {
	case connecting:
		l.connectFailed(be, os.ErrDeadlineExceeded)
	case sending, awaitingResponse:
		l.exchangeFailed(be, os.ErrDeadlineExceeded)
	case relayingBody:
		l.abandon(be.client) // part of the response went: the client's connection ends with it
	}
}

// connectFailed: the attempt failed; the worker rests for its retry= and
// the next attempt (a balancer's failover) goes on.
func (l *eventLoop) connectFailed(be *loopBackend, err error) {
	lc, w := be.client, be.w
	l.closeBackend(be)
	w.failures.Add(1)
	w.errUntil.Store(time.Now().Add(w.retry()).UnixNano())
	lc.p.log.Warn("proxy: backend connect failed", "worker", w.name, "err", err)
	lc.be = nil
	l.reach(lc)
}

// sendRequest writes what is left of the request head.
func (l *eventLoop) sendRequest(be *loopBackend) {
	for be.sent < len(be.out) {
		b := be.out[be.sent:]
		n, _, errno := sendRaw(uintptr(be.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return // EPOLLOUT goes on
		case errno != 0:
			l.exchangeFailed(be, os.NewSyscallError("write", errno))
			return
		}
		be.sent += int(n)
	}
	be.state = awaitingResponse
	l.setTimer(be, &be.timer, be.client.p.responseTimeout(be.w))
	if be.ready {
		l.readResponse(be)
	}
}

// readResponse reads the real server's response and passes it on.
func (l *eventLoop) readResponse(be *loopBackend) {
	lc := be.client
	// Passing a piece on may finish the exchange (and start the next
	// one) before passOn returns: go on only while this one runs.
	for be.ready && be.fd >= 0 && lc != nil && be.client == lc && (be.state == awaitingResponse || be.state == relayingBody) {
		if be.state == relayingBody && lc.sent < len(lc.out) {
			return // the client has not taken the last piece yet
		}
		if be.in == nil {
			be.in = make([]byte, loopBackSize)
		}
		if be.start == be.end {
			be.start, be.end = 0, 0
		} else if be.end == len(be.in) {
			if be.start == 0 {
				// A response head longer than the buffer: Apache's
				// limits still hold it (ReadResponse refuses a longer
				// one).
				if len(be.in) >= 8*loopBackSize {
					l.exchangeFailed(be, errors.New("response head too long"))
					return
				}
				be.in = append(be.in, make([]byte, len(be.in))...)
			} else {
				be.end = copy(be.in, be.in[be.start:be.end])
				be.start = 0
			}
		}
		b := be.in[be.end:]
		n, _, errno := recvRaw(uintptr(be.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			be.ready = false
			return
		case errno != 0:
			be.ready = false
			l.exchangeFailed(be, os.NewSyscallError("read", errno))
			return
		case n == 0:
			be.ready = false
			l.exchangeFailed(be, io.ErrUnexpectedEOF)
			return
		}
		be.end += int(n)
		if int(n) < len(b) && !be.hup {
			be.ready = false
		}
		if !l.passOn(be) {
			return
		}
	}
}

// passOn parses the response head (once whole) and passes the body on;
// false: the exchange ended or left the loop.
func (l *eventLoop) passOn(be *loopBackend) bool {
	lc := be.client
	p := lc.p
	for be.state == awaitingResponse {
		l.bytes.Reset(be.in[be.start:be.end])
		l.headR.Reset(&l.bytes)
		err := h1.ReadResponse(l.headR, p.limits.Head, &be.resp, lc.req.Method)
		if err != nil {
			var he *h1.Error
			if errors.As(err, &he) {
				l.exchangeFailed(be, err)
				return false
			}
			return true // not whole yet
		}
		be.start = be.end - l.headR.Buffered() - l.bytes.Len()
		resp := &be.resp
		if resp.Status/100 == 1 {
			if resp.Status == http.StatusSwitchingProtocols {
				l.exchangeFailed(be, errors.New("101 without an Upgrade asked for"))
				return false
			}
			// An interim response goes on to an HTTP/1.1 client.
			if lc.req.Minor >= 1 {
				l.clientOut(lc)
				l.out = appendWriter{&lc.out}
				p.writeResponseHeadTo(l.outW, l.f, &lc.req, resp, lc.call, true, false)
				l.outW.Flush()
			}
			continue
		}
		if resp.Chunked || resp.UntilClose || resp.Length > loopBodyMax {
			l.handOverExchange(lc, be)
			return false
		}
		if l.f.draining.Load() {
			lc.keep = false
		}
		l.clientOut(lc)
		l.out = appendWriter{&lc.out}
		p.writeResponseHeadTo(l.outW, l.f, &lc.req, resp, lc.call, lc.keep, false)
		l.outW.Flush()
		l.f.responses.add(resp.Status, false)
		be.left = max(resp.Length, 0)
		be.state = relayingBody
		l.setTimer(be, &be.timer, p.responseTimeout(be.w))
	}
	if k := min(int64(be.end-be.start), be.left); k > 0 {
		lc.out = append(lc.out, be.in[be.start:be.start+int(k)]...)
		be.start += int(k)
		be.left -= k
		be.w.read.Add(k)
	}
	if be.left == 0 {
		l.finish(lc, be)
		return false
	}
	l.setTimer(lc, &lc.timer, p.limits.Timeout)
	l.flushClient(lc)
	return lc.fd >= 0 && be.client == lc
}

// finish ends an exchange whose response is whole: the real server's
// connection goes idle (or closes), and the client's waits for its next
// request once its response is sent (or closes after it).
func (l *eventLoop) finish(lc *loopConn, be *loopBackend) {
	resp := &be.resp
	be.w.busy.Add(-1)
	be.client, lc.be = nil, nil
	if be.start != be.end || be.hup || resp.Close || resp.UntilClose || be.closeBackend || resp.Minor == 0 && !resp.KeepAlive ||
		be.p != l.f.cur.Load() || len(l.idle[be.w]) >= be.p.opts.MaxIdleConnsPerHost {
		l.closeBackend(be)
	} else {
		be.state, be.timer.at, be.reused = idleBackend, 0, false
		be.start, be.end = 0, 0
		l.idle[be.w] = append(l.idle[be.w], be)
		if be.ready {
			l.dropIdle(be) // it sent more than its response
		}
	}
	if !lc.keep {
		lc.state = closing
	} else {
		lc.state = awaitingHead
	}
	l.flushClient(lc) // and responseSent once all of it went
}

// responseSent: the client's socket took the whole response.
func (l *eventLoop) responseSent(lc *loopConn) {
	l.observe(lc)
	l.putOut(lc)
	switch lc.state {
	case closing:
		if l.f.draining.Load() {
			l.linger(lc)
			return
		}
		l.closeClient(lc)
	case awaitingHead:
		p := l.f.cur.Load()
		if !lc.nodely {
			// As nginx: Nagle's algorithm off once a connection is
			// kept (a response written in pieces must not wait).
			lc.nodely = true
			unix.SetsockoptInt(lc.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		l.awaitRequest(lc, p, p.limits.KeepAliveTimeout)
		if lc.start < len(lc.in) || lc.ready || lc.eof {
			l.readRequest(lc)
		} else {
			l.releaseIn(lc)
		}
	}
}

// flushClient sends what the client has not taken; false: the client's
// connection ended (a write failed).
func (l *eventLoop) flushClient(lc *loopConn) bool {
	for lc.sent < len(lc.out) {
		b := lc.out[lc.sent:]
		n, _, errno := sendRaw(uintptr(lc.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			if lc.state != exchanging {
				l.setTimer(lc, &lc.timer, l.f.cur.Load().limits.Timeout)
			}
			return true // EPOLLOUT goes on
		case errno != 0:
			l.abandon(lc)
			return false
		}
		lc.sent += int(n)
	}
	switch {
	case lc.state == exchanging && lc.be != nil && lc.be.state == relayingBody:
		lc.out, lc.sent = lc.out[:0], 0 // the next piece goes from the start
		if lc.be.ready {
			l.readResponse(lc.be)
		}
	case (lc.state == awaitingHead || lc.state == closing) && len(lc.out) > 0:
		l.responseSent(lc)
	}
	return lc.fd >= 0
}

// exchangeFailed: the real server's connection failed before its response
// was whole. A reused connection the real server closed is replaced once
// (the request has no body); else the client gets Apache's 502 (503 when
// no connection could be made) if nothing of the response went to it yet.
func (l *eventLoop) exchangeFailed(be *loopBackend, err error) {
	lc, w, p := be.client, be.w, be.client.p
	w.busy.Add(-1)
	l.closeBackend(be)
	lc.be = nil
	if be.state == relayingBody {
		l.closeClient(lc)
		return
	}
	if be.reused && !lc.retried && be.end == 0 && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)) {
		lc.retried = true
		nb, derr := l.dial(p, w)
		if derr == nil {
			nb.target, nb.closeBackend = be.target, be.closeBackend
			l.begin(lc, nb)
			return
		}
		err = derr
	}
	p.log.Warn("proxy: request failed", "uri", lc.req.Target, "worker", w.name, "status", http.StatusBadGateway, "err", err)
	l.answer(lc, http.StatusBadGateway)
}

// answer sends Apache's error page for status in place of a response;
// the connection closes after it when Apache's would.
func (l *eventLoop) answer(lc *loopConn, status int) {
	if dropsConnection(status) || !lc.keep {
		lc.keep = false
		lc.state = closing
	} else {
		lc.state = awaitingHead
	}
	l.clientOut(lc)
	l.out = appendWriter{&lc.out}
	lc.p.writeErrorPage(l.outW, l.f, status, !lc.keep, lc.req.Method)
	l.outW.Flush()
	l.flushClient(lc) // and responseSent once all of it went
}

// dropIdle closes an idle connection and takes it out of its pool.
func (l *eventLoop) dropIdle(be *loopBackend) {
	list := l.idle[be.w]
	for i, x := range list {
		if x == be {
			l.idle[be.w] = append(list[:i], list[i+1:]...)
			break
		}
	}
	l.closeBackend(be)
}

// closeIdleBackends closes the idle connections (of every proxy but keep).
func (l *eventLoop) closeIdleBackends(keep *Proxy) {
	for w, list := range l.idle {
		if len(list) > 0 && list[0].p == keep {
			continue
		}
		for _, be := range list {
			l.closeBackend(be)
		}
		delete(l.idle, w)
	}
}

func (l *eventLoop) closeBackend(be *loopBackend) {
	if be.fd < 0 {
		return
	}
	l.remove(be.fd)
	closeFD(be.fd)
	be.fd = -1
}

func (l *eventLoop) closeClient(lc *loopConn) {
	if lc.fd < 0 {
		return
	}
	l.remove(lc.fd)
	closeFD(lc.fd)
	l.forget(lc)
	<-l.f.slots
}

// observe counts the request under way as done (its response was sent,
// or the connection ended).
func (l *eventLoop) observe(lc *loopConn) {
	if lc.began != 0 {
		l.f.durations.observe(time.Duration(time.Now().UnixNano() - lc.began))
		lc.began = 0
	}
}

// forget takes lc out of the loop's and the Front's counts (it closed or
// went to a goroutine).
func (l *eventLoop) forget(lc *loopConn) {
	l.observe(lc)
	lc.fd = -1
	if lc.idleIn {
		lc.idleIn = false
		l.f.waiting.Add(-1)
	}
	l.conns--
	f := l.f
	if f.loopConns.Add(-1) == 0 && f.draining.Load() {
		f.mu.Lock()
		f.drainedLocked()
		f.mu.Unlock()
	}
	if lc.in != nil {
		lc.start = len(lc.in)
		l.releaseIn(lc)
	}
}

// handOver gives the client's connection to a goroutine of the goroutine
// path (front.go): what it read and did not serve goes with it, and so
// does the exchange under way (resume), if any.
func (l *eventLoop) handOver(lc *loopConn, resume func(cc *clientConn) bool) {
	f := l.f
	fd := lc.fd
	l.epollCtl(unix.EPOLL_CTL_DEL, fd, &unix.EpollEvent{})
	l.remove(fd)
	h := &handover{served: lc.served, resume: resume, fresh: lc.served == 0 && resume == nil && lc.in == nil}
	if lc.start < len(lc.in) {
		h.pending = bytes.Clone(lc.in[lc.start:])
	}
	if lc.sent < len(lc.out) {
		h.out = bytes.Clone(lc.out[lc.sent:])
	}
	c, err := fdConn(fd)
	l.forget(lc)
	f.handedOver.Add(1)
	if err != nil {
		<-f.slots
		f.log.Warn("proxy: handing a connection over", "err", err)
		return
	}
	idle := f.track(c)
	if idle == nil {
		c.Close()
		<-f.slots
		return
	}
	go f.serveConn(c, idle, h)
}

// fdConn makes a net.Conn of a socket the loop opened (and closes fd:
// the net.Conn has a descriptor of its own).
func fdConn(fd int) (net.Conn, error) {
	file := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(file)
	file.Close()
	return c, err
}

// handOverExchange gives the exchange under way (a response the loop does
// not pass on) to the goroutine path: the real server's connection with
// what was read of it, and the response head.
func (l *eventLoop) handOverExchange(lc *loopConn, be *loopBackend) {
	p, w := lc.p, be.w
	fd := be.fd
	l.epollCtl(unix.EPOLL_CTL_DEL, fd, &unix.EpollEvent{})
	l.remove(fd)
	be.fd = -1
	rest := bytes.Clone(be.in[be.start:be.end])
	bconn, err := fdConn(fd)
	if err != nil {
		w.busy.Add(-1)
		l.closeClient(lc)
		return
	}
	req := lc.req
	resp := be.resp
	c, keep, closeBackend := lc.call, lc.keep, be.closeBackend
	began := lc.began
	lc.be, lc.began = nil, 0
	l.handOver(lc, func(cc *clientConn) bool {
		defer w.busy.Add(-1)
		defer func() { cc.f.durations.observe(time.Duration(time.Now().UnixNano() - began)) }()
		bc := &backendConn{c: bconn, reused: be.reused}
		bc.dl.c = bconn
		if bc.tcp, _ = bconn.(*net.TCPConn); bc.tcp != nil {
			bc.sk = newSock(bc.tcp)
		}
		var rw io.ReadWriter = bconn
		if bc.sk != nil {
			rw = bc.sk
		}
		bc.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), rw), max(loopBackSize, len(rest)))
		if len(rest) > 0 {
			bc.br.Peek(len(rest))
		}
		bc.bw = bufio.NewWriterSize(rw, 4096)
		bc.resp = resp
		cc.req = req
		return p.respond(cc, &cc.req, &bc.resp, c, w, bc, keep, closeBackend, false) == done
	})
}

// isClosed tells whether Close was called.
func (f *Front) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// loopable tells whether the event loop may serve requests for r: its
// real servers are http:// ones named by their addresses, reached with
// the kernel's TCP (no dialer of the caller's).
func (p *Proxy) loopable(r *route) bool {
	if p.opts.DialContext != nil {
		return false
	}
	ws := []*worker{r.worker}
	if r.bal != nil {
		ws = r.bal.members
	}
	for _, w := range ws {
		if w == nil || !w.ap.IsValid() || !strings.HasPrefix(w.name, "http://") {
			return false
		}
	}
	return true
}

// timerEntry is a deadline in the loop's timer heap.
type timerEntry struct {
	at   int64
	item loopItem
}

// timerHeap is a binary min-heap of deadlines.
type timerHeap struct{ h []timerEntry }

func (t *timerHeap) Len() int          { return len(t.h) }
func (t *timerHeap) peek() *timerEntry { return &t.h[0] }

func (t *timerHeap) push(e timerEntry) {
	t.h = append(t.h, e)
	for i := len(t.h) - 1; i > 0; {
		parent := (i - 1) / 2
		if t.h[parent].at <= t.h[i].at {
			break
		}
		t.h[parent], t.h[i] = t.h[i], t.h[parent]
		i = parent
	}
}

func (t *timerHeap) pop() timerEntry {
	top := t.h[0]
	last := len(t.h) - 1
	t.h[0] = t.h[last]
	t.h[last] = timerEntry{}
	t.h = t.h[:last]
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < last && t.h[l].at < t.h[small].at {
			small = l
		}
		if r < last && t.h[r].at < t.h[small].at {
			small = r
		}
		if small == i {
			break
		}
		t.h[i], t.h[small] = t.h[small], t.h[i]
		i = small
	}
	return top
}
