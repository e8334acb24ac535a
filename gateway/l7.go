package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vsgate/vsgate/gateway/adm"
	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/device"
	"github.com/vsgate/vsgate/proxy"
	"github.com/vsgate/vsgate/proxy/netstack"
	"golang.org/x/sys/unix"
)

// withL7Services adds an engine service (Mode L7) for every L7 VIP that
// the NAT configuration does not list, so its packets reach the netstack.
// An L4 service on an L7 service's address and port is refused: it would
// take the L7 service's packets.
func withL7Services(c nat.Config, l7 []L7Service) (nat.Config, error) {
	for _, s := range l7 {
		i := slices.IndexFunc(c.Services, func(x nat.Service) bool {
			return x.Proto == packet.ProtoTCP && x.VIP == s.VIP.Addr() && x.Port == s.VIP.Port()
		})
		if i >= 0 && c.Services[i].Mode != nat.ModeL7 {
			return c, fmt.Errorf("service %s: %v is the address of an L7 (ProxyPass) service", adm.ServiceKey(c.Services[i]), s.VIP)
		}
		if i < 0 {
			c.Services = append(slices.Clone(c.Services), nat.Service{Proto: packet.ProtoTCP, VIP: s.VIP.Addr(), Port: s.VIP.Port(), Mode: nat.ModeL7, Scheduler: "rr"})
		}
	}
	return c, nil
}

// startL7 starts the netstack, its listeners and their HTTP servers. What
// the stack sends goes out of the first device (any queue will do: the
// kernel routes it to the client).
// l7Batch bounds a batch of the L7 stack's packets, and so the buffers
// each queue keeps for them (each up to a super-packet).
const l7Batch = 32

// l7Output writes what the L7 stack sends: each packet to the device
// queue its flow hashes to (so a connection's packets keep their order),
// a batch per queue in one Write under that queue's lock, from buffers of
// that queue's own. Only the stack's output goroutine calls write.
type l7Output struct {
	g      *Gateway
	seed   maphash.Seed
	p      packet.Parsed
	queues []l7Queue
}

// l7Queue is one device queue's batch: buffers (headroom and packet) and
// the packets in them.
type l7Queue struct {
	bufs [][]byte
	out  [][]byte
}

func newL7Output(g *Gateway) *l7Output {
	o := &l7Output{g: g, seed: maphash.MakeSeed(), queues: make([]l7Queue, len(g.devices))}
	for i := range o.queues {
		o.queues[i].bufs = make([][]byte, l7Batch)
		o.queues[i].out = make([][]byte, 0, l7Batch)
	}
	return o
}

// write is the stack's Output.
func (o *l7Output) write(pkts [][]byte, offs []packet.Offload) {
	for i, pkt := range pkts {
		qi := o.queueOf(pkt)
		q := &o.queues[qi]
		d := o.g.devices[qi]
		h := d.Headroom()
		n := len(q.out)
		if q.bufs[n] == nil {
			q.bufs[n] = make([]byte, h+device.MaxPacket) // once per slot: kept for every later batch
		}
		b := q.bufs[n][:h+copy(q.bufs[n][h:], pkt)]
		if off, ok := d.(offloader); ok && offs != nil {
			off.SetOffload(b, h, offs[i])
		}
		q.out = append(q.out, b)
	}
	for qi := range o.queues {
		q := &o.queues[qi]
		if len(q.out) == 0 {
			continue
		}
		d := o.g.devices[qi]
		h := d.Headroom()
		o.g.writeMu[qi].Lock()
		if o.g.link == nil && o.g.capture.Enabled() { // the Link records what it sends itself (SetCapture)
			o.g.captureOut(q.out, h)
		}
		_, err := d.Write(q.out, h)
		o.g.writeMu[qi].Unlock()
		if err != nil && !errors.Is(err, errClosed) {
			o.g.log.Warn("l7 write", "err", err)
		}
		q.out = q.out[:0]
	}
}

// queueOf picks pkt's device queue by its addresses and ports.
func (o *l7Output) queueOf(pkt []byte) int {
	if len(o.queues) == 1 || packet.Parse(pkt, &o.p) != packet.ReasonNone {
		return 0
	}
	var key [36]byte
	copy(key[:16], o.p.Src[:])
	copy(key[16:32], o.p.Dst[:])
	key[32], key[33], key[34], key[35] = byte(o.p.SrcPort>>8), byte(o.p.SrcPort), byte(o.p.DstPort>>8), byte(o.p.DstPort)
	return int(maphash.Bytes(o.seed, key[:]) % uint64(len(o.queues)))
}

func (g *Gateway) startL7(services []L7Service) error {
	if !g.opts.L7Netstack {
		return g.startKernelL7(services)
	}
	mtu, err := g.devices[0].MTU()
	if err != nil || mtu < 1280 {
		mtu = 1500
	}
	out := newL7Output(g)
	opts := netstack.Options{MTU: mtu, Batch: l7Batch, Output: out.write}
	// A device that segments and finishes checksums (virtio-net header)
	// takes TCP from the stack in super-packets (host GSO).
	_, opts.GSO = g.devices[0].(offloader)
	g.l7, err = netstack.New(opts)
	if err != nil {
		return err
	}
	for _, s := range services {
		ln, err := g.l7.Listen(s.VIP)
		if err != nil {
			return err
		}
		g.serveL7(s, ln)
		g.log.Info("l7 service", "vip", s.VIP, "stack", "netstack")
	}
	return nil
}

// serveL7 serves L7 service s on listeners lns through one Front, whose
// proxy a reload replaces: an open connection's next request goes by the
// new one.
func (g *Gateway) serveL7(s L7Service, lns ...net.Listener) {
	f := proxy.NewFront(s.Proxy, proxy.FrontOptions{MaxConnections: g.opts.L7MaxConnections, Logger: g.log})
	if g.l7front == nil {
		g.l7front = map[netip.AddrPort]*proxy.Front{}
	}
	g.l7front[s.VIP] = f
	for _, ln := range lns {
		go func() {
			if err := f.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("l7 service", "vip", s.VIP, "err", err)
			}
		}()
	}
}

// startKernelL7 listens on every L7 service's VIP and port with the
// kernel's TCP: one SO_REUSEPORT listener per processor, so the kernel
// spreads connections over them. The VIP is no address of the namespace:
// the wiring's rule and local route (in a table of vsgate's own) deliver
// its port to these sockets, and IP_TRANSPARENT lets them bind it and
// answer from it (IP_FREEBIND binds, but the kernel will not route a
// SYN-ACK from an address its local table lacks). The listeners are made
// now, while the gateway may still set that (CAP_NET_ADMIN) and bind
// ports below 1024; accepted connections inherit it.
func (g *Gateway) startKernelL7(services []L7Service) error {
	lns, err := g.listenL7(services)
	if err != nil {
		return err
	}
	for _, s := range services {
		g.serveL7(s, lns[s.VIP]...)
		g.log.Info("l7 service", "vip", s.VIP, "stack", "kernel", "listeners", len(lns[s.VIP]))
	}
	return nil
}

// listenTransparent listens on ap, an address the namespace does not own,
// sharing the port with vsgate's other listeners on it (SO_REUSEPORT).
// Its connections get no TCP keep-alive probes (Go's default would set
// them, four system calls per connection): Apache and nginx leave them
// off, and KeepAliveTimeout and Timeout end idle clients.
func listenTransparent(ap netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if ap.Addr().Is4() {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
			}
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	network := "tcp4"
	if ap.Addr().Is6() {
		network = "tcp6"
	}
	return lc.Listen(context.Background(), network, ap.String())
}

// addedL7 are the services of next that are not running (by VIP).
func (g *Gateway) addedL7(next []L7Service) []L7Service {
	var out []L7Service
	for _, s := range next {
		if _, ok := g.l7front[s.VIP]; !ok {
			out = append(out, s)
		}
	}
	return out
}

// listenL7 makes the listeners of services, by VIP: on the kernel's TCP
// one SO_REUSEPORT listener per processor (binding a port below 1024 after
// setup takes CAP_NET_BIND_SERVICE, which vsgate keeps for it), on the
// netstack one. On error it has closed what it made.
func (g *Gateway) listenL7(services []L7Service) (map[netip.AddrPort][]net.Listener, error) {
	out := map[netip.AddrPort][]net.Listener{}
	fail := func(vip netip.AddrPort, err error) (map[netip.AddrPort][]net.Listener, error) {
		for _, lns := range out {
			for _, ln := range lns {
				ln.Close()
			}
		}
		return nil, fmt.Errorf("l7 service %v: listen: %w", vip, err)
	}
	for _, s := range services {
		if g.opts.L7Netstack {
			ln, err := g.l7.Listen(s.VIP)
			if err != nil {
				return fail(s.VIP, err)
			}
			out[s.VIP] = []net.Listener{ln}
			continue
		}
		for range runtime.GOMAXPROCS(0) {
			ln, err := listenTransparent(s.VIP)
			if err != nil {
				return fail(s.VIP, err)
			}
			out[s.VIP] = append(out[s.VIP], ln)
		}
	}
	return out, nil
}

// rewireL7Link, in AF_PACKET mode on the kernel's TCP, adds the wiring
// (local route, rule) the L7 services in next need and old lacked; undo
// takes that back. The wiring only old needed goes with removeOld, once
// the reload went through. Elsewhere it does nothing: TUN mode's plan
// holds the L7 wiring (installLocked rewires it), the netstack needs none.
func (g *Gateway) rewireL7Link(old, next []L7Service) (undo func() error, err error) {
	none := func() error { return nil }
	if g.link == nil || g.opts.L7Netstack || g.net == nil {
		return none, nil
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return none, err
	}
	defer h.Close()
	plan := g.netPlanFor(g.desired)
	plan.L7 = l7VIPs(next)
	nextSteps, err := l7Steps(h, plan)
	if err != nil {
		return none, err
	}
	plan.L7 = l7VIPs(old)
	oldSteps, err := l7Steps(h, plan)
	if err != nil {
		return none, err
	}
	had := map[string]bool{}
	for _, st := range oldSteps {
		had[st.key] = true
	}
	var adding []netStep
	for _, st := range nextSteps {
		if !had[st.key] {
			adding = append(adding, st)
		}
	}
	n := len(g.net.items)
	if err := g.net.apply(adding); err != nil {
		return none, fmt.Errorf("L7 wiring: %w", err)
	}
	// Both sets of services' frames go to the kernel until the reload
	// is through (unwireL7Link).
	if err := g.link.SetL7(append(l7VIPs(old), l7VIPs(next)...)); err != nil {
		return none, errors.Join(err, g.link.SetL7(l7VIPs(old)))
	}
	return func() error {
		errs := []error{g.link.SetL7(l7VIPs(old))}
		for i := len(g.net.items) - 1; i >= n; i-- {
			errs = append(errs, g.net.items[i].undo())
		}
		g.net.items = g.net.items[:n]
		return errors.Join(errs...)
	}, nil
}

// unwireL7Link takes back, in AF_PACKET mode, the wiring old's L7 VIPs
// and ports had that next's no longer need.
func (g *Gateway) unwireL7Link(old, next []L7Service) error {
	if g.link == nil || g.opts.L7Netstack || g.net == nil {
		return nil
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	keys := func(services []L7Service) (map[string]bool, error) {
		plan := g.netPlanFor(g.desired)
		plan.L7 = l7VIPs(services)
		steps, err := l7Steps(h, plan)
		out := map[string]bool{}
		for _, st := range steps {
			out[st.key] = true
		}
		return out, err
	}
	had, err := keys(old)
	if err != nil {
		return err
	}
	keep, err := keys(next)
	if err != nil {
		return err
	}
	errs := []error{g.link.SetL7(l7VIPs(next))}
	items := g.net.items[:0]
	for _, it := range g.net.items {
		if had[it.key] && !keep[it.key] {
			errs = append(errs, it.undo())
			continue
		}
		items = append(items, it)
	}
	g.net.items = items
	return errors.Join(errs...)
}

// l7VIPs are the services' addresses and ports.
func l7VIPs(services []L7Service) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(services))
	for _, s := range services {
		out = append(out, s.VIP)
	}
	return out
}

// swapL7Locked makes next the L7 services: each running one turns to its
// proxy in next, with the members the health checks hold down told so
// first; those in added are served on their listeners lns; those next
// lacks shut down (listeners closed, idle connections closed, the others
// after their response) and drain, their wiring kept until their last
// connection ended (awaitDrain); oldWired is what was wired before. The
// proxies replaced are released (a drained one when it is). Caller holds
// g.mu.
func (g *Gateway) swapL7Locked(next, added []L7Service, lns map[netip.AddrPort][]net.Listener, oldWired []L7Service) {
	old := map[netip.AddrPort]L7Service{}
	for _, s := range g.opts.L7 {
		old[s.VIP] = s
	}
	members := map[string]bool{}
	for _, s := range next {
		for _, m := range s.Members {
			key := l7HealthKey(s.VIP, m)
			members[key] = true
			if g.l7down[key] {
				s.Proxy.SetMemberDown(m, true)
			}
		}
		if f := g.l7front[s.VIP]; f != nil {
			f.Swap(s.Proxy)
		}
		if slices.ContainsFunc(added, func(a L7Service) bool { return a.VIP == s.VIP }) {
			g.serveL7(s, lns[s.VIP]...)
			g.log.Info("l7 service added", "vip", s.VIP, "listeners", len(lns[s.VIP]))
		}
		if o, ok := old[s.VIP]; ok && o.Proxy != nil && o.Proxy != s.Proxy {
			_ = o.Proxy.Close()
		}
	}
	for key := range g.l7down {
		if !members[key] {
			delete(g.l7down, key) // a member the new directives do not have
		}
	}
	for _, o := range old {
		if slices.ContainsFunc(next, func(s L7Service) bool { return s.VIP == o.VIP }) {
			continue
		}
		if f := g.l7front[o.VIP]; f != nil {
			delete(g.l7front, o.VIP)
			f.Shutdown()
			go g.awaitDrain(f)
			g.log.Info("l7 service removed: draining its connections", "vip", o.VIP, "connections", f.Connections())
		}
	}
	g.opts.L7 = next
	// A draining service whose address an L4 service took ends now.
	wired := g.wiredL7(g.desired)
	for f, s := range g.l7draining {
		if !slices.ContainsFunc(wired, func(w L7Service) bool { return w.VIP == s.VIP }) {
			_ = f.Close()
		}
	}
	if err := g.unwireL7Link(oldWired, wired); err != nil {
		g.log.Warn("l7: removing the wiring of removed services", "err", err)
	}
}

// drainL7Locked marks the running L7 services that next lacks as
// draining and returns their fronts (a refused reload unmarks them).
// Caller holds g.mu.
func (g *Gateway) drainL7Locked(next []L7Service) []*proxy.Front {
	var out []*proxy.Front
	for _, s := range g.opts.L7 {
		f := g.l7front[s.VIP]
		if f == nil || slices.ContainsFunc(next, func(n L7Service) bool { return n.VIP == s.VIP }) {
			continue
		}
		if g.l7draining == nil {
			g.l7draining = map[*proxy.Front]L7Service{}
		}
		g.l7draining[f] = s
		out = append(out, f)
	}
	return out
}

// wiredL7 are the L7 services the wiring and the engine keep: the running
// ones and, while their connections end, the removed ones, but for one
// whose address c gives an L4 service (it takes the address; the
// draining connections end).
func (g *Gateway) wiredL7(c nat.Config) []L7Service {
	out := slices.Clone(g.opts.L7)
	for _, s := range g.l7draining {
		l4 := slices.ContainsFunc(c.Services, func(x nat.Service) bool {
			return x.Mode != nat.ModeL7 && x.Proto == packet.ProtoTCP && x.VIP == s.VIP.Addr() && x.Port == s.VIP.Port()
		})
		if !l4 && !slices.ContainsFunc(out, func(w L7Service) bool { return w.VIP == s.VIP }) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b L7Service) int { return a.VIP.Compare(b.VIP) })
	return out
}

// awaitDrain waits until a removed L7 service's last connection ended,
// then takes its wiring and engine entry back (unless a reload brought its
// address back meanwhile) and releases its proxy.
func (g *Gateway) awaitDrain(f *proxy.Front) {
	<-f.Drained()
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.l7draining[f]
	if !ok {
		return // the gateway closed
	}
	before := g.wiredL7(g.desired)
	delete(g.l7draining, f)
	_ = f.Close()
	_ = s.Proxy.Close()
	if err := g.installLocked(withoutL7(g.desired)); err != nil {
		g.log.Warn("l7: removing a drained service's engine entry and wiring", "vip", s.VIP, "err", err)
	}
	if err := g.unwireL7Link(before, g.wiredL7(g.desired)); err != nil {
		g.log.Warn("l7: removing a drained service's wiring", "vip", s.VIP, "err", err)
	}
	g.log.Info("l7 service drained", "vip", s.VIP)
}

// withoutL7 is c without its L7 services' entries (installLocked puts
// back those of the services it keeps).
func withoutL7(c nat.Config) nat.Config {
	c.Services = slices.DeleteFunc(slices.Clone(c.Services), func(s nat.Service) bool { return s.Mode == nat.ModeL7 })
	return c
}

// L7Stat is one L7 service's front and balancer members, for metrics and
// status pages.
type L7Stat struct {
	VIP     netip.AddrPort
	Front   proxy.FrontStats
	Members []proxy.MemberInfo // of the proxy serving now (a reload starts them anew)
}

// L7Stats returns every L7 service's counters, by VIP.
func (g *Gateway) L7Stats() []L7Stat {
	g.mu.Lock()
	fronts := maps.Clone(g.l7front)
	g.mu.Unlock()
	out := make([]L7Stat, 0, len(fronts))
	for _, vip := range slices.SortedFunc(maps.Keys(fronts), netip.AddrPort.Compare) {
		f := fronts[vip]
		out = append(out, L7Stat{VIP: vip, Front: f.Stats(), Members: f.Proxy().Members()})
	}
	return out
}
