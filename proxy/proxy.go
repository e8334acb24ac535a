package proxy

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the settings that do not come from the directives. The zero
// value is usable: server name "localhost", net.Dialer, Apache's timeouts.
type Options struct {
	// ServerName is Apache's ServerName: the value of X-Forwarded-Server.
	ServerName string
	// ConnectTimeout bounds a connection attempt to a backend when the
	// worker has no connectiontimeout=; 0 means the response timeout, as
	// in Apache.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response
	// headers when neither timeout= nor ProxyTimeout is given; 0 means
	// DefaultTimeout.
	ResponseHeaderTimeout time.Duration
	// DialContext, if set, opens connections to backends (the gateway
	// dials from its namespace). It must honour ctx's deadline.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdleConnsPerHost is the keep-alive pool size per backend; 0
	// means 64.
	MaxIdleConnsPerHost int
	// Logger receives errors; nil means slog.Default().
	Logger *slog.Logger
}

// MemberInfo is a snapshot of one worker (a BalancerMember or the target
// of a plain ProxyPass) for metrics and `vsgate adm`.
type MemberInfo struct {
	Balancer   string // balancer name, "" for a plain ProxyPass worker
	URL        string // worker name as Apache prints it
	Addr       string // host:port dialled
	LoadFactor int    // times 100
	Down       bool   // marked down by SetMemberDown (health check)
	InError    bool   // resting after a failed connection (retry=)
	Busy       int64  // requests in flight
	Requests   uint64 // requests sent
	Failures   uint64 // connection failures
}

// Proxy is the HTTP reverse proxy built from a Config. Create it with New.
// All methods are safe for concurrent use; ServeHTTP may run in any
// number of goroutines. The zero value is not usable.
type Proxy struct {
	opts      Options
	cfg       Config // copy; Routes and Reverse are read-only
	routes    []*route
	balancers map[string]*balancer
	workers   []*worker
	apache    []apacheWorker // Apache's worker table, for what its worker decides (connection reuse); nil when every worker reuses
	rp        *httputil.ReverseProxy
	transport *http.Transport
	log       *slog.Logger

	mu      sync.Mutex
	servers []*http.Server
	closed  bool
}

// copyBuffers lends ReverseProxy the 32 KiB buffers it copies response
// bodies through; without a pool it allocates and clears one per request
// (7% of the L7 gateway's CPU in a Go profile under keep-alive).
type copyBuffers struct{ pool sync.Pool }

func (c *copyBuffers) Get() []byte {
	if b, ok := c.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (c *copyBuffers) Put(b []byte) { c.pool.Put(&b) }

type route struct {
	Route
	worker *worker   // plain URL targets
	bal    *balancer // balancer targets
}

// worker is one backend URL with its state. lbstatus is guarded by the
// balancer's mutex; the rest is atomic.
type worker struct {
	name     string // Apache's worker name (scheme://host[:port]/path)
	bal      string
	addr     string // host:port
	ap       netip.AddrPort
	w        Worker
	lbfactor int64

	lbstatus int64

	down        atomic.Bool
	errUntil    atomic.Int64 // unix nanoseconds; in error before this
	busy        atomic.Int64
	requests    atomic.Uint64
	failures    atomic.Uint64
	transferred atomic.Int64
	read        atomic.Int64
}

func (w *worker) usable(now int64) bool {
	return !w.down.Load() && !w.w.Disabled && now >= w.errUntil.Load()
}

func (w *worker) retry() time.Duration {
	switch {
	case w.w.Retry < 0:
		return 0
	case w.w.Retry == 0:
		return DefaultRetry
	}
	return w.w.Retry
}

type balancer struct {
	name        string
	method      string
	maxAttempts int
	noFailover  bool
	members     []*worker

	mu sync.Mutex // guards members' lbstatus
}

// New builds a proxy from cfg.
func New(cfg *Config, opts Options) (*Proxy, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	if opts.MaxIdleConnsPerHost == 0 {
		opts.MaxIdleConnsPerHost = 64
	}
	p := &Proxy{opts: opts, cfg: *cfg, balancers: map[string]*balancer{}, log: opts.Logger}
	if p.log == nil {
		p.log = slog.Default()
	}
	for _, bc := range cfg.Balancers {
		b := &balancer{name: bc.Name, method: bc.LBMethod, maxAttempts: bc.MaxAttempts, noFailover: bc.NoFailover}
		if b.method == "" {
			b.method = "byrequests"
		}
		for _, m := range bc.Members {
			w, err := newWorker(m.URL, bc.Name, m.Worker)
			if err != nil {
				return nil, fmt.Errorf("proxy: %s: BalancerMember %s: %w", m.Pos, m.URL, err)
			}
			b.members = append(b.members, w)
			p.workers = append(p.workers, w)
		}
		// Members start with lbstatus 0: Apache's recalc_factors (start at
		// lbfactor) runs only from balancer-manager edits.
		if b.maxAttempts < 0 {
			b.maxAttempts = max(len(b.members)-1, 0)
		}
		p.balancers[b.name] = b
	}
	// Kept only when one of its workers reuses no connection: otherwise
	// no request needs the lookup (send).
	if ws := defineWorkers(cfg.Routes); slices.ContainsFunc(ws, func(w apacheWorker) bool { return !w.reuse }) {
		p.apache = ws
	}
	shared := map[string]*worker{}
	for i := range cfg.Routes {
		r := &route{Route: cfg.Routes[i]}
		p.routes = append(p.routes, r)
		switch {
		case r.Exclude():
		case r.Balancer != "":
			if r.bal = p.balancers[r.Balancer]; r.bal == nil || len(r.bal.members) == 0 {
				return nil, fmt.Errorf("proxy: %s: balancer://%s has no members: %w", r.Pos, r.Balancer, ErrDirective)
			}
		default:
			u := r.URL
			if r.Regex != nil {
				u = u[:strings.IndexByte(u, ':')+3] + hostOf(u)
			}
			name := workerName(u)
			if w := shared[name]; w != nil {
				r.worker = w // Apache shares the worker; the first one's parameters win
				continue
			}
			w, err := newWorker(u, "", r.Worker)
			if err != nil {
				return nil, fmt.Errorf("proxy: %s: %s: %w", r.Pos, r.URL, err)
			}
			shared[name] = w
			r.worker = w
			p.workers = append(p.workers, w)
		}
	}
	dialer := opts.DialContext
	if dialer == nil {
		var d net.Dialer
		dialer = d.DialContext
	}
	p.transport = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			c, err := dialer(ctx, network, addr)
			if err != nil {
				return nil, &connectError{addr: addr, err: err}
			}
			return c, nil
		},
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: opts.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: roundTripper{p},
		// Flush what the backend sent at most 10 ms later. Not -1 (after
		// every write): httputil then flushes the headers from a timer
		// goroutine at once, so every response left as two TCP segments
		// (two netstack sends, two device writes) and cost a goroutine —
		// 27% of the L7 gateway's CPU under keep-alive. Streaming
		// responses (chunked, or text/event-stream) are flushed after
		// every write all the same (ReverseProxy's own rule), and a slow
		// backend's bytes wait at most 10 ms, as Apache passes on what it
		// has when a read from the backend would block.
		FlushInterval:  10 * time.Millisecond,
		ErrorHandler:   p.errorHandler,
		ModifyResponse: p.modifyResponse,
		BufferPool:     &copyBuffers{},
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

func hostOf(u string) string {
	_, rest, _ := strings.Cut(u, "://")
	h, _, _ := strings.Cut(rest, "/")
	return h
}

func newWorker(u, bal string, params Worker) (*worker, error) {
	t, st := canonURL(u, "", false, false, SlashesOff)
	if st != 0 {
		return nil, fmt.Errorf("bad URL: %w", ErrDirective)
	}
	w := &worker{name: workerName(u), bal: bal, addr: t.hostPort(), w: params, lbfactor: int64(params.LoadFactor)}
	if w.lbfactor == 0 {
		w.lbfactor = 100
	}
	if a, err := netip.ParseAddrPort(w.addr); err == nil {
		w.ap = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return w, nil
}

// SetMemberDown marks every worker whose address is addr down (true) or up
// (false), as the health checker decides; a down worker gets no requests.
// Workers named by host name are matched by SetMemberDownName.
func (p *Proxy) SetMemberDown(addr netip.AddrPort, down bool) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	for _, w := range p.workers {
		if w.ap == addr {
			w.down.Store(down)
		}
	}
}

// SetMemberDownName is SetMemberDown for a "host:port" as written in the
// directives (lower case host).
func (p *Proxy) SetMemberDownName(hostport string, down bool) {
	for _, w := range p.workers {
		if strings.EqualFold(w.addr, hostport) {
			w.down.Store(down)
		}
	}
}

// Members returns a snapshot of every worker, balancer members first in
// configuration order.
func (p *Proxy) Members() []MemberInfo {
	now := time.Now().UnixNano()
	out := make([]MemberInfo, 0, len(p.workers))
	for _, w := range p.workers {
		out = append(out, MemberInfo{
			Balancer: w.bal, URL: w.name, Addr: w.addr, LoadFactor: int(w.lbfactor),
			Down: w.down.Load(), InError: now < w.errUntil.Load(), Busy: w.busy.Load(),
			Requests: w.requests.Load(), Failures: w.failures.Load(),
		})
	}
	return out
}

// Serve accepts HTTP/1.1 connections on ln until Close; it returns
// http.ErrServerClosed after Close.
func (p *Proxy) Serve(ln net.Listener) error {
	s := &http.Server{Handler: p, ReadHeaderTimeout: 60 * time.Second, IdleTimeout: 5 * time.Minute,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return http.ErrServerClosed
	}
	p.servers = append(p.servers, s)
	p.mu.Unlock()
	return s.Serve(ln)
}

// Close stops every Serve loop, closes their connections and the idle
// backend connections.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ss := p.servers
	p.servers = nil
	p.mu.Unlock()
	var err error
	for _, s := range ss {
		err = errors.Join(err, s.Close())
	}
	p.transport.CloseIdleConnections()
	return err
}

// call is one request's routing decision, carried in its context.
type call struct {
	r       *route
	found   string // proxy URL after translation
	args    string
	hasArgs bool
	nocanon bool
	host    string  // the client's Host header
	w       *worker // the worker used for the last attempt
	status  int     // error status decided by the round tripper
}

type callKey struct{}
type connectTimeoutKey struct{}

// connectError is a failure to connect to a backend: Apache answers 503
// and puts the worker in error state.
type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string { return "connect to " + e.addr + ": " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

var errHeaderTimeout = errors.New("timeout awaiting response headers")

// ServeHTTP routes one request as Apache's mod_proxy would.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	unparsed := r.RequestURI
	if strings.IndexByte(unparsed, '#') >= 0 {
		// A fragment is no part of a request-target (RFC 9112 3.2):
		// Apache refuses it (ap_parse_uri) before any routing.
		p.fail(w, http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(unparsed, "/") {
		if r.URL.IsAbs() {
			unparsed = r.URL.RequestURI()
		} else {
			p.fail(w, http.StatusBadRequest)
			return
		}
	}
	path, args, hasArgs := strings.Cut(unparsed, "?")
	uri, st := requestPath(path, p.cfg.EncodedSlashes)
	if st != 0 {
		p.fail(w, st)
		return
	}
	rt, found, nocanon := translate(p.routes, uri, unparsed)
	if rt == nil {
		p.fail(w, http.StatusNotFound)
		return
	}
	c := &call{r: rt, found: found, args: args, hasArgs: hasArgs, nocanon: nocanon, host: r.Host}
	// Check the URL now so that a bad mapping answers without a backend.
	if rt.bal == nil {
		if _, st := canonURL(found, args, hasArgs, nocanon, p.cfg.EncodedSlashes); st != 0 {
			p.fail(w, st)
			return
		}
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

// rewrite sets the headers Apache sets (ap_proxy_create_hdrbrgd).
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	c := in.Context().Value(callKey{}).(*call)
	if !p.cfg.NoAddHeaders {
		ip, _, err := net.SplitHostPort(in.RemoteAddr)
		if err != nil {
			ip = in.RemoteAddr
		}
		mergeHeader(out.Header, in.Header, "X-Forwarded-For", ip)
		if in.Host != "" {
			mergeHeader(out.Header, in.Header, "X-Forwarded-Host", in.Host)
		}
		name := p.cfg.ServerName
		if name == "" {
			name = p.opts.ServerName
		}
		mergeHeader(out.Header, in.Header, "X-Forwarded-Server", name)
	} else {
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := in.Header[h]; ok {
				out.Header[h] = v
			}
		}
	}
	if v, ok := in.Header["Forwarded"]; ok {
		out.Header["Forwarded"] = v
	}
	if out.Header.Get("Upgrade") != "" && !p.canUpgrade(c, out.Header.Get("Upgrade")) {
		out.Header.Del("Upgrade")
		out.Header.Del("Connection")
	}
	if out.Header.Get("Upgrade") == "" {
		// mod_proxy_http asks every real server to keep the connection
		// (ap_proxy_create_hdrbrgd), whatever the client asked of it; an
		// upgrade's Connection is the reverse proxy's.
		out.Header["Connection"] = []string{"Keep-Alive"}
	}
	if _, ok := in.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // do not add Go's
	}
}

// canUpgrade is ap_proxy_worker_can_upgrade: upgrade= lists the protocols
// ("*" for any); ws:// and wss:// default to WebSocket; plain http:// passes
// no Upgrade.
func (p *Proxy) canUpgrade(c *call, proto string) bool {
	var params Worker
	var scheme string
	if c.r.bal != nil {
		if len(c.r.bal.members) > 0 {
			params = c.r.bal.members[0].w
			scheme, _, _ = strings.Cut(c.r.bal.members[0].name, ":")
		}
	} else {
		params = c.r.worker.w
		scheme, _, _ = strings.Cut(c.r.worker.name, ":")
	}
	if params.Upgrade != "" {
		if params.Upgrade == "*" || strings.EqualFold(params.Upgrade, proto) {
			return true
		}
		for _, t := range strings.Split(params.Upgrade, ",") {
			if strings.EqualFold(strings.TrimSpace(t), proto) {
				return true
			}
		}
		return false
	}
	return (scheme == "ws" || scheme == "wss") && strings.EqualFold(proto, "websocket")
}

// mergeHeader is apr_table_mergen on Apache's merged request headers.
func mergeHeader(out, in http.Header, key, v string) {
	if prior := in[key]; len(prior) > 0 {
		v = strings.Join(prior, ", ") + ", " + v
	}
	out.Set(key, v)
}

type roundTripper struct{ p *Proxy }

// bodyGuard lets the request body survive a failed connection attempt:
// Close is deferred to the server, and read tells whether a retry is
// still safe.
type bodyGuard struct {
	rc   io.ReadCloser
	read atomic.Bool
	n    atomic.Int64
}

func (b *bodyGuard) Read(q []byte) (int, error) {
	b.read.Store(true)
	n, err := b.rc.Read(q)
	b.n.Add(int64(n))
	return n, err
}
func (b *bodyGuard) Close() error { return nil }

// RoundTrip picks the worker (balancer members with Apache's lbmethod and
// failover), maps the URL for it and sends the request.
func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rt.p
	c := req.Context().Value(callKey{}).(*call)
	var guard *bodyGuard
	if req.Body != nil && req.Body != http.NoBody {
		guard = &bodyGuard{rc: req.Body}
		req.Body = guard
	}
	attempts := 1
	if b := c.r.bal; b != nil && !b.noFailover {
		attempts += b.maxAttempts
	}
	var lastErr error
	for range attempts {
		w := c.r.worker
		u := c.found
		if b := c.r.bal; b != nil {
			w = b.pick(time.Now().UnixNano())
			if w == nil {
				break
			}
			// balancer_fixup: member URL + the path after balancer://name.
			rest := u[len("balancer://"):]
			path := ""
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				path = rest[i:]
			}
			if path == "" {
				path = "/" // proxy_balancer_canon: balancer://name/
			}
			u = w.name + path
		} else if !w.usable(time.Now().UnixNano()) {
			break
		}
		t, st := canonURL(u, c.args, c.hasArgs, c.nocanon, p.cfg.EncodedSlashes)
		if st != 0 {
			c.status = st
			return nil, fmt.Errorf("proxy: bad URL %q", u)
		}
		c.w = w
		resp, err := p.send(req, c, w, t, guard)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		var ce *connectError
		if !errors.As(err, &ce) {
			return nil, err
		}
		w.failures.Add(1)
		w.errUntil.Store(time.Now().Add(w.retry()).UnixNano())
		p.log.Warn("proxy: backend connect failed", "worker", w.name, "err", err)
		if guard != nil && guard.read.Load() {
			break
		}
	}
	c.status = http.StatusServiceUnavailable
	if lastErr == nil {
		lastErr = errors.New("proxy: no worker available")
	}
	return nil, lastErr
}

func (p *Proxy) send(req *http.Request, c *call, w *worker, t target, guard *bodyGuard) (*http.Response, error) {
	out := req.Clone(req.Context())
	if guard != nil {
		out.Body = guard
	}
	scheme := t.scheme
	switch scheme {
	case "ws":
		scheme = "http"
	case "wss":
		scheme = "https"
	}
	out.URL.Scheme, out.URL.Host = scheme, t.hostPort()
	out.URL.Path, out.URL.RawPath, out.URL.RawQuery, out.URL.ForceQuery = "", "", "", false
	out.URL.Opaque = t.uri
	if strings.HasPrefix(t.uri, "//") {
		// Opaque may not start with "//" (it would read as a host).
		out.URL.Opaque = ""
		pth, q, hasQ := strings.Cut(t.uri, "?")
		// Path is the decoded form and RawPath its encoding as it goes
		// out: with RawPath not an encoding of Path, net/url would encode
		// Path again (%20 as %2520).
		out.URL.RawPath = pth
		if dec, err := url.PathUnescape(pth); err == nil {
			out.URL.Path = dec
		} else {
			out.URL.Path = pth
		}
		out.URL.RawQuery, out.URL.ForceQuery = q, hasQ && q == ""
	}
	if c.r.bal == nil && p.apache != nil {
		// The worker Apache would serve this URL with (its table's longest
		// match) may be one that reuses no connection: a ProxyPassMatch
		// worker with a $N asks the real server to close.
		if aw := findWorker(p.apache, t.scheme+"://"+t.hostHeader()+t.uri, true, true); aw != nil && !aw.reuse {
			out.Close = true
			out.Header["Connection"] = []string{"close"}
		}
	}
	if p.cfg.PreserveHost {
		out.Host = c.host
	} else {
		out.Host = t.hostHeader()
	}
	timeout := w.w.Timeout
	if timeout == 0 {
		timeout = p.cfg.Timeout
	}
	if timeout == 0 {
		timeout = p.opts.ResponseHeaderTimeout
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ct := w.w.ConnectTimeout
	if ct == 0 {
		ct = p.opts.ConnectTimeout
	}
	if ct == 0 {
		ct = timeout
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(req.Context(), connectTimeoutKey{}, ct))
	timer := time.AfterFunc(timeout, func() { cancel(errHeaderTimeout) })
	out = out.WithContext(ctx)
	w.busy.Add(1)
	w.requests.Add(1)
	resp, err := p.transport.RoundTrip(out)
	if !timer.Stop() && err != nil && errors.Is(context.Cause(ctx), errHeaderTimeout) {
		err = fmt.Errorf("%w: %w", errHeaderTimeout, err)
	}
	if err != nil {
		w.busy.Add(-1)
		cancel(nil)
		return nil, err
	}
	if guard != nil {
		w.transferred.Add(guard.n.Load())
	}
	resp.Body = &countBody{rc: resp.Body, w: w, cancel: cancel}
	return resp, nil
}

// countBody counts response bytes for bytraffic and ends the busy count.
type countBody struct {
	rc     io.ReadCloser
	w      *worker
	cancel context.CancelCauseFunc
	once   sync.Once
}

func (b *countBody) Read(q []byte) (int, error) {
	n, err := b.rc.Read(q)
	b.w.read.Add(int64(n))
	return n, err
}

func (b *countBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() { b.w.busy.Add(-1); b.cancel(nil) })
	return err
}

// Write passes writes through for upgraded (101) connections.
func (b *countBody) Write(q []byte) (int, error) {
	if w, ok := b.rc.(io.Writer); ok {
		return w.Write(q)
	}
	return 0, errors.New("proxy: body is not writable")
}

// modifyResponse applies ProxyPassReverse to Location, Content-Location
// and URI.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	if len(p.cfg.Reverse) == 0 {
		return nil
	}
	c, _ := resp.Request.Context().Value(callKey{}).(*call)
	if c == nil {
		return nil
	}
	self := "http://" + selfHost(c.host)
	for _, h := range []string{"Location", "Content-Location", "URI"} {
		if v := resp.Header.Get(h); v != "" {
			resp.Header.Set(h, reverseMap(p.cfg.Reverse, p.balancers, v, self))
		}
	}
	return nil
}

// selfHost is ap_get_server_name_for_url and ap_get_server_port with
// UseCanonicalName Off: the client's Host, lower case, port only if not 80.
func selfHost(h string) string {
	host, port, ok := parseAddrPort(h)
	if !ok {
		return h
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != 0 && port != 80 {
		return fmt.Sprintf("%s:%d", host, port)
	}
	return host
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	status := http.StatusBadGateway
	var ce *connectError
	switch {
	case c != nil && c.status != 0:
		status = c.status
	case errors.Is(err, errHeaderTimeout):
		// Apache 2.4 (mod_proxy_http, AH01102 "error reading status line")
		// answers 502, not 504, when the response headers time out; the
		// differential test shows it.
		status = http.StatusBadGateway
	case errors.As(err, &ce):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client went away
	}
	if status >= 500 {
		p.log.Warn("proxy: request failed", "uri", r.RequestURI, "status", status, "err", err)
	}
	p.fail(w, status)
}

// fail writes an error page like Apache's.
func (p *Proxy) fail(w http.ResponseWriter, status int) {
	text := http.StatusText(status)
	w.Header().Set("Content-Type", "text/html; charset=iso-8859-1")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>%d %s</title>\n</head><body>\n<h1>%s</h1>\n<hr>\n<address>vsgate at %s</address>\n</body></html>\n",
		status, text, html.EscapeString(text), html.EscapeString(p.opts.ServerName))
}
