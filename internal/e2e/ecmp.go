package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/internal/netlab"
)

// ECMPEnv is the scale-out demo: netlab's "ecmp" topology with FRR on
// both routers and vsgate on up to three gateways, each announcing its
// VIPs by BGP. Create it with StartECMP; Close tears everything down.
type ECMPEnv struct {
	Lab      *netlab.Lab
	Dir      string
	exe      string
	rtr, rin *netlab.FRR
	client   *netlab.Host
	gws      []*gatewayProc // by gateway index; nil while not running
	lonely   *netlab.Server // the one real server of lonelyVIP
}

// gatewayProc is one running `vsgate run`.
type gatewayProc struct {
	host   *netlab.Host
	exe    string
	dir    string
	socket string
	cmd    *exec.Cmd
	exited chan error
	log    *os.File
}

// lonelyVIP is a service with one real server (b3:8080), for the
// withdrawal of a VIP whose last real server fails its checks.
var lonelyVIP = netip.MustParseAddrPort("198.18.0.11:80")

// Ports of the VIP whose flows only the connection sync can carry to
// another gateway: a FULLNAT service (each gateway its own source
// address and ports), and a persistent one; both rr, so a flow's real
// server cannot be worked out again. Their real servers are line
// services of their own (so that the NAT echo's real servers serve it
// alone, as its answers' adoption needs).
const (
	fullnatPort, fullnatRSPort       = 8080, 7007
	persistentPort, persistentRSPort = 8081, 7008
)

// syncKey is the demo's shared sync key.
const syncKey = "vsgate-ecmp-demo-sync-key"

// fullnatAddrOf is gateway i's FULLNAT address.
func fullnatAddrOf(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(31 + i)}) }

// StartECMP builds the lab, starts the real servers and both routers,
// and vsgate on the first n gateways.
func StartECMP(ctx context.Context, exe string, n int) (_ *ECMPEnv, err error) {
	if err := netlab.Check(); err != nil {
		return nil, err
	}
	if err := netlab.CheckFRR(); err != nil {
		return nil, err
	}
	lab, err := netlab.Build(ctx, netlab.ECMP(), netlab.Options{})
	if err != nil {
		return nil, err
	}
	p := lab.Topo.Plan
	e := &ECMPEnv{Lab: lab, exe: exe, client: lab.MustHost(netlab.HostClient), gws: make([]*gatewayProc, len(p.Gateways))}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := lab.StartBackends(); err != nil {
		return e, err
	}
	for _, b := range p.Backends {
		for _, port := range []int{fullnatRSPort, persistentRSPort} {
			if _, err := lab.MustHost(b).StartTCPEcho(b, fmt.Sprintf(":%d", port)); err != nil {
				return e, err
			}
		}
	}
	b3 := lab.MustHost(p.Backends[2])
	if e.lonely, err = b3.StartHTTP("b3-lonely", ":8080"); err != nil {
		return e, err
	}
	if e.rtr, err = lab.MustHost(p.Router).StartFRR(ctx, netlab.ECMPRouterConf(p)); err != nil {
		return e, err
	}
	if e.rin, err = lab.MustHost(p.InsideRouter).StartFRR(ctx, netlab.ECMPInsideConf(p)); err != nil {
		return e, err
	}
	if e.Dir, err = os.MkdirTemp("", "vsgate-ecmp-"); err != nil {
		return e, err
	}
	if err := os.Chmod(e.Dir, 0o711); err != nil {
		return e, err
	}
	for i := range n {
		if err := e.StartGateway(ctx, i); err != nil {
			return e, err
		}
	}
	return e, nil
}

// ecmpConfig is gateway i's configuration: the same services on every
// gateway (mh, so every one picks the same real server for a flow; sloppy
// by default behind bgp), and BGP sessions with both routers in both
// families.
func (e *ECMPEnv) ecmpConfig(i int) string {
	p := e.Lab.Topo.Plan
	up4, up6 := p.GatewayUplink(i)
	in4, in6 := p.GatewayInside(i)
	backends := func(port int, v6 bool) string {
		var bs []string
		for j := range p.Backends {
			a := fmt.Sprintf("198.18.2.%d:%d", 11+j, port)
			if v6 {
				a = fmt.Sprintf(`"[2001:db8:2::%x]:%d"`, 0x11+j, port)
			}
			bs = append(bs, "{addr: "+a+"}")
		}
		return "[" + strings.Join(bs, ", ") + "]"
	}
	health := "{type: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 2}"
	dir := filepath.Join(e.Dir, fmt.Sprintf("gw%d", i+1))
	// Both routers in both families, with BFD as the routers ask for it
	// (netlab's FRR profile): a gateway that hangs is dropped in 300 ms.
	var peers strings.Builder
	for _, r := range []struct {
		addr netip.Addr
		as   int
	}{{up4.Peer, netlab.ECMPRouterAS}, {up6.Peer, netlab.ECMPRouterAS}, {in4.Peer, netlab.ECMPInsideAS}, {in6.Peer, netlab.ECMPInsideAS}} {
		fmt.Fprintf(&peers, "    - {address: %q, as: %d, bfd: true, bfd_interval: %v, bfd_multiplier: %d}\n",
			r.addr, r.as, netlab.FRRBFDInterval, netlab.FRRBFDMultiplier)
	}
	return fmt.Sprintf(`device: {type: tun, name: vsg0}
control: {socket: %s/vsgate.sock}
pcap: {dir: %s/pcap}
metrics: {listen: 127.0.0.1:9100}
services:
  - {name: web, proto: tcp, vip: %v:80, scheduler: mh, health: %s, backends: %s}
  - {name: echo, proto: tcp, vip: %v:7, scheduler: mh, backends: %s}
  - {name: web6, proto: tcp, vip: "[%v]:80", scheduler: mh, health: %s, backends: %s}
  - {name: echo6, proto: tcp, vip: "[%v]:7", scheduler: mh, backends: %s}
  - {name: lonely, proto: tcp, vip: %v, scheduler: mh, health: %s, backends: [{addr: 198.18.2.13:8080}]}
  - {name: full, proto: tcp, vip: %v:%d, mode: fullnat, scheduler: rr, backends: %s}
  - {name: sticky, proto: tcp, vip: %v:%d, scheduler: rr, persistence: 300s, backends: %s}
fullnat:
  pool: [%v]
  ports: %d-%d
  takeover: [%s]
sync:
  listen: %v
  peers: [%s]
  key: %q
bgp:
  as: %d
  router_id: %v
  announce: [0.0.0.0/0, "::/0", %v/32]
  drain: 2s
  peers:
%s`, dir, dir,
		p.VIP4, health, backends(80, false), p.VIP4, backends(7, false),
		p.VIP6, health, backends(80, true), p.VIP6, backends(7, true),
		lonelyVIP, health,
		p.VIP4, fullnatPort, backends(fullnatRSPort, false),
		p.VIP4, persistentPort, backends(persistentRSPort, false),
		fullnatAddrOf(i), 10000*(i+1), 10000*(i+1)+9999, strings.Join(others(i, func(j int) string { return fullnatAddrOf(j).String() }), ", "),
		in4.Self, strings.Join(others(i, func(j int) string { v4, _ := p.GatewayInside(j); return v4.Self.String() }), ", "), syncKey,
		netlab.ECMPGatewayAS, up4.Self, fullnatAddrOf(i), peers.String())
}

// others lists f(j) for every gateway j but i.
func others(i int, f func(j int) string) []string {
	var out []string
	for j := range 3 {
		if j != i {
			out = append(out, f(j))
		}
	}
	return out
}

// StartGateway starts vsgate on gateway i and waits for its control
// socket. A gateway killed before keeps its directory and log.
func (e *ECMPEnv) StartGateway(ctx context.Context, i int) error {
	if e.gws[i] != nil {
		return fmt.Errorf("gateway %d is running", i+1)
	}
	g, err := startGateway(ctx, e.Lab.MustHost(e.Lab.Topo.Plan.Gateways[i]), e.exe, filepath.Join(e.Dir, fmt.Sprintf("gw%d", i+1)), e.ecmpConfig(i))
	if err != nil {
		return fmt.Errorf("gateway %d: %w", i+1, err)
	}
	e.gws[i] = g
	return nil
}

// startGateway runs `vsgate run` (exe) in host with configuration text
// config, its files in dir (made if need be; the log appended to), and
// waits until its control socket answers.
func startGateway(ctx context.Context, host *netlab.Host, exe, dir, config string) (*gatewayProc, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "vsgate.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(dir, "vsgate.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	g := &gatewayProc{host: host, exe: exe, dir: dir, socket: filepath.Join(dir, "vsgate.sock"), exited: make(chan error, 1), log: log}
	g.cmd = host.Command(context.Background(), exe, "run", "-c", cfg)
	g.cmd.Stdout, g.cmd.Stderr = log, log
	if err := g.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting vsgate: %w", err)
	}
	go func() { g.exited <- g.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := g.adm(ctx, "-L", "-n"); err == nil {
			return g, nil
		}
		select {
		case err := <-g.exited:
			log.Close()
			return nil, fmt.Errorf("vsgate exited: %v\n%s", err, g.logText())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = g.stop()
			return nil, fmt.Errorf("vsgate did not come up\n%s", g.logText())
		}
	}
}

// adm runs `vsgate adm` against the gateway.
func (g *gatewayProc) adm(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, g.exe, append([]string{"adm", "--socket", g.socket}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vsgate adm %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// logText is what the gateway (every run of it in its directory) logged.
func (g *gatewayProc) logText() string {
	b, _ := os.ReadFile(filepath.Join(g.dir, "vsgate.log"))
	return string(b)
}

// stop sends SIGTERM and waits for the exit (30 s, then SIGKILL).
func (g *gatewayProc) stop() error {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	return g.wait()
}

// wait waits for the gateway to exit (30 s, then SIGKILL) and returns its
// exit error.
func (g *gatewayProc) wait() error {
	var err error
	select {
	case err = <-g.exited:
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		err = errors.New("vsgate did not stop within 30 s of SIGTERM")
		<-g.exited
	}
	g.log.Close()
	return err
}

// Adm runs `vsgate adm` against gateway i.
func (e *ECMPEnv) Adm(ctx context.Context, i int, args ...string) (string, error) {
	g := e.gws[i]
	if g == nil {
		return "", fmt.Errorf("gateway %d is not running", i+1)
	}
	out, err := g.adm(ctx, args...)
	if err != nil {
		err = fmt.Errorf("gateway %d: %w", i+1, err)
	}
	return out, err
}

// GatewayLog is gateway i's log (every run of it).
func (e *ECMPEnv) GatewayLog(i int) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, fmt.Sprintf("gw%d", i+1), "vsgate.log"))
	return string(b)
}

// Kill kills gateway i's vsgate with SIGKILL (nothing is undone: the
// next start on it finds its wiring) and waits for it to be gone.
func (e *ECMPEnv) Kill(i int) error {
	g := e.gws[i]
	if g == nil {
		return fmt.Errorf("gateway %d is not running", i+1)
	}
	_ = g.cmd.Process.Kill()
	<-g.exited
	g.log.Close()
	e.gws[i] = nil
	return nil
}

// Freeze stops gateway i's vsgate with SIGSTOP, as a hung machine: it
// sends nothing (no FIN, no RST, no BGP notification) and answers
// nothing. Thaw lets it go on.
func (e *ECMPEnv) Freeze(i int) error { return e.signal(i, syscall.SIGSTOP) }

// Thaw continues gateway i's vsgate after Freeze (SIGCONT).
func (e *ECMPEnv) Thaw(i int) error { return e.signal(i, syscall.SIGCONT) }

func (e *ECMPEnv) signal(i int, sig syscall.Signal) error {
	g := e.gws[i]
	if g == nil {
		return fmt.Errorf("gateway %d is not running", i+1)
	}
	return g.cmd.Process.Signal(sig)
}

// Stop stops gateway i's vsgate with SIGTERM (a graceful stop: withdraw,
// drain, exit). It returns at once; Wait waits for the exit.
func (e *ECMPEnv) Stop(i int) error { return e.signal(i, syscall.SIGTERM) }

// Exited reports whether gateway i's vsgate has exited (after Stop).
func (e *ECMPEnv) Exited(i int) bool {
	g := e.gws[i]
	if g == nil {
		return true
	}
	select {
	case err := <-g.exited:
		g.exited <- err
		return true
	default:
		return false
	}
}

// Wait waits for gateway i's vsgate to exit (30 s at most) and returns
// its exit error.
func (e *ECMPEnv) Wait(i int) error {
	g := e.gws[i]
	if g == nil {
		return nil
	}
	e.gws[i] = nil
	if err := g.wait(); err != nil {
		return fmt.Errorf("gateway %d: %w", i+1, err)
	}
	return nil
}

// Close stops every gateway, the routers and the lab.
func (e *ECMPEnv) Close() error {
	var errs []error
	for i, g := range e.gws {
		if g == nil {
			continue
		}
		_ = e.Stop(i)
		if err := e.Wait(i); err != nil {
			errs = append(errs, err)
		}
	}
	if e.Lab != nil {
		errs = append(errs, e.Lab.Close())
	}
	if e.Dir != "" {
		os.RemoveAll(e.Dir)
	}
	return errors.Join(errs...)
}

// Paths returns how many next hops router host has in its kernel table
// for prefix dst: 0 when there is no route.
func (e *ECMPEnv) Paths(host string, dst netip.Prefix) (int, error) {
	h := e.Lab.MustHost(host)
	fam := netlink.FAMILY_V4
	if dst.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	routes, err := h.Netlink().RouteListFiltered(fam, &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}}, netlink.RT_FILTER_DST)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range routes {
		if dst.Bits() == 0 && r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if len(r.MultiPath) > 0 {
			n += len(r.MultiPath)
		} else if r.Gw != nil {
			n++
		}
	}
	return n, nil
}

// WaitPaths waits until both routers carry n next hops for every route
// the gateways announce (the VIPs at the router, the default routes at
// the inside router), or ctx ends.
func (e *ECMPEnv) WaitPaths(ctx context.Context, n int) error {
	p := e.Lab.Topo.Plan
	want := map[string][]netip.Prefix{
		p.Router:       {netip.PrefixFrom(p.VIP4, 32), netip.PrefixFrom(p.VIP6, 128)},
		p.InsideRouter: {netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	}
	return waitFor(ctx, fmt.Sprintf("%d next hops at both routers", n), func() (bool, error) {
		for host, dsts := range want {
			for _, d := range dsts {
				got, err := e.Paths(host, d)
				if err != nil || got != n {
					return false, err
				}
			}
		}
		return true, nil
	})
}

// waitFor polls cond every 20 ms until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Traffic is what the failover demo sends while gateways come and go:
// long-lived connections to the echo service, each sending a line every
// 100 ms and checking the answer comes back from the real server it
// started with, and a stream of new HTTP requests.
type Traffic struct {
	mu      sync.Mutex
	conns   []*longConn
	reqs    int
	failed  int
	slowest time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup
}

// longConn is one long-lived connection and what became of it.
type longConn struct {
	kind    string // the service: "nat", "fullnat" or "persistent"
	backend string // the real server that answered first
	v6      bool
	lines   int
	broken  error
	maxRTT  time.Duration // since the last Report
}

// StartTraffic opens n long-lived connections to the NAT line service
// (every fourth over IPv6), n/2 to the FULLNAT one and n/4 to the
// persistent one, and starts the request stream.
func (e *ECMPEnv) StartTraffic(ctx context.Context, n int) (*Traffic, error) {
	p := e.Lab.Topo.Plan
	t := &Traffic{stop: make(chan struct{})}
	dial := func(kind string, addr netip.AddrPort) error {
		i := len(t.conns)
		c, err := e.client.DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return fmt.Errorf("long-lived connection %d (%s): %w", i, kind, err)
		}
		lc := &longConn{kind: kind, v6: addr.Addr().Is6()}
		t.conns = append(t.conns, lc)
		t.wg.Go(func() { t.keep(c, lc, i) })
		return nil
	}
	for i := range n {
		vip := p.VIP4
		if i%4 == 3 {
			vip = p.VIP6
		}
		if err := dial("nat", netip.AddrPortFrom(vip, 7)); err != nil {
			t.Stop()
			return nil, err
		}
	}
	for range n / 2 {
		if err := dial("fullnat", netip.AddrPortFrom(p.VIP4, fullnatPort)); err != nil {
			t.Stop()
			return nil, err
		}
	}
	for range n / 4 {
		if err := dial("persistent", netip.AddrPortFrom(p.VIP4, persistentPort)); err != nil {
			t.Stop()
			return nil, err
		}
	}
	client := e.client.HTTPClient(10 * time.Second)
	t.wg.Go(func() {
		url := "http://" + p.VIP4.String() + "/"
		for {
			select {
			case <-t.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			took := time.Since(start)
			t.mu.Lock()
			t.reqs++
			if err != nil {
				t.failed++
			}
			t.slowest = max(t.slowest, took)
			t.mu.Unlock()
		}
	})
	return t, nil
}

// keep sends a line on c every 100 ms until Stop, and records a broken
// connection: an error, no answer within 10 s, or an answer from another
// real server.
func (t *Traffic) keep(c net.Conn, lc *longConn, i int) {
	defer c.Close()
	r := bufio.NewReader(c)
	for n := 0; ; n++ {
		select {
		case <-t.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		line := fmt.Sprintf("conn %d line %d", i, n)
		start := time.Now()
		_ = c.SetDeadline(start.Add(10 * time.Second))
		_, err := fmt.Fprintf(c, "%s\n", line)
		var got string
		if err == nil {
			got, err = r.ReadString('\n')
		}
		rtt := time.Since(start)
		t.mu.Lock()
		backend, rest, _ := strings.Cut(strings.TrimSuffix(got, "\n"), ": ")
		switch {
		case err != nil:
			lc.broken = err
		case rest != line:
			lc.broken = fmt.Errorf("answer %q to %q", got, line)
		case lc.backend == "":
			lc.backend = backend
		case backend != lc.backend:
			lc.broken = fmt.Errorf("answered by %s, which is not %s, the real server it began with", backend, lc.backend)
		}
		lc.lines++
		lc.maxRTT = max(lc.maxRTT, rtt)
		broken := lc.broken != nil
		t.mu.Unlock()
		if broken {
			return
		}
	}
}

// Stop ends the traffic and waits for it.
func (t *Traffic) Stop() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	t.wg.Wait()
}

// TrafficReport is the traffic's outcome so far.
type TrafficReport struct {
	Conns, Broken  int
	Lines          int
	SlowestLine    time.Duration // the longest a line waited for its answer, since the last report
	SlowestConn    string        // whose line that was: "nat b2 (IPv6)"
	Requests       int
	FailedRequests int
	SlowestRequest time.Duration // since the last report
	FirstBroken    error
	// Backends are the long-lived connections by service and real
	// server ("nat b1"); BrokenBy the broken ones by service.
	Backends, BrokenBy map[string]int
}

// Report says what the traffic saw so far; the slowest answers are those
// since the previous report.
func (t *Traffic) Report() TrafficReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := TrafficReport{Conns: len(t.conns), Requests: t.reqs, FailedRequests: t.failed, SlowestRequest: t.slowest,
		Backends: map[string]int{}, BrokenBy: map[string]int{}}
	t.slowest = 0
	for _, c := range t.conns {
		r.Lines += c.lines
		if c.maxRTT > r.SlowestLine {
			r.SlowestLine, r.SlowestConn = c.maxRTT, c.kind+" "+c.backend
			if c.v6 {
				r.SlowestConn += " (IPv6)"
			}
		}
		c.maxRTT = 0
		if c.broken != nil {
			r.Broken++
			r.BrokenBy[c.kind]++
			if r.FirstBroken == nil {
				r.FirstBroken = c.broken
			}
		}
		r.Backends[c.kind+" "+c.backend]++
	}
	return r
}

// Sticky is the real server of the persistent service's connections, or
// "" if they went to more than one.
func (r TrafficReport) Sticky() string {
	b := ""
	for k := range r.Backends {
		if rs, ok := strings.CutPrefix(k, "persistent "); ok {
			if b != "" && b != rs {
				return ""
			}
			b = rs
		}
	}
	return b
}

func (r TrafficReport) String() string {
	var bs []string
	for b, n := range r.Backends {
		bs = append(bs, fmt.Sprintf("%s %d", b, n))
	}
	slices.Sort(bs)
	return fmt.Sprintf("%d long-lived connections (by service and real server: %s), %d broken, %d lines, slowest answer %v (%s); %d requests, %d failed, slowest %v",
		r.Conns, strings.Join(bs, ", "), r.Broken, r.Lines, r.SlowestLine.Round(time.Millisecond), r.SlowestConn,
		r.Requests, r.FailedRequests, r.SlowestRequest.Round(time.Millisecond))
}

// check is an error if any long-lived connection broke or any request
// failed.
func (r TrafficReport) check() error {
	if r.Broken > 0 {
		return fmt.Errorf("%d of %d long-lived connections broke (first: %v)", r.Broken, r.Conns, r.FirstBroken)
	}
	if r.FailedRequests > 0 {
		return fmt.Errorf("%d of %d requests failed", r.FailedRequests, r.Requests)
	}
	return nil
}
