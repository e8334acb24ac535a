package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
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
	// ReadFile reads the certificate, key and CA files the TLS
	// directives name; nil means os.ReadFile. (A gateway that runs
	// unprivileged has root-only keys sent by `vsgate adm reload`.)
	ReadFile func(name string) ([]byte, error)
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
// All methods are safe for concurrent use; its connections are served by any
// number of goroutines. The zero value is not usable.
type Proxy struct {
	opts      Options
	cfg       Config // copy; Routes and Reverse are read-only
	routes    []*route
	balancers map[string]*balancer
	workers   []*worker
	apache    []apacheWorker // Apache's worker table, for what its worker decides (connection reuse); nil when every worker reuses
	limits    ClientLimits
	tlsFront  *tls.Config // SSLEngine on: the clients' TLS; nil for plain HTTP
	tlsBack   *tls.Config // SSLProxyEngine on: https:// real servers'; nil refuses them
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	log       *slog.Logger

	mu     sync.Mutex
	fronts []*Front
	closed bool
}

type route struct {
	Route
	worker   *worker   // plain URL targets
	bal      *balancer // balancer targets
	loopable bool      // an event loop may serve its requests (Proxy.loopable)
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

	pool backendPool // idle connections to addr
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
	for _, r := range p.routes {
		r.loopable = p.loopable(r)
	}
	p.dial = opts.DialContext
	if p.dial == nil {
		var d net.Dialer
		p.dial = d.DialContext
	}
	p.limits = cfg.Limits
	var err error
	readFile := opts.ReadFile
	if readFile == nil {
		readFile = os.ReadFile
	}
	if p.tlsFront, p.tlsBack, err = loadTLS(&cfg.TLS, readFile); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if p.limits == (ClientLimits{}) {
		p.limits = DefaultClientLimits()
	}
	for _, w := range p.workers {
		w.pool.max = opts.MaxIdleConnsPerHost
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

// Serve serves HTTP/1.1 clients on ln with this proxy's routes until
// Close; it returns http.ErrServerClosed after Close. (A gateway that
// swaps proxies on reload serves through a Front of its own.)
func (p *Proxy) Serve(ln net.Listener) error {
	f := NewFront(p, FrontOptions{Logger: p.log})
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return http.ErrServerClosed
	}
	p.fronts = append(p.fronts, f)
	p.mu.Unlock()
	return f.Serve(ln)
}

// Close stops every Serve loop and closes their connections, and closes
// the idle connections to real servers (and each one a request still
// running gives back).
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	fs := p.fronts
	p.fronts = nil
	p.mu.Unlock()
	var err error
	for _, f := range fs {
		err = errors.Join(err, f.Close())
	}
	for _, w := range p.workers {
		w.pool.close()
	}
	return err
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
