package proxy

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/vsgate/vsgate/proxy/h1"
	"golang.org/x/net/http2"
)

// serveH2 serves an HTTP/2 client (ALPN h2 on TLS) with x/net/http2's
// server, mod_http2's limits (H2MaxSessionStreams; the header list within
// LimitRequestFields fields of LimitRequestFieldSize; KeepAliveTimeout
// for an idle connection), each stream forwarded as HTTP/1.1 to a real
// server by the same routing and backend code as the HTTP/1.1 front.
func (f *Front) serveH2(cc *clientConn) {
	p := f.cur.Load()
	lim := &p.limits
	h2 := &http2.Server{MaxConcurrentStreams: uint32(lim.H2Streams), IdleTimeout: lim.KeepAliveTimeout}
	base := &http.Server{
		MaxHeaderBytes: min(lim.Head.FieldSize*min(lim.Head.Fields, 1000), 1<<20),
		ErrorLog:       slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
	}
	// ConfigureServer ties h2's connections to base, whose Shutdown
	// (Front.Shutdown calls it) sends them GOAWAY: the streams running
	// finish, no new one starts, and the connection ends.
	if err := http2.ConfigureServer(base, h2); err != nil {
		f.log.Warn("proxy: HTTP/2", "err", err)
		return
	}
	if !f.trackH2(cc.c, base) {
		return // the front is shutting down
	}
	defer f.untrackH2(cc.c)
	h2.ServeConn(cc.c, &http2.ServeConnOpts{BaseConfig: base, Handler: h2Handler{f: f, remote: cc.remote}})
}

// trackH2 notes an HTTP/2 connection's server, for Shutdown; false once
// the front is shutting down or closed.
func (f *Front) trackH2(c net.Conn, base *http.Server) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.draining.Load() {
		return false
	}
	f.h2[c] = base
	return true
}

func (f *Front) untrackH2(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.h2, c)
}

// h2Handler forwards one HTTP/2 stream.
type h2Handler struct {
	f      *Front
	remote string
}

func (h h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	defer func() { h.f.durations.observe(time.Since(began)) }()
	p := h.f.cur.Load()
	req := &h1.Request{Method: r.Method, Target: r.RequestURI, Proto: "HTTP/2.0"}
	req.Major, req.Minor, req.Length = 2, 1, r.ContentLength
	if r.Host != "" {
		req.Fields = append(req.Fields, h1.Field{Name: "Host", Value: r.Host})
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Fields = append(req.Fields, h1.Field{Name: k, Value: v})
		}
	}
	switch {
	case req.Length < 0:
		// A stream without content-length: its DATA go on chunked.
		req.Chunked = r.Body != nil && r.Body != http.NoBody
	case req.Length == 0 && r.Method != "POST" && r.Method != "PUT" && r.Method != "PATCH":
		req.Length = -1 // no body, and no Content-Length: 0 for a GET
	}
	c, status := p.route(req)
	if status == 0 {
		status = p.checkRequest(req)
	}
	var w0 *worker
	var t target
	var bc *backendConn
	if status == 0 {
		w0, t, bc, status = p.reach(c)
	}
	if status != 0 {
		h2Fail(h.f, p, w, status)
		return
	}
	p.exchangeH2(h.f, w, r, req, c, w0, &t, bc, h.remote)
}

// h2Fail answers status with Apache's error page.
func h2Fail(f *Front, p *Proxy, w http.ResponseWriter, status int) {
	f.responses.add(status, true)
	body := p.errorPage(status)
	w.Header().Set("Content-Type", "text/html; charset=iso-8859-1")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// exchangeH2 sends one stream's request to the real server on bc and its
// response back on the stream. A failure after the response began resets
// the stream (http.ErrAbortHandler).
func (p *Proxy) exchangeH2(f *Front, w http.ResponseWriter, r *http.Request, req *h1.Request, c *call, wk *worker, t *target, bc *backendConn, remote string) {
	wk.busy.Add(1)
	wk.requests.Add(1)
	defer wk.busy.Add(-1)
	timeout := p.responseTimeout(wk)
	closeBackend := p.closesBackend(c, t)
	bc.dl.set(time.Now(), timeout)
	p.writeRequestHead(bc.bw, remote, req, c, t, "", closeBackend)
	var err error
	var sent int64
	switch {
	case req.Length > 0:
		sent, err = io.CopyN(bc.bw, r.Body, req.Length)
	case req.Chunked:
		sent, err = writeChunked(bc.bw, r.Body, p.limits.Body)
	}
	wk.transferred.Add(sent)
	if err == nil {
		err = bc.bw.Flush()
	}
	resp := &bc.resp
	if err == nil {
		err = h1.ReadResponse(bc.br, p.limits.Head, resp, req.Method)
		for err == nil && resp.Status/100 == 1 {
			err = h1.ReadResponse(bc.br, p.limits.Head, resp, req.Method)
		}
	}
	if err != nil {
		bc.c.Close()
		status := http.StatusBadGateway
		if errors.Is(err, h1.ErrBodyTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		p.log.Warn("proxy: request failed", "uri", req.Target, "worker", wk.name, "status", status, "err", err)
		h2Fail(f, p, w, status)
		return
	}
	var self string
	hdr := w.Header()
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if v, ok := p.passOn(resp, f, c, &self); ok {
			hdr[http.CanonicalHeaderKey(f.Name)] = append(hdr[http.CanonicalHeaderKey(f.Name)], v)
		}
	}
	if resp.Length >= 0 && !resp.Chunked {
		if v := resp.Get("Content-Length"); v != "" && (req.Method == "HEAD" || resp.Status == http.StatusNotModified) {
			hdr.Set("Content-Length", v)
		} else if resp.Length > 0 || resp.Status != http.StatusNoContent && resp.Status != http.StatusNotModified {
			hdr.Set("Content-Length", strconv.FormatInt(resp.Length, 10))
		}
	}
	w.WriteHeader(resp.Status)
	f.responses.add(resp.Status, false)
	rc := http.NewResponseController(w)
	flush := func() error { return rc.Flush() }
	bc.dl.setRead(time.Now(), timeout)
	var n int64
	switch {
	case resp.Chunked:
		n, err = h1.Dechunk(w, bc.br, -1, p.limits.Head, flush)
	case resp.UntilClose:
		n, err = copyFlushing(w, bc.br, -1, flush)
	case resp.Length > 0:
		n, err = copyFlushing(w, bc.br, resp.Length, flush)
	}
	wk.read.Add(n)
	if err != nil {
		bc.c.Close()
		panic(http.ErrAbortHandler)
	}
	if resp.Close || resp.UntilClose || closeBackend || resp.Minor == 0 && !resp.KeepAlive {
		bc.c.Close()
	} else {
		wk.pool.put(bc)
	}
}

// copyFlushing copies n bytes (all, to EOF, when n < 0) from src to dst,
// flushing whenever src has nothing more buffered.
func copyFlushing(dst io.Writer, src *bufio.Reader, n int64, flush func() error) (int64, error) {
	var done int64
	for n < 0 || done < n {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				if err == io.EOF && n < 0 {
					return done, nil
				}
				return done, h1NoEOF(err)
			}
		}
		k := src.Buffered()
		if n >= 0 {
			k = int(min(int64(k), n-done))
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return done, err
		}
		src.Discard(k)
		done += int64(k)
		if src.Buffered() == 0 {
			if err := flush(); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// writeChunked sends body chunked, within limit (0: none).
func writeChunked(dst *bufio.Writer, body io.Reader, limit int64) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := body.Read(buf)
		if k > 0 {
			if n += int64(k); limit > 0 && n > limit {
				return n, h1.ErrBodyTooLarge
			}
			dst.WriteString(strconv.FormatInt(int64(k), 16))
			dst.WriteString("\r\n")
			dst.Write(buf[:k])
			if _, werr := dst.WriteString("\r\n"); werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			_, err = dst.WriteString("0\r\n\r\n")
			return n, err
		}
		if err != nil {
			return n, err
		}
	}
}
