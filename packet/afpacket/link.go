package afpacket

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/vsgate/vsgate/packet"
	"github.com/vsgate/vsgate/packet/afxdp"
	"github.com/vsgate/vsgate/packet/device"
)

// LinkConfig says which interfaces a Link owns and what it answers for.
type LinkConfig struct {
	// Interfaces are the Ethernet interfaces vsgate receives from and
	// sends on, in the namespace OpenLink runs in.
	Interfaces []string
	// Queues is the number of sockets (and so workers) per interface; more
	// than one joins them in a PACKET_FANOUT hash group.
	Queues int
	// Owned are the addresses vsgate answers ARP and neighbour
	// solicitations for: VIPs, masquerade and FULLNAT addresses, and the
	// gateway address the real servers route through. None of them may be
	// a kernel address in the namespace.
	Owned  []netip.Addr
	Logger *slog.Logger
	// XDP carries the engine's frames through AF_XDP sockets (package
	// afxdp: an XDP program on each interface redirects them to one
	// socket per queue), with an AF_PACKET socket per interface left for
	// ARP and neighbour discovery. An interface where XDP cannot be set
	// up (no XDP in the kernel, an MTU too large for it, fewer queues
	// than Queues) falls back to AF_PACKET sockets, with one log line
	// saying why.
	XDP bool
}

// Link is vsgate's L2 device: AF_PACKET sockets on a set of Ethernet
// interfaces, with the link-layer work a router does around them —
// answering ARP/ND for the owned addresses, resolving next hops, choosing
// the egress interface by the namespace's routing table — so that the
// gateway's workers see IP packets as they do on a TUN. Its Ports are
// the workers' devices.
//
// The routing table, the kernel's addresses (for the socket filters) and
// the kernel's neighbour entries are read through netlink by Refresh,
// which the gateway calls every second. The transmit path reads them from
// an immutable snapshot: no lock, no allocation.
type Link struct {
	log   *slog.Logger
	nl    *netlink.Handle
	ifs   []*linkIface
	ports []*Port
	neigh *Neighbors
	state atomic.Pointer[linkState]
	wait  waiting
	stats LinkStats
	// capture records the frames sent (SetCapture); nil for none.
	capture FrameCapture
	// noUSO is set when the kernel refused a UDP GSO packet: no more
	// merging of datagrams (writeBatch).
	noUSO atomic.Bool
	// control is the goroutines that read ARP and neighbour discovery on
	// the interfaces whose frames go through AF_XDP.
	control sync.WaitGroup
	icmp    *rate.Limiter // bounds the time-exceeded messages

	mu sync.Mutex // serialises Refresh and SetOwned
}

// LinkStats count the link layer's work. Read them with Stats.
type LinkStats struct {
	Replies    atomic.Uint64 // ARP replies and neighbour advertisements sent
	Requests   atomic.Uint64 // ARP requests and neighbour solicitations sent
	NoRoute    atomic.Uint64 // packets dropped: no route out of the owned interfaces
	ToSelf     atomic.Uint64 // packets dropped: addressed to an owned address
	Unresolved atomic.Uint64 // packets dropped: the next hop did not answer in time, or too many waited
	Short      atomic.Uint64 // frames dropped: too short for their IP header
	TTL        atomic.Uint64 // packets dropped: TTL or hop limit exhausted
	// TimeExceeded counts the ICMP time exceeded messages sent for them.
	TimeExceeded atomic.Uint64
}

// linkIface is one owned interface.
type linkIface struct {
	name  string
	index int
	mac   packet.MAC
	mtu   int
	// socks are the interface's AF_PACKET sockets: the data sockets too
	// unless XDP carries them, else the one that reads and sends ARP and
	// neighbour discovery.
	socks []*Socket
	// data carry the engine's frames, by queue: socks, or AF_XDP sockets.
	data []dataSocket
	prog *afxdp.Program // the interface's XDP program; nil on AF_PACKET
}

// dataSocket is a socket that carries the engine's frames on one queue of
// an interface, with a virtio-net header in front of each: a Socket, or
// an AF_XDP socket (LinkConfig.XDP).
type dataSocket interface {
	ReadBatch(bufs [][]byte, sizes []int, off int) (int, error)
	WriteBatch(frames [][]byte) (int, error)
	RingDrops() uint64
	Close() error
}

// linkState is what Refresh and SetOwned read from the namespace and the
// configuration; the packet path reads it through Link.state.
type linkState struct {
	owned      map[netip.Addr]bool
	ownedList  []netip.Addr
	routes     []route // longest prefix first
	local      []netip.Addr
	responders []*Responder    // by interface
	src        [][2]netip.Addr // by interface: the IPv4 and IPv6 source of our requests
	mtu        []int           // by interface, as last read (it may change while vsgate runs)
}

// route is one route of the namespace's main table through an owned
// interface.
type route struct {
	dst   netip.Prefix
	iface int
	via   netip.Addr // invalid: on-link
}

// lookup returns the route for dst.
func (st *linkState) lookup(dst netip.Addr) (route, bool) {
	for _, r := range st.routes {
		if r.dst.Contains(dst) {
			return r, true
		}
	}
	return route{}, false
}

// OpenLink opens the sockets, reads the namespace's routes, addresses and
// neighbours, and answers for cfg.Owned from then on (Announce tells the
// neighbours). On error nothing stays open.
func OpenLink(cfg LinkConfig) (_ *Link, err error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("afpacket: no interfaces")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	queues := max(cfg.Queues, 1)
	l := &Link{log: cfg.Logger, neigh: NewNeighbors(), icmp: rate.NewLimiter(icmpPerSecond, icmpBurst)}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.nl, err = netlink.NewHandle(); err != nil {
		return nil, err
	}
	local, err := l.localAddrs()
	if err != nil {
		return nil, err
	}
	var umem *afxdp.UMEM
	if cfg.XDP {
		// One UMEM for every AF_XDP socket: a frame goes out of another
		// interface from the chunk it arrived in.
		umem = afxdp.NewUMEM(len(cfg.Interfaces) * queues)
	}
	for i, name := range cfg.Interfaces {
		nl, err := l.nl.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("afpacket: interface %s: %w", name, err)
		}
		a := nl.Attrs()
		if len(a.HardwareAddr) != 6 {
			return nil, fmt.Errorf("afpacket: interface %s is not Ethernet (hardware address %v)", name, a.HardwareAddr)
		}
		if a.Flags&net.FlagUp == 0 {
			if err := l.nl.LinkSetUp(nl); err != nil {
				return nil, fmt.Errorf("afpacket: interface %s: up: %w", name, err)
			}
		}
		ifc := &linkIface{name: name, index: a.Index, mac: packet.MAC(a.HardwareAddr), mtu: a.MTU}
		l.ifs = append(l.ifs, ifc)
		if cfg.XDP {
			err := l.openXDP(i, queues, local, umem)
			if err == nil {
				for q, s := range ifc.data {
					l.ports = append(l.ports, &Port{link: l, iface: i, queue: q, sock: s})
				}
				l.log.Info("AF_XDP device", "interface", name, "queues", queues, "mode", xdpMode(ifc.data))
				continue
			}
			l.log.Warn("AF_XDP unavailable on this interface: AF_PACKET instead", "interface", name, "err", err)
		}
		// One fanout group per interface; IDs are per namespace, so they
		// are made from the process and the interface.
		group := uint16((os.Getpid()*64+i)%0xffff + 1) // never 0
		for q := range queues {
			c := Config{Interface: name, Filter: &FilterSpec{MAC: ifc.mac, Local: local}, VNetHdr: true}
			if queues > 1 {
				c.FanoutGroup = group
			}
			s, err := Open(c)
			if err != nil {
				return nil, err
			}
			ifc.socks = append(ifc.socks, s)
			ifc.data = append(ifc.data, s)
			l.ports = append(l.ports, &Port{link: l, iface: i, queue: q, sock: s})
		}
	}
	if err := l.refresh(cfg.Owned, local, false); err != nil {
		return nil, err
	}
	return l, nil
}

// FrameCapture records frames; *pcap.Writer started with StartEthernet
// is one.
type FrameCapture interface {
	Enabled() bool
	WriteFrame(t time.Time, frame []byte)
}

// SetCapture makes the Link record every frame it sends, as sent
// (coalesced datagrams as their super-packet, with the Ethernet header),
// while c is enabled. Call it before the Ports are used.
func (l *Link) SetCapture(c FrameCapture) { l.capture = c }

// captured records a frame about to be sent, if a capture runs.
func (l *Link) captured(frame []byte) {
	if l.capture != nil && l.capture.Enabled() {
		l.capture.WriteFrame(time.Time{}, frame)
	}
}

// Ports are the Link's devices, one per socket: interface by interface,
// Queues each. Each is read by one worker; any of them sends to any
// interface.
func (l *Link) Ports() []device.Device {
	ds := make([]device.Device, len(l.ports))
	for i, p := range l.ports {
		ds[i] = p
	}
	return ds
}

// Stats returns the link layer's counters.
func (l *Link) Stats() *LinkStats { return &l.stats }

// Owned returns the addresses the Link answers for.
func (l *Link) Owned() []netip.Addr { return slices.Clone(l.state.Load().ownedList) }

// Refresh rereads the namespace: routes, kernel addresses (the sockets'
// filters change with them) and the kernel's neighbour entries. It also
// drops packets that waited too long for a neighbour.
func (l *Link) Refresh() error {
	l.wait.expire(l)
	local, err := l.localAddrs()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refresh(l.state.Load().ownedList, local, false)
}

// SetOwned changes the addresses the Link answers for and announces the
// new ones.
func (l *Link) SetOwned(owned []netip.Addr) error {
	local, err := l.localAddrs()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refresh(owned, local, true)
}

// refresh builds and installs a new state. Caller holds l.mu (or owns l
// alone, in OpenLink).
func (l *Link) refresh(owned, local []netip.Addr, announce bool) error {
	old := l.state.Load()
	st := &linkState{owned: map[netip.Addr]bool{}, local: local}
	for _, a := range owned {
		a = a.Unmap()
		if !st.owned[a] {
			st.owned[a] = true
			st.ownedList = append(st.ownedList, a)
		}
	}
	for _, a := range st.ownedList {
		if slices.Contains(local, a) {
			return fmt.Errorf("%v is a kernel address in this namespace: in AF_PACKET mode vsgate answers ARP/ND for it itself; remove it (ip addr del %v/... dev ...)", a, a)
		}
	}
	for i, ifc := range l.ifs {
		st.responders = append(st.responders, NewResponder(ifc.mac, st.ownedList))
		st.src = append(st.src, [2]netip.Addr{})
		mtu := ifc.mtu
		if link, err := l.nl.LinkByIndex(ifc.index); err == nil && link.Attrs().MTU > 0 {
			mtu = link.Attrs().MTU
		}
		st.mtu = append(st.mtu, mtu)
		if err := l.neigh.LoadKernel(l.nl, ifc.index); err != nil {
			return err
		}
		addrs, err := l.nl.AddrList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifc.index}}, unix.AF_UNSPEC)
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", ifc.name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if fam := b2i(ip.Is6()); !st.src[i][fam].IsValid() || (ip.Is6() && ip.IsLinkLocalUnicast()) {
				st.src[i][fam] = ip // IPv6 solicitations prefer the link-local source (RFC 4861 §7.2.2)
			}
		}
	}
	routes, err := l.routes()
	if err != nil {
		return err
	}
	st.routes = routes
	// Requests from an interface without a kernel address come from an
	// owned address in one of its on-link subnets.
	for i := range l.ifs {
		for _, a := range st.ownedList {
			if fam := b2i(a.Is6()); !st.src[i][fam].IsValid() {
				if r, ok := st.lookup(a); ok && r.iface == i && !r.via.IsValid() {
					st.src[i][fam] = a
				}
			}
		}
	}
	if old == nil || !slices.Equal(old.local, local) {
		for _, ifc := range l.ifs {
			for _, s := range ifc.socks {
				if err := s.SetFilter(FilterSpec{MAC: ifc.mac, Local: local, ControlOnly: ifc.prog != nil}); err != nil {
					return err
				}
			}
			if ifc.prog != nil {
				if err := ifc.prog.SetLocal(local); err != nil {
					return err
				}
			}
		}
	}
	l.state.Store(st)
	if announce {
		var fresh []netip.Addr
		for _, a := range st.ownedList {
			if old == nil || !old.owned[a] {
				fresh = append(fresh, a)
			}
		}
		l.announce(st, fresh)
	}
	return nil
}

// Announce sends a gratuitous ARP or unsolicited neighbour advertisement
// for every owned address, on the interfaces whose subnets hold it (on
// all of them for an address in none), so that neighbours that cached
// another MAC for it switch to vsgate's.
func (l *Link) Announce() {
	st := l.state.Load()
	l.announce(st, st.ownedList)
}

func (l *Link) announce(st *linkState, addrs []netip.Addr) {
	var out controlFrame
	for _, a := range addrs {
		r, ok := st.lookup(a)
		for i, ifc := range l.ifs {
			if ok && !r.via.IsValid() && r.iface != i {
				continue
			}
			if err := out.send(ifc.socks[0], st.responders[i].Announce(out.frame(), a)); err != nil {
				l.log.Warn("announce", "addr", a, "interface", ifc.name, "err", err)
			}
		}
	}
}

// controlFrame is an ARP or neighbour discovery frame to send on a socket
// with PACKET_VNET_HDR: an empty virtio-net header, then the frame.
type controlFrame [packet.VNetHdrSize + ReplySize]byte

// frame is where the frame goes (ReplySize bytes).
func (c *controlFrame) frame() []byte { return c[packet.VNetHdrSize:] }

// send sends the n-byte frame (after an empty header).
func (c *controlFrame) send(s *Socket, n int) error {
	clear(c[:packet.VNetHdrSize])
	return s.Write(c[:packet.VNetHdrSize+n])
}

// localAddrs lists the kernel's addresses in the namespace, loopback
// aside: IP packets to them are the host's.
func (l *Link) localAddrs() ([]netip.Addr, error) {
	addrs, err := l.nl.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("kernel addresses: %w", err)
	}
	var local []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLoopback() && !slices.Contains(local, ip.Unmap()) {
			local = append(local, ip.Unmap())
		}
	}
	slices.SortFunc(local, netip.Addr.Compare)
	if len(local) > maxFilterAddrs {
		return nil, fmt.Errorf("the namespace has %d addresses; the socket filter holds at most %d", len(local), maxFilterAddrs)
	}
	return local, nil
}

// routes reads the main routing table's unicast routes through the owned
// interfaces, longest prefix first.
func (l *Link) routes() ([]route, error) {
	var rs []route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := l.nl.RouteList(nil, fam)
		if err != nil {
			return nil, fmt.Errorf("routes: %w", err)
		}
		for _, r := range list {
			if r.Type != unix.RTN_UNICAST {
				continue
			}
			link, gw := r.LinkIndex, r.Gw
			if len(r.MultiPath) > 0 {
				// ECMP: the first next hop through an owned interface.
				// vsgate does not spread flows over the others.
				link, gw = 0, nil
				for _, nh := range r.MultiPath {
					if slices.ContainsFunc(l.ifs, func(ifc *linkIface) bool { return ifc.index == nh.LinkIndex }) {
						link, gw = nh.LinkIndex, nh.Gw
						break
					}
				}
			}
			i := slices.IndexFunc(l.ifs, func(ifc *linkIface) bool { return ifc.index == link })
			if i < 0 {
				continue
			}
			var dst netip.Prefix
			if r.Dst == nil {
				dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
				if fam == netlink.FAMILY_V6 {
					dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
				}
			} else {
				a, _ := netip.AddrFromSlice(r.Dst.IP)
				ones, _ := r.Dst.Mask.Size()
				dst = netip.PrefixFrom(a.Unmap(), ones).Masked()
			}
			via, _ := netip.AddrFromSlice(gw)
			rs = append(rs, route{dst: dst, iface: i, via: via.Unmap()})
		}
	}
	slices.SortStableFunc(rs, func(a, b route) int { return b.dst.Bits() - a.dst.Bits() })
	return rs, nil
}

// Close closes every socket and the netlink handle.
func (l *Link) Close() error {
	for _, ifc := range l.ifs {
		if ifc.prog != nil {
			ifc.prog.Close() // detached first: the kernel has the frames again
		}
		for _, s := range ifc.data {
			s.Close()
		}
		for _, s := range ifc.socks {
			s.Close()
		}
	}
	l.control.Wait()
	if l.nl != nil {
		l.nl.Close()
	}
	return nil
}

// prepare makes the IP packet at b[portHeadroom:] ready to send: it
// finds the interface its destination routes to and the next hop's MAC,
// writes the Ethernet header in front of the packet and returns the
// interface's socket for queue. b starts with the packet's virtio-net
// header, as Read left it: a super-packet goes out whole, a partial
// checksum stays partial (refreshed for the rewritten addresses). It
// returns nil for a packet that is dropped (counted) or that waits, as a
// copy, while vsgate asks for its next hop.
//
// via, when valid, is where the packet goes instead of its destination
// (direct routing): an on-link real server, whose MAC the frame gets;
// the destination (a VIP, owned) is left as it is.
func (l *Link) prepare(queue int, b []byte, via netip.Addr) dataSocket {
	frame, ip := b[packet.VNetHdrSize:], b[portHeadroom:]
	var dst netip.Addr
	var etherType uint16
	switch {
	case len(ip) >= packet.IPv4MinimumSize && ip[0]>>4 == 4:
		dst, etherType = netip.AddrFrom4([4]byte(ip[16:20])), packet.EtherTypeIPv4
	case len(ip) >= packet.IPv6HeaderSize && ip[0]>>4 == 6:
		dst, etherType = netip.AddrFrom16([16]byte(ip[24:40])), packet.EtherTypeIPv6
	default:
		l.stats.Short.Add(1)
		return nil
	}
	st := l.state.Load()
	if via.IsValid() {
		dst = via
	} else if st.owned[dst] {
		// Nothing translated it and it would come straight back.
		l.stats.ToSelf.Add(1)
		return nil
	}
	r, ok := st.lookup(dst)
	if !ok || via.IsValid() && r.via.IsValid() {
		// No route; or a direct-routing real server that is not on
		// one of the owned links.
		l.stats.NoRoute.Add(1)
		return nil
	}
	hop := dst
	if r.via.IsValid() {
		hop = r.via
	}
	packet.VNetHdr(b[:packet.VNetHdrSize]).RefreshPartial(ip, packet.EthernetMinimumSize)
	ifc := l.ifs[r.iface]
	mac, ok := l.neigh.Lookup(hop)
	if !ok {
		l.wait.add(l, st, r.iface, hop, b)
		return nil
	}
	packet.PutEthernet(frame, mac, ifc.mac, etherType)
	return ifc.data[queue%len(ifc.data)]
}

// control handles a received ARP or neighbour discovery frame: learn the
// sender, release what waited for it, answer if it asks for an owned
// address.
func (l *Link) handleControl(iface int, c *Control, reply *controlFrame) {
	l.neigh.LearnFrom(c)
	l.wait.release(l)
	if n := l.state.Load().responders[iface].Reply(c, reply.frame()); n > 0 {
		if err := reply.send(l.ifs[iface].socks[0], n); err == nil {
			l.stats.Replies.Add(1)
		}
	}
}

// request asks on interface i where hop is.
func (l *Link) request(st *linkState, i int, hop netip.Addr) {
	ifc := l.ifs[i]
	var out controlFrame
	src := st.src[i][b2i(hop.Is6())]
	if hop.Is6() && !src.IsValid() {
		src = netip.IPv6Unspecified()
	} else if !src.IsValid() {
		src = netip.IPv4Unspecified() // an ARP probe (RFC 5227): still answered
	}
	if err := out.send(ifc.socks[0], Request(out.frame(), ifc.mac, src, hop)); err == nil {
		l.stats.Requests.Add(1)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Port is one socket of a Link as a device.Device: Read returns the IP
// packets received on it (and handles ARP and neighbour discovery
// itself); Write sends packets out of whichever interface they route to.
type Port struct {
	link  *Link
	iface int
	queue int
	sock  dataSocket
	ctl   Control      // Read's scratch
	reply controlFrame // Read's scratch
	seg   []byte       // Segments' scratch
	icmp  []byte       // timeExceeded's scratch (Read's goroutine)
}

// portHeadroom is what a Port wants in front of every packet: the
// virtio-net header, then the Ethernet header.
const portHeadroom = packet.VNetHdrSize + packet.EthernetMinimumSize

var _ device.Device = (*Port)(nil)

// Headroom is the virtio-net and Ethernet headers: Read leaves them in
// front of every packet and Write wants them back there.
func (p *Port) Headroom() int { return portHeadroom }

// BatchSize is how many packets one Read returns at most, and one Write
// should get: a batch is read from the ring without a system call per
// frame and sent with one sendmmsg(2) per egress interface.
func (p *Port) BatchSize() int { return portBatch }

// portBatch is a Port's BatchSize: workers give every buffer room for a
// super-packet, so 32 of them are 2 MiB per worker.
const portBatch = 32

// MTU is the interface's MTU when the Link was opened.
func (p *Port) MTU() (int, error) { return p.link.ifs[p.iface].mtu, nil }

// Name is the interface's name.
func (p *Port) Name() string { return p.link.ifs[p.iface].name }

// KernelHasFrames reports whether the kernel keeps every frame this port
// reads (an AF_PACKET socket gets copies), so that what is the kernel's
// to terminate (an L7 service's TCP) needs nothing from vsgate; an AF_XDP
// socket's frames were taken from the kernel.
func (p *Port) KernelHasFrames() bool {
	_, xdp := p.sock.(*afxdp.Socket)
	return !xdp
}

// Close closes this port's socket; a pending Read returns.
func (p *Port) Close() error { return p.sock.Close() }

// Read reads the IP packets the ring holds, waiting for the first, into
// bufs[i][offset:] (at most len(bufs)) and returns how many; their
// Ethernet and virtio-net headers land in front of them (the headroom),
// where Write finds the virtio-net header again. A packet may be a GSO
// super-packet of up to 64 KiB, or have a partial transport checksum,
// as a veth hands them over: the engine translates it whole, the kernel
// finishes it after Write (Segments splits it for a consumer that needs
// plain packets). ARP and neighbour discovery frames are handled here and
// not returned; Read may reorder the elements of bufs. On AF_XDP, Read
// replaces bufs[i] by the frame's chunk of the UMEM (device.Device's
// Read): Write sends it from there until the next Read.
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	const eth = packet.EthernetMinimumSize
	if offset < portHeadroom {
		return 0, fmt.Errorf("afpacket: read offset %d, want at least %d", offset, portHeadroom)
	}
	bufs = bufs[:min(len(bufs), len(sizes))]
	for {
		n, err := p.sock.ReadBatch(bufs, sizes, offset-eth)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				err = fmt.Errorf("%w: %w", os.ErrClosed, err)
			}
			return 0, err
		}
		kept := 0
		for j := range n {
			f := bufs[j][offset-eth : offset-eth+sizes[j]]
			if !p.isPacket(f) {
				continue
			}
			bufs[kept], bufs[j] = bufs[j], bufs[kept]
			sizes[kept] = ipLength(f[eth:])
			kept++
		}
		if kept > 0 {
			return kept, nil
		}
	}
}

// isPacket reports whether frame is an IP packet for the engine; it
// handles ARP and neighbour discovery itself, and counts what is too short.
func (p *Port) isPacket(f []byte) bool {
	const eth = packet.EthernetMinimumSize
	if len(f) < eth {
		p.link.stats.Short.Add(1)
		return false
	}
	switch packet.Ethernet(f).Type() {
	case packet.EtherTypeIPv4:
		if len(f) < eth+packet.IPv4MinimumSize {
			p.link.stats.Short.Add(1)
			return false
		}
		return p.decrementTTL(f[eth:])
	case packet.EtherTypeIPv6:
		if len(f) < eth+packet.IPv6HeaderSize {
			p.link.stats.Short.Add(1)
			return false
		}
		ip := f[eth:]
		if !(ip[6] == packet.ProtoICMPv6 && len(ip) > packet.IPv6HeaderSize &&
			(ip[packet.IPv6HeaderSize] == packet.ICMPv6NeighborSolicit || ip[packet.IPv6HeaderSize] == packet.ICMPv6NeighborAdvert)) {
			return p.decrementTTL(ip)
		}
	}
	if ParseControl(f, &p.ctl) {
		p.link.handleControl(p.iface, &p.ctl, &p.reply)
	}
	return false
}

// decrementTTL does a router's input step for ip, which vsgate forwards
// (or terminates, for an L7 service, where it does not matter): the IPv4
// TTL or IPv6 hop limit goes down by one, the IPv4 header checksum is
// adjusted incrementally (RFC 1624), and a packet
// that arrives with 1 or 0 left is dropped and counted — on a TUN the
// kernel's forwarding does the same, and answered with an ICMP time
// exceeded (timeExceeded). It reports whether the packet goes on.
func (p *Port) decrementTTL(ip []byte) bool {
	v4 := ip[0]>>4 == 4
	ttl := packet.IPv6(ip).HopLimit()
	if v4 {
		ttl = packet.IPv4(ip).TTL()
	}
	if ttl <= 1 {
		p.link.stats.TTL.Add(1)
		p.timeExceeded(ip)
		return false
	}
	if v4 {
		packet.IPv4(ip).SetTTL(ttl - 1) // fixes the header checksum incrementally
	} else {
		packet.IPv6(ip).SetHopLimit(ttl - 1)
	}
	return true
}

// Segments calls fn with the plain packets that the n-byte packet Read
// left at buf[offset:] stands for: the segments of a super-packet, or the
// packet itself, each with complete checksums. It is for consumers that
// take only such packets (the L7 netstack); fn must not keep its
// argument. It reports false (and counts the packet Short) when the
// virtio-net header describes a super-packet it cannot follow. Not safe
// for concurrent use with itself.
func (p *Port) Segments(buf []byte, offset, n int, fn func([]byte)) bool {
	if p.seg == nil {
		p.seg = make([]byte, device.MaxPacket)
	}
	if !packet.VNetHdr(buf[offset-portHeadroom:offset-packet.EthernetMinimumSize]).Segments(buf[offset:offset+n], p.seg, packet.EthernetMinimumSize, fn) {
		p.link.stats.Short.Add(1)
		return false
	}
	return true
}

// ChecksumTrusted reports whether the kernel vouched for the transport
// checksum of the packet Read left at buf[offset:] (packet.VNetHdr's
// ChecksumTrusted).
func (p *Port) ChecksumTrusted(buf []byte, offset int) bool {
	return packet.VNetHdr(buf[offset-portHeadroom : offset-packet.EthernetMinimumSize]).ChecksumTrusted()
}

// SegmentCount is how many packets the n-byte packet Read left at
// buf[offset:] stands for: a super-packet's segments, else 1.
func (p *Port) SegmentCount(buf []byte, offset, n int) int {
	return packet.VNetHdr(buf[offset-portHeadroom:offset-packet.EthernetMinimumSize]).SegmentCount(buf[offset:offset+n], packet.EthernetMinimumSize)
}

// SetOffload writes into buf's headroom how the kernel is to finish the
// packet at buf[offset:] (a partial checksum, segmentation), for a packet
// made elsewhere: the L7 netstack's TCP with host GSO.
func (p *Port) SetOffload(buf []byte, offset int, o packet.Offload) {
	packet.VNetHdr(buf[offset-portHeadroom:offset-packet.EthernetMinimumSize]).SetOffload(o, packet.EthernetMinimumSize)
}

// ipLength is the length of the IP packet at the start of b without the
// padding of a minimum-size Ethernet frame. b holds at least the fixed
// IP header.
func ipLength(b []byte) int {
	n := packet.IPv6HeaderSize + int(packet.IPv6(b).PayloadLength())
	if b[0]>>4 == 4 {
		n = int(packet.IPv4(b).TotalLength())
	}
	if n < packet.IPv4MinimumSize || n > len(b) {
		return len(b) // malformed: the engine drops it and counts why
	}
	return n
}

// Write sends bufs[i][offset:] each as one packet, to the interface and
// next hop its destination routes to, with the virtio-net header Read
// left in front of it (a buffer that did not come from Read must have
// zeros there); runs of packets for one interface go in one sendmmsg(2),
// and runs of one UDP flow's datagrams in one super-packet (packet.CoalesceUDP,
// into the first one's spare capacity: give buffers room for MaxPacket).
// It returns len(bufs) unless a socket fails: packets with no route, or
// to an owned address, are dropped and counted (Stats), not errors.
func (p *Port) Write(bufs [][]byte, offset int) (int, error) {
	return p.write(bufs, offset, nil)
}

// WriteVia is Write for packets that go to via[i] rather than to their
// destination (direct routing: the frame gets the real server's MAC, the
// packet stays as it is). via[i] must be on one of the owned links.
func (p *Port) WriteVia(bufs [][]byte, offset int, via []netip.Addr) (int, error) {
	return p.write(bufs, offset, via)
}

func (p *Port) write(bufs [][]byte, offset int, via []netip.Addr) (int, error) {
	if offset < portHeadroom {
		return 0, fmt.Errorf("afpacket: write offset %d, want at least %d", offset, portHeadroom)
	}
	var batch [MaxBatch][]byte
	var to dataSocket
	var first error
	k, merged := 0, false
	for i := 0; i < len(bufs); {
		b, next := bufs[i][offset-portHeadroom:], i+1
		var hop netip.Addr
		if via != nil {
			hop = via[i]
		} else if !p.link.noUSO.Load() {
			b, next = packet.CoalesceUDP(bufs, i, offset, packet.EthernetMinimumSize, MaxBatch)
		}
		s := p.link.prepare(p.queue, b, hop)
		if s == nil {
			i = next
			continue
		}
		if (s != to && k > 0) || k == len(batch) {
			if err := p.link.writeBatch(to, batch[:k], merged); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return i, err
				}
				first = cmp.Or(first, err)
			}
			k, merged = 0, false
		}
		p.link.captured(b[packet.VNetHdrSize:])
		to, batch[k] = s, b
		merged = merged || next > i+1
		k++
		i = next
	}
	if k > 0 {
		if err := p.link.writeBatch(to, batch[:k], merged); err != nil {
			first = cmp.Or(first, err)
		}
	}
	return len(bufs), first
}

// writeBatch sends frames on s, with os.ErrClosed for a closed socket (as
// the gateway expects of a device). A kernel that refuses UDP GSO
// (VIRTIO_NET_HDR_GSO_UDP_L4 arrived in Linux 6.2) refuses a batch that
// holds merged datagrams with EINVAL: merging is then turned off for good.
func (l *Link) writeBatch(s dataSocket, frames [][]byte, merged bool) error {
	// Called on the concrete types: through the interface, the compiler
	// could not see that frames (the caller's array) stays on the stack.
	var err error
	switch s := s.(type) {
	case *Socket:
		_, err = s.WriteBatch(frames)
	case *afxdp.Socket:
		_, err = s.WriteBatch(frames)
	}
	switch {
	case errors.Is(err, net.ErrClosed):
		err = fmt.Errorf("%w: %w", os.ErrClosed, err)
	case merged && errors.Is(err, unix.EINVAL) && !l.noUSO.Swap(true):
		l.log.Warn("the kernel refuses UDP GSO packets: UDP datagrams are no longer merged", "err", err)
	}
	return err
}

// SocketDrops sums the sockets' counters: frames dropped because they did
// not fit (truncated), carried a VLAN tag (tagged), or the kernel would
// not send them (refused).
func (l *Link) SocketDrops() (truncated, tagged, refused uint64) {
	for _, ifc := range l.ifs {
		for _, s := range ifc.socks {
			truncated += s.Truncated.Load()
			tagged += s.Tagged.Load()
			refused += s.Refused.Load()
		}
		if ifc.prog != nil {
			for _, d := range ifc.data {
				x := d.(*afxdp.Socket)
				truncated += x.Truncated.Load()
				refused += x.Refused.Load()
			}
		}
	}
	return truncated, tagged, refused
}

// RingDrops returns, by interface, the frames the kernel dropped because a
// socket's ring was full (PACKET_STATISTICS tp_drops, summed over the
// interface's sockets): losses before vsgate reads anything.
func (l *Link) RingDrops() map[string]uint64 {
	out := map[string]uint64{}
	for _, ifc := range l.ifs {
		for _, s := range ifc.data {
			out[ifc.name] += s.RingDrops()
		}
	}
	return out
}

// EgressMTU returns the MTU of the owned interface dst routes out of and
// the Link's address of dst's family on it (the source of the messages
// vsgate sends from there), or false if no owned interface leads to dst.
func (l *Link) EgressMTU(dst netip.Addr) (int, netip.Addr, bool) {
	st := l.state.Load()
	r, ok := st.lookup(dst)
	if !ok {
		return 0, netip.Addr{}, false
	}
	return st.mtu[r.iface], st.src[r.iface][b2i(dst.Is6())], true
}

// MinMTU returns the smallest MTU of the owned interfaces: no packet up to
// that size is too big for any of them.
func (l *Link) MinMTU() int {
	m := 0
	for _, mtu := range l.state.Load().mtu {
		if m == 0 || mtu < m {
			m = mtu
		}
	}
	return m
}
