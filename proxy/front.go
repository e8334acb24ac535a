package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vsgate/vsgate/proxy/h1"
	"golang.org/x/sys/unix"
)

// DefaultMaxConnections caps a Front's client connections when
// FrontOptions leaves it 0.
const DefaultMaxConnections = 16384

// FrontOptions are a Front's settings that no directive names.
type FrontOptions struct {
	// MaxConnections caps the client connections served at once
	// (idle keep-alive ones included); at the cap the listener is not
	// read and the kernel's backlog holds new clients, as Apache's
	// listener does when every worker is busy. 0 means
	// DefaultMaxConnections.
	MaxConnections int
	// Logger receives errors; nil means slog.Default().
	Logger *slog.Logger
	// Goroutines serves every connection on a goroutine of its own
	// from its first request to its last; without it, the
	// connections of a kernel TCP listener are served by an event loop
	// (loop.go), which hands them to a goroutine for what it does not
	// serve itself.
	Goroutines bool
}

// Front serves HTTP/1.1 clients on listeners, each request by the routes of
// the Proxy it holds at that moment: Swap replaces the Proxy, and an open
// connection's next request goes by the new one. One goroutine serves
// each connection from its first request to its last; request and
// response heads are read and written by package h1, bodies stream
// (spliced between kernel sockets where both ends are one).
type Front struct {
	cur   atomic.Pointer[Proxy]
	log   *slog.Logger
	slots chan struct{} // one per connection served
	done  chan struct{} // closed by Close
	date  atomic.Pointer[dateLine]

	tickets   ticketKeys
	waiting   atomic.Int64 // connections waiting for a request's head
	accepted  atomic.Uint64
	paused    atomic.Uint64 // times Serve waited for a free slot
	responses responseCounts

	readers sync.Pool // *bufio.Reader of readerSize
	writers sync.Pool // *bufio.Writer

	draining atomic.Bool // Shutdown was called: no keep-alive from now on

	goroutines               bool         // FrontOptions.Goroutines
	loopConns                atomic.Int64 // client connections served by event loops
	loopRequests, handedOver atomic.Uint64
	durations                *durations

	mu      sync.Mutex
	lns     map[net.Listener]struct{}
	conns   map[net.Conn]*atomic.Bool // each connection: true while it waits for a request with nothing of it read
	h2      map[net.Conn]*http.Server // each HTTP/2 connection's server (serveH2), by its TLS connection
	loops   []*eventLoop
	closed  bool
	drained chan struct{} // closed once Shutdown was called and no connection is left
}

// NewFront serves p's routes until Swap or Close.
func NewFront(p *Proxy, opts FrontOptions) *Front {
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	f := &Front{log: opts.Logger, goroutines: opts.Goroutines, durations: newDurations(), slots: make(chan struct{}, opts.MaxConnections), done: make(chan struct{}),
		lns: map[net.Listener]struct{}{}, conns: map[net.Conn]*atomic.Bool{}, h2: map[net.Conn]*http.Server{}, drained: make(chan struct{})}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.cur.Store(p)
	return f
}

// Swap makes p serve every request from now on and returns the Proxy it
// replaced (requests running on that one finish on it).
func (f *Front) Swap(p *Proxy) *Proxy { return f.cur.Swap(p) }

// Proxy is the Proxy serving new requests.
func (f *Front) Proxy() *Proxy { return f.cur.Load() }

// Waiting is the number of client connections waiting for a request
// (idle between requests, or its head not yet whole).
func (f *Front) Waiting() int { return int(f.waiting.Load()) }

// Connections is the number of client connections open.
func (f *Front) Connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns) + int(f.loopConns.Load())
}

// Serve accepts connections on ln until Close; it returns
// http.ErrServerClosed after Close.
func (f *Front) Serve(ln net.Listener) error {
	// An event loop serves plain HTTP/1.1 (TLS is the goroutine path's:
	// a loop would only hand every connection over).
	if tl, ok := ln.(*net.TCPListener); ok && !f.goroutines && f.cur.Load().tlsFront == nil {
		if served, err := f.serveLoop(tl); served {
			return err
		}
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return http.ErrServerClosed
	}
	f.lns[ln] = struct{}{}
	f.mu.Unlock()
	var backoff time.Duration
	for {
		select {
		case f.slots <- struct{}{}:
		default:
			// MaxConnections are open: accept again when one ends.
			f.paused.Add(1)
			select {
			case f.slots <- struct{}{}:
			case <-f.done:
				return http.ErrServerClosed
			}
		}
		c, err := ln.Accept()
		if err != nil {
			<-f.slots
			select {
			case <-f.done:
				return http.ErrServerClosed
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) {
				// Out of descriptors, or a client gone before accept:
				// wait and go on, as net/http's server does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.log.Warn("proxy: accept", "err", err, "retry in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		f.accepted.Add(1)
		idle := f.track(c)
		if idle == nil {
			<-f.slots
			c.Close()
			return http.ErrServerClosed
		}
		go f.serveConn(c, idle, nil)
	}
}

// track adds an open connection and returns its idle flag; nil after
// Close or Shutdown.
func (f *Front) track(c net.Conn) *atomic.Bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.draining.Load() {
		return nil
	}
	idle := new(atomic.Bool)
	f.conns[c] = idle
	return idle
}

// untrack removes a connection that ended.
func (f *Front) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
	f.drainedLocked()
}

// drainedLocked closes drained once Shutdown was called and the last
// connection ended. Caller holds f.mu.
func (f *Front) drainedLocked() {
	if f.draining.Load() && len(f.conns) == 0 && f.loopConns.Load() == 0 {
		select {
		case <-f.drained:
		default:
			close(f.drained)
		}
	}
}

// Shutdown stops accepting (the listeners close), ends the connections
// waiting for a request, and lets every other one end after the response
// it is sending (with Connection: close), as Apache's graceful stop and
// nginx's reload do: no request is cut. An HTTP/2 connection gets GOAWAY:
// its running streams finish, then it ends. Drained tells when the last
// one ended; Close still ends them all at once.
func (f *Front) Shutdown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.draining.Load() {
		return
	}
	f.draining.Store(true)
	close(f.done)
	for ln := range f.lns {
		ln.Close()
	}
	for c, idle := range f.conns {
		// A read waiting for a request returns now; a connection
		// whose request began meanwhile reads it under its own
		// deadline (rateConn sets it) and is served.
		if idle.Load() {
			c.SetReadDeadline(time.Now())
		}
	}
	for _, base := range f.h2 {
		// GOAWAY; it returns at once (no listener or connection of
		// base's own to wait for).
		base.Shutdown(context.Background())
	}
	for _, l := range f.loops {
		l.wake()
	}
	f.drainedLocked()
}

// Drained is closed once Shutdown was called and every connection ended.
func (f *Front) Drained() <-chan struct{} { return f.drained }

// Close stops every Serve loop and closes every client connection.
func (f *Front) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	if !f.draining.Load() {
		close(f.done)
	}
	var err error
	for ln := range f.lns {
		err = errors.Join(err, ln.Close())
	}
	for c := range f.conns {
		c.Close()
	}
	for _, l := range f.loops {
		l.wake()
	}
	f.mu.Unlock()
	return err
}

// dateLine is the Date field for the current second.
type dateLine struct {
	sec  int64
	line string
}

// dateField is "Date: <IMF-fixdate>\r\n", formatted once a second.
func (f *Front) dateField() string {
	now := time.Now()
	if d := f.date.Load(); d != nil && d.sec == now.Unix() {
		return d.line
	}
	d := &dateLine{sec: now.Unix(), line: "Date: " + now.UTC().Format(http.TimeFormat) + "\r\n"}
	f.date.Store(d)
	return d.line
}

// clientConn is one client connection's state between its requests.
type clientConn struct {
	f      *Front
	c      net.Conn
	tcp    *net.TCPConn // c, when it is a kernel socket (splice, readiness without a buffer)
	sk     *sock        // tcp's reads and writes, when it is one
	dl     deadlines    // c's
	rc     *rateConn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string // the client's IP, for X-Forwarded-For
	req    h1.Request
	served int
}

// handover is what an event loop hands a goroutine with a connection it
// stops serving itself (loop.go): bytes read and not yet served, bytes
// not yet sent, the requests served so far, and the exchange under way,
// if any, to finish first (false: the connection is done).
type handover struct {
	pending []byte
	out     []byte
	served  int
	resume  func(cc *clientConn) bool
	fresh   bool // nothing of it was read: TLS begins here when the Proxy has it
}

// serveConn serves c from its first request, or from where an event
// loop left it (from, nil for a new connection).
func (f *Front) serveConn(c net.Conn, idle *atomic.Bool, from *handover) {
	cc := &clientConn{f: f, c: c}
	if cc.tcp, _ = c.(*net.TCPConn); cc.tcp != nil {
		cc.sk = newSock(cc.tcp)
	}
	cc.remote = c.RemoteAddr().String()
	if ap, err := netip.ParseAddrPort(cc.remote); err == nil {
		cc.remote = ap.Addr().Unmap().String()
	}
	defer func() {
		cc.release(true)
		if f.draining.Load() {
			lingerClose(c, f.cur.Load().limits.Timeout)
		}
		cc.c.Close()
		f.untrack(c)
		<-f.slots
	}()
	if p := f.cur.Load(); p.tlsFront != nil && (from == nil || from.fresh) {
		base := c
		if cc.sk != nil {
			base = sockConn{cc.tcp, cc.sk}
		}
		tc := tls.Server(base, f.withTicketKeys(p.tlsFront))
		d := p.limits.HandshakeTimeout
		if d == 0 {
			d = p.limits.Timeout
		}
		c.SetDeadline(time.Now().Add(d))
		if err := tc.Handshake(); err != nil {
			f.log.Debug("proxy: TLS handshake", "client", c.RemoteAddr(), "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		cc.c, cc.tcp, cc.sk = tc, nil, nil
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			f.serveH2(cc)
			return
		}
	}
	cc.dl.c = cc.c
	cc.rc = &rateConn{src: cc.c, dl: &cc.dl, idle: idle}
	if cc.sk != nil {
		cc.rc.src = cc.sk
	}
	if from != nil {
		cc.served = from.served
		cc.rc.pending = from.pending
		cc.buffers()
		if len(from.pending) > 0 {
			cc.br.Peek(len(from.pending)) // buffered now, as if read here
		}
		cc.bw.Write(from.out)
		if from.resume != nil && !from.resume(cc) {
			return
		}
	}
	for cc.serveOne() {
	}
}

// readerSize is a client connection's read buffer: a line longer than it
// (up to its limit) is put together from several reads.
const readerSize = 4096

// release gives the connection's buffers back: the writer after every
// response (it is flushed), the reader when the connection ends.
func (cc *clientConn) release(reader bool) {
	if cc.bw != nil {
		cc.bw.Reset(nil)
		cc.f.writers.Put(cc.bw)
		cc.bw = nil
	}
	if reader && cc.br != nil {
		cc.br.Reset(nil)
		cc.f.readers.Put(cc.br)
		cc.br = nil
	}
}

// buffers takes the connection's buffers.
func (cc *clientConn) buffers() {
	if cc.br == nil {
		if b, ok := cc.f.readers.Get().(*bufio.Reader); ok {
			b.Reset(cc.rc)
			cc.br = b
		} else {
			cc.br = bufio.NewReaderSize(cc.rc, readerSize)
		}
	}
	if cc.bw == nil {
		var out io.Writer = cc.c
		if cc.sk != nil {
			out = cc.sk
		}
		if b, ok := cc.f.writers.Get().(*bufio.Writer); ok {
			b.Reset(out)
			cc.bw = b
		} else {
			cc.bw = bufio.NewWriterSize(out, 4096)
		}
	}
}

// rateConn is the client connection as its reader sees it. While a
// request is awaited (await), the deadline is the wait's; the request's
// first bytes start the header timeout, which, with a minimum rate
// (mod_reqtimeout's MinRate), every read moves on by the time its bytes
// earned, up to a ceiling.
type rateConn struct {
	src      io.Reader // the connection's reads (a sock for a kernel socket)
	pending  []byte    // read before (by an event loop): Read gives these first
	dl       *deadlines
	idle     *atomic.Bool // set while waiting holds (Front.Shutdown reads it)
	waiting  bool         // no byte of the request yet
	armed    bool         // deadline is to be set before the next read
	start    time.Time
	base     time.Duration // the deadline before any byte
	ceiling  time.Duration // 0: none
	minRate  int           // bytes a second; 0: the deadline stays
	total    int64
	deadline time.Time
}

// await waits for a request for wait (up to its slack more); its first
// byte starts timeout(base, ceiling, minRate).
func (r *rateConn) await(wait, base, ceiling time.Duration, minRate int) {
	r.waiting, r.armed, r.base, r.ceiling, r.minRate, r.total = true, false, base, ceiling, minRate, 0
	r.dl.setRead(time.Now(), wait)
	r.idle.Store(true)
}

// timeout starts a rate-bound deadline (minRate 0: a fixed one). It is
// set on the connection only when a read needs it: most request heads
// come whole in the read that started them.
func (r *rateConn) timeout(base, ceiling time.Duration, minRate int) {
	r.waiting, r.start, r.base, r.ceiling, r.minRate, r.total = false, time.Now(), base, ceiling, minRate, 0
	r.deadline = r.start.Add(base)
	r.armed = true
}

func (r *rateConn) Read(b []byte) (int, error) {
	if r.armed {
		r.armed = false
		r.dl.setReadAt(r.deadline)
	}
	var n int
	var err error
	if len(r.pending) > 0 {
		n = copy(b, r.pending)
		r.pending = r.pending[n:]
	} else {
		n, err = r.src.Read(b)
	}
	if n > 0 && r.waiting {
		r.idle.Store(false)
		r.timeout(r.base, r.ceiling, r.minRate)
	}
	r.total += int64(n)
	if n > 0 && r.minRate > 0 {
		d := r.base + time.Duration(r.total)*time.Second/time.Duration(r.minRate)
		if r.ceiling > 0 {
			d = min(d, r.ceiling)
		}
		if next := r.start.Add(d); next.Sub(r.deadline) >= time.Second {
			r.deadline = next
			r.armed = true
		}
	}
	return n, err
}

// serveOne serves one request; false: the connection is done.
func (cc *clientConn) serveOne() bool {
	p := cc.f.cur.Load()
	lim := &p.limits
	if cc.served > 0 && (!lim.KeepAlive || lim.MaxKeepAliveRequests > 0 && cc.served >= lim.MaxKeepAliveRequests) {
		return false
	}
	cc.buffers()
	if cc.br.Buffered() > 0 {
		cc.rc.timeout(lim.HeaderTimeout, lim.HeaderMaxTimeout, lim.HeaderMinRate)
		// Part of a request is here: its timeout answers 408.
		cc.rc.total = int64(cc.br.Buffered())
	} else {
		// The first request's header timeout runs from the connection's
		// start; a later one waits KeepAliveTimeout for its first byte.
		wait := lim.HeaderTimeout
		if cc.served > 0 {
			wait = lim.KeepAliveTimeout
		}
		cc.rc.await(wait, lim.HeaderTimeout, lim.HeaderMaxTimeout, lim.HeaderMinRate)
		// The idle flag is up: a Shutdown from now on sees it, and one
		// before is seen here. A keep-alive connection then ends.
		if cc.served > 0 && cc.f.draining.Load() {
			return false
		}
	}
	req := &cc.req
	cc.f.waiting.Add(1)
	err := h1.ReadRequest(cc.br, lim.Head, req)
	cc.f.waiting.Add(-1)
	if err != nil {
		var he *h1.Error
		var ne net.Error
		switch {
		case errors.As(err, &he):
			cc.fail(p, he.Status, true)
		case errors.As(err, &ne) && ne.Timeout():
			// Apache's mod_reqtimeout: 408 once part of a request came.
			if cc.rc.total > 0 {
				cc.fail(p, http.StatusRequestTimeout, true)
			}
		}
		return false
	}
	cc.served++
	began := time.Now()
	defer func() { cc.f.durations.observe(time.Since(began)) }()
	// The request is routed by the proxy serving now: a reload may have
	// come while the head was awaited.
	p = cc.f.cur.Load()
	lim = &p.limits
	keep := !req.Close && lim.KeepAlive && (lim.MaxKeepAliveRequests <= 0 || cc.served < lim.MaxKeepAliveRequests) && !cc.f.draining.Load()
	keep = p.forward(cc, req, keep)
	cc.release(false)
	return keep
}

// fail answers status with Apache's error page; closing: and closes the
// connection after it.
func (cc *clientConn) fail(p *Proxy, status int, closing bool) {
	cc.buffers()
	cc.dl.setWrite(time.Now(), p.limits.Timeout)
	p.writeErrorPage(cc.bw, cc.f, status, closing, cc.req.Method)
	cc.bw.Flush()
}

// writeErrorPage writes the response status with Apache's error page
// into b (counted as the proxy's own); closing: with Connection: close.
func (p *Proxy) writeErrorPage(b *bufio.Writer, f *Front, status int, closing bool, method string) {
	f.responses.add(status, true)
	body := p.errorPage(status)
	b.WriteString("HTTP/1.1 ")
	b.WriteString(statusLine(status))
	b.WriteString("\r\n")
	b.WriteString(f.dateField())
	b.WriteString("Content-Length: ")
	b.WriteString(itoa(len(body)))
	b.WriteString("\r\nContent-Type: text/html; charset=iso-8859-1\r\n")
	if closing {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	if method != "HEAD" {
		b.WriteString(body)
	}
}

// drain reads and discards what is left of a request body the proxy did
// not forward, so the connection can go on; false: it cannot.
func drain(br *bufio.Reader, n int64) bool {
	if n < 0 || n > 64<<10 {
		return false
	}
	_, err := io.CopyN(io.Discard, br, n)
	return err == nil
}

// Session tickets: a Front encrypts them with keys of its own, made anew
// every ticketRotation and taken for ticketKeep rotations, so a ticket
// outlives a reload (whose proxy brings a new tls.Config) and is not
// good for ever.
const (
	ticketRotation = 24 * time.Hour
	ticketKeep     = 7
)

// ticketKeys are a Front's session ticket keys, newest first, and the
// configuration they were last given to.
type ticketKeys struct {
	mu      sync.Mutex
	keys    [][32]byte
	rotated time.Time
	applied *tls.Config
}

// withTicketKeys gives cfg the Front's current ticket keys (rotating
// them when due) and returns it.
func (f *Front) withTicketKeys(cfg *tls.Config) *tls.Config {
	k := &f.tickets
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := time.Now(); len(k.keys) == 0 || now.Sub(k.rotated) >= ticketRotation {
		var key [32]byte
		rand.Read(key[:])
		k.keys = append([][32]byte{key}, k.keys[:min(len(k.keys), ticketKeep-1)]...)
		k.rotated, k.applied = now, nil
	}
	if k.applied != cfg {
		cfg.SetSessionTicketKeys(k.keys)
		k.applied = cfg
	}
	return cfg
}

// lingerClose half-closes c and waits until what was written reached the
// client: for a kernel socket, until the client acknowledged all of it
// and the FIN, or the client closed, or it acknowledged nothing for
// timeout; for another (the netstack's), until the client closed or 2 s
// passed without a byte from it (Apache's lingering close). A shut-down
// Front closes its connections this way, so that a removed service's
// wiring, taken back once the last one ended, does not cut the end of a
// response still in the send buffer.
func lingerClose(c net.Conn, timeout time.Duration) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	tcp, _ := c.(*net.TCPConn)
	var raw syscall.RawConn
	if tcp != nil {
		raw, _ = tcp.SyscallConn()
	}
	var acked uint64
	progress := time.Now()
	var buf [512]byte
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(buf[:])
		var ne net.Error
		if err == nil {
			continue
		}
		if raw == nil || !errors.As(err, &ne) || !ne.Timeout() {
			return // the client closed (or the read failed), or no kernel socket to ask
		}
		var info *unix.TCPInfo
		raw.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		if info == nil || info.State != unix.BPF_TCP_FIN_WAIT1 && info.State != unix.BPF_TCP_CLOSING {
			return // all sent and acknowledged (FIN_WAIT2), or nothing left to send
		}
		if info.Bytes_acked != acked {
			acked, progress = info.Bytes_acked, time.Now()
		} else if time.Since(progress) >= timeout {
			return
		}
	}
}
