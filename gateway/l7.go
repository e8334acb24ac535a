package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"syscall"

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
	n := runtime.GOMAXPROCS(0)
	for _, s := range services {
		lns := make([]net.Listener, 0, n)
		for range n {
			ln, err := listenTransparent(s.VIP)
			if err != nil {
				for _, l := range lns {
					l.Close()
				}
				return fmt.Errorf("l7 service %v: listen: %w", s.VIP, err)
			}
			lns = append(lns, ln)
		}
		g.serveL7(s, lns...)
		g.log.Info("l7 service", "vip", s.VIP, "stack", "kernel", "listeners", n)
	}
	return nil
}

// listenTransparent listens on ap, an address the namespace does not own,
// sharing the port with vsgate's other listeners on it (SO_REUSEPORT).
func listenTransparent(ap netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
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

// checkL7Reload refuses a reload whose L7 services are not the running
// ones (by VIP): which L7 services exist is set at start (their
// listeners, their wiring, the privileges to make them); what each
// routes, balances and checks changes.
func (g *Gateway) checkL7Reload(next []L7Service) error {
	running := map[netip.AddrPort]bool{}
	for _, s := range g.opts.L7 {
		running[s.VIP] = true
	}
	var added, removed []string
	for _, s := range next {
		if !running[s.VIP] {
			added = append(added, s.VIP.String())
		}
		delete(running, s.VIP)
	}
	for vip := range running {
		removed = append(removed, vip.String())
	}
	if len(added)+len(removed) == 0 {
		return nil
	}
	slices.Sort(removed)
	var what []string
	if len(added) > 0 {
		what = append(what, "adds "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		what = append(what, "removes "+strings.Join(removed, ", "))
	}
	return fmt.Errorf("the change %s among the L7 services: which L7 services run is set at start; restart vsgate for that (a reload changes their directives)", strings.Join(what, " and "))
}

// swapL7Locked turns every L7 service to its handler in next (the same
// VIPs as running: checkL7Reload), with the members the health checks
// hold down told so first, and releases the handlers it replaced.
// Caller holds g.mu.
func (g *Gateway) swapL7Locked(next []L7Service) {
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
		if o, ok := old[s.VIP]; ok && o.Proxy != nil && o.Proxy != s.Proxy {
			_ = o.Proxy.Close()
		}
	}
	for key := range g.l7down {
		if !members[key] {
			delete(g.l7down, key) // a member the new directives do not have
		}
	}
	g.opts.L7 = next
}
