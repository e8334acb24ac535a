package proxy

import (
	"bufio"
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

	readers sync.Pool // *bufio.Reader of h1.BufferSize(default limits)
	writers sync.Pool // *bufio.Writer

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	closed bool
}

// NewFront serves p's routes until Swap or Close.
func NewFront(p *Proxy, opts FrontOptions) *Front {
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	f := &Front{log: opts.Logger, slots: make(chan struct{}, opts.MaxConnections), done: make(chan struct{}),
		lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
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

// Connections is the number of client connections open.
func (f *Front) Connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// Serve accepts connections on ln until Close; it returns
// http.ErrServerClosed after Close.
func (f *Front) Serve(ln net.Listener) error {
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
		case <-f.done:
			return http.ErrServerClosed
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
		if !f.track(c, true) {
			<-f.slots
			c.Close()
			return http.ErrServerClosed
		}
		go f.serveConn(c)
	}
}

// track adds (or removes) an open connection; it refuses one after Close.
func (f *Front) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		if f.closed {
			return false
		}
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
	return true
}

// Close stops every Serve loop and closes every client connection.
func (f *Front) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.done)
	var err error
	for ln := range f.lns {
		err = errors.Join(err, ln.Close())
	}
	for c := range f.conns {
		c.Close()
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
	rc     *rateConn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string // the client's IP, for X-Forwarded-For
	req    h1.Request
	served int
}

func (f *Front) serveConn(c net.Conn) {
	cc := &clientConn{f: f, c: c, rc: &rateConn{Conn: c}}
	cc.tcp, _ = c.(*net.TCPConn)
	cc.remote = c.RemoteAddr().String()
	if ap, err := netip.ParseAddrPort(cc.remote); err == nil {
		cc.remote = ap.Addr().Unmap().String()
	}
	defer func() {
		cc.release()
		c.Close()
		f.track(c, false)
		<-f.slots
	}()
	for cc.serveOne() {
	}
}

// release gives the connection's buffers back while it waits.
func (cc *clientConn) release() {
	if cc.br != nil && cc.br.Size() == h1.BufferSize(h1.DefaultLimits()) {
		cc.br.Reset(nil)
		cc.f.readers.Put(cc.br)
	}
	if cc.bw != nil {
		cc.bw.Reset(nil)
		cc.f.writers.Put(cc.bw)
	}
	cc.br, cc.bw = nil, nil
}

// buffers takes the connection's buffers (a reader that holds a line
// within lim).
func (cc *clientConn) buffers(lim h1.Limits) {
	size := h1.BufferSize(lim)
	if cc.br != nil && cc.br.Size() < size && cc.br.Buffered() == 0 {
		cc.br = nil // the limits grew on a reload
	}
	if cc.br == nil {
		if size == h1.BufferSize(h1.DefaultLimits()) {
			if b, ok := cc.f.readers.Get().(*bufio.Reader); ok {
				b.Reset(cc.rc)
				cc.br = b
			}
		}
		if cc.br == nil {
			cc.br = bufio.NewReaderSize(cc.rc, size)
		}
	}
	if cc.bw == nil {
		if b, ok := cc.f.writers.Get().(*bufio.Writer); ok {
			b.Reset(cc.c)
			cc.bw = b
		} else {
			cc.bw = bufio.NewWriterSize(cc.c, 4096)
		}
	}
}

// waitRequest waits, holding no buffer, until the client sends a byte or
// the deadline passes; false: closed, reset or timed out.
func (cc *clientConn) waitRequest(deadline time.Time) bool {
	if cc.br != nil && cc.br.Buffered() > 0 {
		return true
	}
	cc.release()
	if cc.tcp == nil {
		return true // no readiness without reading: the buffered read waits instead
	}
	cc.c.SetReadDeadline(deadline)
	raw, err := cc.tcp.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	if rerr := raw.Read(func(fd uintptr) bool {
		n, err := peek(fd)
		if err == unix.EAGAIN {
			return false
		}
		ready = err == nil && n > 0
		return true
	}); rerr != nil {
		return false
	}
	return ready
}

// rateConn is the client connection as its reader sees it: while a
// deadline runs by a minimum rate (mod_reqtimeout's MinRate), every
// read moves it on by the time the bytes read have earned, up to a
// ceiling.
type rateConn struct {
	net.Conn
	start    time.Time
	base     time.Duration // the deadline before any byte
	ceiling  time.Duration // 0: none
	minRate  int           // bytes a second; 0: the deadline stays
	total    int64
	deadline time.Time
}

// timeout starts a rate-bound deadline (minRate 0: a fixed one).
func (r *rateConn) timeout(base, ceiling time.Duration, minRate int) {
	r.start, r.base, r.ceiling, r.minRate, r.total = time.Now(), base, ceiling, minRate, 0
	r.deadline = r.start.Add(base)
	r.Conn.SetReadDeadline(r.deadline)
}

func (r *rateConn) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.total += int64(n)
	if n > 0 && r.minRate > 0 {
		d := r.base + time.Duration(r.total)*time.Second/time.Duration(r.minRate)
		if r.ceiling > 0 {
			d = min(d, r.ceiling)
		}
		if next := r.start.Add(d); next.Sub(r.deadline) >= time.Second {
			r.deadline = next
			r.Conn.SetReadDeadline(next)
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
	wait := lim.HeaderTimeout
	if cc.served > 0 {
		wait = lim.KeepAliveTimeout
	}
	if !cc.waitRequest(time.Now().Add(wait)) {
		return false
	}
	cc.buffers(lim.Head)
	// The header timeout runs from the request's first byte (waitRequest
	// saw it, or it is buffered already).
	cc.rc.timeout(lim.HeaderTimeout, lim.HeaderMaxTimeout, lim.HeaderMinRate)
	req := &cc.req
	err := h1.ReadRequest(cc.br, lim.Head, req)
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
	// The request is routed by the proxy serving now: on a connection
	// without a readiness wait, a reload may have come while the head
	// was awaited.
	p = cc.f.cur.Load()
	lim = &p.limits
	keep := !req.Close && lim.KeepAlive && (lim.MaxKeepAliveRequests <= 0 || cc.served < lim.MaxKeepAliveRequests)
	return p.forward(cc, req, keep)
}

// fail answers status with Apache's error page; closing: and closes the
// connection after it.
func (cc *clientConn) fail(p *Proxy, status int, closing bool) {
	cc.buffers(p.limits.Head)
	cc.c.SetWriteDeadline(time.Now().Add(p.limits.Timeout))
	body := p.errorPage(status)
	b := cc.bw
	b.WriteString("HTTP/1.1 ")
	b.WriteString(statusLine(status))
	b.WriteString("\r\n")
	b.WriteString(cc.f.dateField())
	b.WriteString("Content-Length: ")
	b.WriteString(itoa(len(body)))
	b.WriteString("\r\nContent-Type: text/html; charset=iso-8859-1\r\n")
	if closing {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	if cc.req.Method != "HEAD" {
		b.WriteString(body)
	}
	b.Flush()
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
