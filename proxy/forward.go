package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vsgate/vsgate/proxy/h1"
)

// call is one request's routing decision.
type call struct {
	r       *route
	found   string // proxy URL after translation
	args    string
	hasArgs bool
	nocanon bool
	host    string // the client's Host
}

// connectError is a failure to connect to a backend: Apache answers 503
// and puts the worker in error state.
type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string { return "connect to " + e.addr + ": " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// exchangeEnd is how an exchange with a real server ended.
type exchangeEnd int

const (
	done        exchangeEnd = iota // the response went to the client whole
	clientGone                     // the client's side failed: close it
	answered                       // an error page was sent; the connection may go on
	answeredEnd                    // an error page was sent; close the connection
)

// forward routes one request as Apache's mod_proxy would, sends it to a
// real server and its response to the client; false: close the client
// connection.
func (p *Proxy) forward(cc *clientConn, req *h1.Request, keep bool) bool {
	c, status := p.route(req)
	if status == 0 {
		status = p.checkRequest(req)
	}
	if status != 0 {
		return p.refuse(cc, req, status, keep)
	}
	w, t, bc, status := p.reach(c)
	if status != 0 {
		return p.refuse(cc, req, status, keep)
	}
	switch p.exchange(cc, req, c, w, &t, bc, keep) {
	case done:
		return keep && !req.Close
	case answered:
		return keep
	}
	return false
}

// reach picks the worker for a routed request and connects to it: a
// balancer's members with Apache's lbmethod and failover (a member that
// refuses the connection rests for its retry= and the next is tried).
// Without a connection, status is what Apache answers: 503 when no worker
// could be reached, 500 for an https:// one without SSLProxyEngine, 502
// when TLS to it failed, 400 or 403 for a URL that does not map.
func (p *Proxy) reach(c *call) (w *worker, t target, bc *backendConn, status int) {
	attempts := 1
	if b := c.r.bal; b != nil && !b.noFailover {
		attempts += b.maxAttempts
	}
	for range attempts {
		var u string
		if w, u = c.pickWorker(time.Now().UnixNano()); w == nil {
			break
		}
		var st int
		if t, st = canonURL(u, c.args, c.hasArgs, c.nocanon, p.cfg.EncodedSlashes); st != 0 {
			return nil, t, nil, st
		}
		if (t.scheme == "https" || t.scheme == "wss") && p.tlsBack == nil {
			// Apache: "SSL Proxy requested ... but not enabled [Hint:
			// SSLProxyEngine]" (AH00961), 500.
			p.log.Warn("proxy: an https:// real server without SSLProxyEngine on", "worker", w.name)
			return nil, t, nil, http.StatusInternalServerError
		}
		bc, err := p.connect(w, &t)
		var he *handshakeError
		if errors.As(err, &he) {
			p.log.Warn("proxy: TLS to the real server failed", "worker", w.name, "err", err)
			return nil, t, nil, http.StatusBadGateway
		}
		if err == nil {
			return w, t, bc, 0
		}
		w.failures.Add(1)
		w.errUntil.Store(time.Now().Add(w.retry()).UnixNano())
		p.log.Warn("proxy: backend connect failed", "worker", w.name, "err", err)
	}
	return nil, t, nil, http.StatusServiceUnavailable
}

// pickWorker is the worker for c's next attempt and the URL to send it
// to, or nil when none is usable: a balancer's member (its lbmethod's
// pick) with the path after balancer://name, or the route's worker.
func (c *call) pickWorker(now int64) (*worker, string) {
	b := c.r.bal
	if b == nil {
		if !c.r.worker.usable(now) {
			return nil, ""
		}
		return c.r.worker, c.found
	}
	w := b.pick(now)
	if w == nil {
		return nil, ""
	}
	// balancer_fixup: member URL + the path after balancer://name.
	rest := c.found[len("balancer://"):]
	path := "/" // proxy_balancer_canon: balancer://name/
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		path = rest[i:]
	}
	return w, w.name + path
}

// dropsConnection is Apache's ap_status_drops_connection: the statuses
// after which it closes the client's connection.
func dropsConnection(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusRequestTimeout, http.StatusLengthRequired,
		http.StatusRequestEntityTooLarge, http.StatusRequestURITooLong, http.StatusInternalServerError,
		http.StatusServiceUnavailable, http.StatusNotImplemented:
		return true
	}
	return false
}

// refuse answers status without a real server; the connection goes on
// when Apache keeps it after that status and the request's body (if any)
// can be read past.
func (p *Proxy) refuse(cc *clientConn, req *h1.Request, status int, keep bool) bool {
	switch {
	case req.Chunked, dropsConnection(status):
		keep = false
	case req.Length > 0:
		keep = keep && drain(cc.br, req.Length)
	}
	if status >= 500 {
		p.log.Warn("proxy: request failed", "uri", req.Target, "status", status)
	}
	cc.fail(p, status, !keep)
	return keep
}

// route is what Apache decides from the request line: the route and the
// proxy URL, or the status it answers instead.
func (p *Proxy) route(req *h1.Request) (*call, int) {
	unparsed := req.Target
	if strings.IndexByte(unparsed, '#') >= 0 {
		// A fragment is no part of a request-target (RFC 9112 3.2):
		// Apache refuses it (ap_parse_uri) before any routing.
		return nil, http.StatusBadRequest
	}
	host := req.Get("Host")
	if !strings.HasPrefix(unparsed, "/") {
		// The absolute form: its path and query are the target, its
		// authority the host (RFC 9112 3.2.2).
		scheme, rest, ok := strings.Cut(unparsed, "://")
		if !ok || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
			return nil, http.StatusBadRequest
		}
		auth, pth, _ := strings.Cut(rest, "/")
		host, unparsed = auth, "/"+pth
		if i := strings.IndexByte(auth, '?'); i >= 0 {
			host, unparsed = auth[:i], "/"+auth[i:]
		}
	}
	path, args, hasArgs := strings.Cut(unparsed, "?")
	uri, st := requestPath(path, p.cfg.EncodedSlashes)
	if st != 0 {
		return nil, st
	}
	rt, found, nocanon := translate(p.routes, uri, unparsed)
	if rt == nil {
		return nil, http.StatusNotFound
	}
	c := &call{r: rt, found: found, args: args, hasArgs: hasArgs, nocanon: nocanon, host: host}
	// Check the URL now so that a bad mapping answers without a backend.
	if rt.bal == nil {
		if _, st := canonURL(found, args, hasArgs, nocanon, p.cfg.EncodedSlashes); st != 0 {
			return nil, st
		}
	}
	return c, 0
}

// checkRequest is what Apache checks of a request's head before it runs
// it (ap_check_request_header, LimitRequestBody).
func (p *Proxy) checkRequest(req *h1.Request) int {
	hosts := 0
	for i := range req.Fields {
		if strings.EqualFold(req.Fields[i].Name, "Host") {
			hosts++
		}
	}
	if hosts > 1 || hosts == 0 && req.Minor >= 1 {
		return http.StatusBadRequest
	}
	if e, ok := req.Values("Expect"); ok && (req.Minor >= 1 && !strings.EqualFold(e, "100-continue")) {
		return http.StatusExpectationFailed
	}
	if p.limits.Body > 0 && req.Length > p.limits.Body {
		return http.StatusRequestEntityTooLarge
	}
	return 0
}

// connect takes an idle connection to w, or opens one within the
// worker's connect timeout.
func (p *Proxy) connect(w *worker, t *target) (*backendConn, error) {
	if bc := w.pool.get(); bc != nil {
		return bc, nil
	}
	return p.dialBackend(context.Background(), w, t, p.connectTimeout(w))
}

// timeouts of a worker: for its response (timeout=, ProxyTimeout, the
// default) and its connection attempts (connectiontimeout=, else the
// response's, as in Apache).
func (p *Proxy) responseTimeout(w *worker) time.Duration {
	for _, d := range []time.Duration{w.w.Timeout, p.cfg.Timeout, p.opts.ResponseHeaderTimeout} {
		if d > 0 {
			return d
		}
	}
	return DefaultTimeout
}

func (p *Proxy) connectTimeout(w *worker) time.Duration {
	if d := w.w.ConnectTimeout; d > 0 {
		return d
	}
	if d := p.opts.ConnectTimeout; d > 0 {
		return d
	}
	return p.responseTimeout(w)
}

// exchange sends the request on bc and the response back. A reused
// connection that the real server closed before it answered is replaced
// once by a new one when the request has no body to send again.
func (p *Proxy) exchange(cc *clientConn, req *h1.Request, c *call, w *worker, t *target, bc *backendConn, keep bool) exchangeEnd {
	w.busy.Add(1)
	w.requests.Add(1)
	defer w.busy.Add(-1)
	timeout := p.responseTimeout(w)
	closeBackend := p.closesBackend(c, t)
	upgrade := ""
	if req.Upgrade {
		if u := req.Get("Upgrade"); u != "" && p.canUpgrade(c, u) {
			upgrade = u
		}
	}
	bodyless := req.Length <= 0 && !req.Chunked
	for {
		bc.dl.set(time.Now(), timeout)
		p.writeRequestHead(bc.bw, cc.remote, req, c, t, upgrade, closeBackend)
		err := bc.bw.Flush()
		sent := false
		if err == nil && !bodyless {
			if req.Minor >= 1 && strings.EqualFold(req.Get("Expect"), "100-continue") {
				cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
				if cc.bw.Flush() != nil {
					bc.c.Close()
					return clientGone
				}
			}
			sent = true
			var n int64
			n, err = p.sendBody(cc, req, bc)
			w.transferred.Add(n)
			if errors.Is(err, h1.ErrBodyTooLarge) || clientSide(err) {
				bc.c.Close()
				if errors.Is(err, h1.ErrBodyTooLarge) {
					cc.fail(p, http.StatusRequestEntityTooLarge, true)
					return answeredEnd
				}
				var he *h1.Error
				if errors.As(err, &he) {
					cc.fail(p, he.Status, true)
					return answeredEnd
				}
				return clientGone
			}
		}
		resp := &bc.resp
		if err == nil {
			err = h1.ReadResponse(bc.br, p.limits.Head, resp, req.Method)
			for err == nil && resp.Status/100 == 1 && resp.Status != http.StatusSwitchingProtocols {
				// An interim response goes on to an HTTP/1.1 client (100, 103).
				if req.Minor >= 1 {
					p.writeResponseHead(cc, req, resp, c, true, false)
					if cc.bw.Flush() != nil {
						bc.c.Close()
						return clientGone
					}
				}
				err = h1.ReadResponse(bc.br, p.limits.Head, resp, req.Method)
			}
		}
		if err != nil {
			bc.c.Close()
			if bc.reused && !sent && bodyless && stale(err) {
				nbc, derr := p.dialBackend(context.Background(), w, t, p.connectTimeout(w))
				if derr == nil {
					bc = nbc
					continue
				}
				err = derr
			}
			status := http.StatusBadGateway
			var ce *connectError
			if errors.As(err, &ce) {
				status = http.StatusServiceUnavailable
			}
			// Apache 2.4 answers 502 to a response head that timed out
			// (mod_proxy_http, AH01102), not 504: the differential test
			// shows it.
			p.log.Warn("proxy: request failed", "uri", req.Target, "worker", w.name, "status", status, "err", err)
			if req.Chunked || req.Length > 0 && !sent || dropsConnection(status) || !keep {
				cc.fail(p, status, true)
				return answeredEnd
			}
			cc.fail(p, status, false)
			return answered
		}
		return p.respond(cc, req, resp, c, w, bc, keep, closeBackend, upgrade != "")
	}
}

// closesBackend tells whether the worker Apache would serve this URL with
// (its table's longest match) reuses no connection: a ProxyPassMatch
// worker with a $N asks the real server to close.
func (p *Proxy) closesBackend(c *call, t *target) bool {
	if c.r.bal != nil || p.apache == nil {
		return false
	}
	aw := findWorker(p.apache, t.scheme+"://"+t.hostHeader()+t.uri, true, true)
	return aw != nil && !aw.reuse
}

// stale tells whether a failure on a reused connection is the real server
// having closed it (nothing of a response came).
func stale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		isErrno(err, "connection reset") || isErrno(err, "broken pipe")
}

func isErrno(err error, text string) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && strings.Contains(oe.Err.Error(), text)
}

// clientError marks a failure on the client's side of a body copy.
type clientError struct{ err error }

func (e *clientError) Error() string { return "client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

func clientSide(err error) bool {
	var ce *clientError
	return errors.As(err, &ce)
}

// sendBody copies the request body to the real server, within
// LimitRequestBody and mod_reqtimeout's body rate; it returns the bytes
// sent. Failures reading the client come back as *clientError.
func (p *Proxy) sendBody(cc *clientConn, req *h1.Request, bc *backendConn) (int64, error) {
	lim := &p.limits
	cc.rc.timeout(lim.BodyTimeout, 0, lim.BodyMinRate)
	if req.Chunked {
		limit := int64(-1)
		if lim.Body > 0 {
			limit = lim.Body
		}
		n, err := h1.CopyChunked(bc.bw, cc.br, limit, lim.Head)
		if err == nil {
			err = bc.bw.Flush()
		} else if !errors.Is(err, h1.ErrBodyTooLarge) && !isWrite(err) {
			err = &clientError{err}
		}
		return n, err
	}
	n, err := copyN(bc.bw, bc.tcp, &bc.dl, cc.br, cc.tcp, &cc.dl, req.Length, lim.BodyTimeout, lim.BodyMinRate, true)
	if err == nil {
		err = bc.bw.Flush()
	}
	return n, err
}

// writeError marks a failure writing to the other side in copyN.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func isWrite(err error) bool {
	var we *writeError
	return errors.As(err, &we)
}

// copyN copies n bytes from src to dst: what src has buffered through
// dst, the rest spliced socket to socket when both are kernel sockets and
// the rest is large, else through dst as it arrives. Every piece has its
// own deadline (timeout, plus what minRate allows for it). Read failures
// are *clientError when readIsClient.
func copyN(dst *bufio.Writer, dstTCP *net.TCPConn, dstDL *deadlines, src *bufio.Reader, srcTCP *net.TCPConn, srcDL *deadlines, n int64, timeout time.Duration, minRate int, readIsClient bool) (int64, error) {
	const piece = 1 << 20
	readErr := func(err error) error {
		if readIsClient {
			return &clientError{err}
		}
		return err
	}
	var done int64
	for done < n {
		if src.Buffered() > 0 || dstTCP == nil || srcTCP == nil || n-done < 64<<10 {
			if src.Buffered() == 0 {
				if _, err := src.Peek(1); err != nil {
					return done, readErr(h1NoEOF(err))
				}
			}
			b, _ := src.Peek(int(min(int64(src.Buffered()), n-done)))
			if _, err := dst.Write(b); err != nil {
				return done, &writeError{err}
			}
			src.Discard(len(b))
			done += int64(len(b))
			if src.Buffered() == 0 && done < n {
				if err := dst.Flush(); err != nil {
					return done, &writeError{err}
				}
			}
			continue
		}
		if err := dst.Flush(); err != nil {
			return done, &writeError{err}
		}
		k := min(n-done, piece)
		d := timeout
		if minRate > 0 {
			d += time.Duration(k) * time.Second / time.Duration(minRate)
		}
		now := time.Now()
		srcDL.setReadAt(now.Add(d))
		dstDL.setWriteAt(now.Add(d))
		m, err := dstTCP.ReadFrom(&io.LimitedReader{R: srcTCP, N: k})
		done += m
		if err != nil {
			return done, &writeError{err}
		}
		if m < k {
			return done, readErr(io.ErrUnexpectedEOF)
		}
	}
	return done, nil
}

func h1NoEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeRequestHead writes the request as mod_proxy_http sends it
// (ap_proxy_create_hdrbrgd): the client's fields but the hop-by-hop ones,
// Host, X-Forwarded-*, Connection: Keep-Alive (close for a worker that
// reuses none; Upgrade when one passes), and the body's framing.
func (p *Proxy) writeRequestHead(b *bufio.Writer, remote string, req *h1.Request, c *call, t *target, upgrade string, closeBackend bool) {
	b.WriteString(req.Method)
	b.WriteByte(' ')
	b.WriteString(t.uri)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	if p.cfg.PreserveHost && c.host != "" {
		b.WriteString(c.host)
	} else {
		b.WriteString(t.hostHeader())
	}
	b.WriteString("\r\n")
	add := !p.cfg.NoAddHeaders
	for i := range req.Fields {
		f := &req.Fields[i]
		if req.Hop(f.Name) || strings.EqualFold(f.Name, "Host") || strings.EqualFold(f.Name, "Expect") ||
			add && (strings.EqualFold(f.Name, "X-Forwarded-For") || strings.EqualFold(f.Name, "X-Forwarded-Host") ||
				strings.EqualFold(f.Name, "X-Forwarded-Server")) {
			continue
		}
		writeField(b, f.Name, f.Value)
	}
	if add {
		// apr_table_mergen: what the client sent, then this hop's value.
		mergeField(b, req, "X-Forwarded-For", remote)
		if c.host != "" {
			mergeField(b, req, "X-Forwarded-Host", c.host)
		}
		name := p.cfg.ServerName
		if name == "" {
			name = p.opts.ServerName
		}
		mergeField(b, req, "X-Forwarded-Server", name)
	}
	switch {
	case upgrade != "":
		b.WriteString("Connection: Upgrade\r\n")
		writeField(b, "Upgrade", upgrade)
	case closeBackend:
		b.WriteString("Connection: close\r\n")
	default:
		// mod_proxy_http asks every real server to keep the connection,
		// whatever the client asked of it.
		b.WriteString("Connection: Keep-Alive\r\n")
	}
	switch {
	case req.Chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case req.Length >= 0:
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.FormatInt(req.Length, 10))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
}

func writeField(b *bufio.Writer, name, value string) {
	b.WriteString(name)
	b.WriteString(": ")
	b.WriteString(value)
	b.WriteString("\r\n")
}

func mergeField(b *bufio.Writer, req *h1.Request, name, v string) {
	if prior, ok := req.Values(name); ok {
		v = prior + ", " + v
	}
	writeField(b, name, v)
}

// respond passes the response on: its head (hop-by-hop fields dropped,
// ProxyPassReverse applied, framing for the client), its body, and the
// connection to the pool when it can carry another request.
func (p *Proxy) respond(cc *clientConn, req *h1.Request, resp *h1.Response, c *call, w *worker, bc *backendConn, keep, closeBackend, upgrading bool) exchangeEnd {
	if resp.Status == http.StatusSwitchingProtocols {
		if !upgrading {
			bc.c.Close()
			cc.fail(p, http.StatusBadGateway, true)
			return answeredEnd
		}
		p.writeResponseHead(cc, req, resp, c, true, false)
		cc.f.responses.add(resp.Status, false)
		if cc.bw.Flush() != nil {
			bc.c.Close()
			return clientGone
		}
		tunnel(cc, bc)
		return clientGone
	}
	// A body that runs to the close goes on chunked to an HTTP/1.1 client
	// (which can keep its connection), as is to an HTTP/1.0 one.
	rechunk := resp.UntilClose && req.Minor >= 1
	if resp.UntilClose && !rechunk || cc.f.draining.Load() {
		keep = false // Front.Shutdown may have come while the real server worked
	}
	p.writeResponseHead(cc, req, resp, c, keep, rechunk)
	cc.f.responses.add(resp.Status, false)
	now := time.Now()
	cc.dl.setWrite(now, p.limits.Timeout)
	timeout := p.responseTimeout(w)
	bc.dl.setRead(now, timeout)
	var n int64
	var err error
	switch {
	case resp.Chunked:
		n, err = h1.CopyChunked(cc.bw, bc.br, -1, p.limits.Head)
	case resp.UntilClose:
		n, err = copyToClose(cc.bw, bc.br, rechunk)
	case resp.Length > 0:
		n, err = copyN(cc.bw, cc.tcp, &cc.dl, bc.br, bc.tcp, &bc.dl, resp.Length, timeout, 0, false)
	}
	w.read.Add(n)
	if err == nil {
		err = cc.bw.Flush()
	}
	if err != nil {
		bc.c.Close()
		if !isWrite(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
			p.log.Warn("proxy: response body", "uri", req.Target, "worker", w.name, "err", err)
		}
		return clientGone
	}
	if resp.Close || resp.UntilClose || closeBackend || resp.Minor == 0 && !resp.KeepAlive {
		bc.c.Close()
	} else {
		w.pool.put(bc)
	}
	if !keep {
		return clientGone
	}
	return done
}

// copyToClose copies a body that ends with the connection (copyFlushing),
// chunked when rechunk.
func copyToClose(dst *bufio.Writer, src *bufio.Reader, rechunk bool) (int64, error) {
	flush := func() error {
		if err := dst.Flush(); err != nil {
			return &writeError{err}
		}
		return nil
	}
	if !rechunk {
		return copyFlushing(writeMarked{dst}, src, -1, flush)
	}
	n, err := copyFlushing(writeMarked{chunkWriter{dst}}, src, -1, flush)
	if err == nil {
		_, err = dst.WriteString("0\r\n\r\n")
	}
	return n, err
}

// chunkWriter writes each Write as one chunk.
type chunkWriter struct{ w *bufio.Writer }

func (c chunkWriter) Write(b []byte) (int, error) {
	c.w.WriteString(strconv.FormatInt(int64(len(b)), 16))
	c.w.WriteString("\r\n")
	c.w.Write(b)
	_, err := c.w.WriteString("\r\n")
	return len(b), err
}

// writeMarked marks its writer's failures as writeError (the client's
// side), so that a caller tells them from the real server's.
type writeMarked struct{ w io.Writer }

func (m writeMarked) Write(b []byte) (int, error) {
	n, err := m.w.Write(b)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// writeResponseHead writes the status line and fields of resp for the
// client: Apache's reason phrases, the real server's fields but the
// hop-by-hop ones (and those its Connection names), Location,
// Content-Location and URI mapped by ProxyPassReverse, a Date, the
// framing, and Connection: close when the client's connection ends here
// (keep-alive for an HTTP/1.0 client that asked for it).
func (p *Proxy) writeResponseHead(cc *clientConn, req *h1.Request, resp *h1.Response, c *call, keep, rechunk bool) {
	p.writeResponseHeadTo(cc.bw, cc.f, req, resp, c, keep, rechunk)
}

// writeResponseHeadTo is writeResponseHead into b, for a client of f.
func (p *Proxy) writeResponseHeadTo(b *bufio.Writer, f *Front, req *h1.Request, resp *h1.Response, c *call, keep, rechunk bool) {
	b.WriteString("HTTP/1.1 ")
	if text := http.StatusText(resp.Status); text != "" {
		b.WriteString(strconv.Itoa(resp.Status))
		b.WriteByte(' ')
		b.WriteString(text)
	} else {
		b.WriteString(strconv.Itoa(resp.Status))
		b.WriteByte(' ')
		b.WriteString(resp.Reason)
	}
	b.WriteString("\r\n")
	hasDate := false
	var self string
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if resp.Status == http.StatusSwitchingProtocols && strings.EqualFold(f.Name, "Upgrade") {
			writeField(b, f.Name, f.Value)
			continue
		}
		v, ok := p.passOn(resp, f, c, &self)
		if !ok {
			continue
		}
		hasDate = hasDate || strings.EqualFold(f.Name, "Date")
		writeField(b, f.Name, v)
	}
	if !hasDate {
		b.WriteString(f.dateField())
	}
	switch {
	case resp.Status == http.StatusSwitchingProtocols:
		b.WriteString("Connection: Upgrade\r\n\r\n")
		return
	case resp.Status/100 == 1:
		b.WriteString("\r\n")
		return
	case resp.Chunked || rechunk:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case resp.Length > 0 || resp.Length == 0 && req.Method != "HEAD" && resp.Status != http.StatusNotModified && resp.Status != http.StatusNoContent:
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.FormatInt(resp.Length, 10))
		b.WriteString("\r\n")
	default:
		// HEAD and 304 carry the length the body would have.
		if v := resp.Get("Content-Length"); v != "" && resp.Status != http.StatusNoContent {
			writeField(b, "Content-Length", v)
		}
	}
	if !keep {
		b.WriteString("Connection: close\r\n")
	} else if req.Minor == 0 {
		b.WriteString("Connection: keep-alive\r\n")
	}
	b.WriteString("\r\n")
}

// passOn is the value field f of resp goes on to the client with, and
// whether it goes on: hop-by-hop fields (and those Connection names) stay
// behind, Location, Content-Location and URI are mapped by
// ProxyPassReverse. self keeps the front end's URL once it is made.
func (p *Proxy) passOn(resp *h1.Response, f *h1.Field, c *call, self *string) (string, bool) {
	if resp.Hop(f.Name) {
		return "", false
	}
	v := f.Value
	if len(p.cfg.Reverse) > 0 && (strings.EqualFold(f.Name, "Location") || strings.EqualFold(f.Name, "Content-Location") || strings.EqualFold(f.Name, "URI")) {
		if *self == "" {
			*self = "http://" + selfHost(c.host)
		}
		v = reverseMap(p.cfg.Reverse, p.balancers, v, *self)
	}
	return v, true
}

// tunnel copies both ways between an upgraded client connection and its
// real server until both directions end, then closes the real server's
// side (the caller closes the client's).
func tunnel(cc *clientConn, bc *backendConn) {
	cc.dl.clear()
	bc.dl.clear()
	up := make(chan struct{})
	go func() {
		defer close(up)
		if n := cc.br.Buffered(); n > 0 {
			b, _ := cc.br.Peek(n)
			bc.c.Write(b)
			cc.br.Discard(n)
		}
		io.Copy(bc.c, cc.c)
		closeWrite(bc.c)
	}()
	if n := bc.br.Buffered(); n > 0 {
		b, _ := bc.br.Peek(n)
		cc.c.Write(b)
		bc.br.Discard(n)
	}
	io.Copy(cc.c, bc.c)
	closeWrite(cc.c)
	<-up
	bc.c.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}

// errorPage is Apache's error document for status.
func (p *Proxy) errorPage(status int) string {
	text := http.StatusText(status)
	return fmt.Sprintf("<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>%d %s</title>\n</head><body>\n<h1>%s</h1>\n<hr>\n<address>vsgate at %s</address>\n</body></html>\n",
		status, text, html.EscapeString(text), html.EscapeString(p.opts.ServerName))
}

// statusLine is "CODE Reason".
func statusLine(status int) string { return strconv.Itoa(status) + " " + http.StatusText(status) }

func itoa(n int) string { return strconv.Itoa(n) }
