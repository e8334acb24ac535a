package netlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Well-known names of the standard topologies.
const (
	HostClient = "client" // the client of "basic" and "ecmp"
	HostGW     = "gw"     // the gateway of "basic" and "clients"
	HostSwitch = "sw"     // the backend-side switch (a bridge in its own namespace)
	HostCSW    = "csw"    // the client-side switch of "clients"
	HostRouter = "rtr"    // the upstream router of "ecmp"
	HostInside = "rin"    // the real servers' router of "ecmp"

	IfGWOut = "out"  // gateway interface towards the clients
	IfGWIn  = "in"   // gateway interface towards the backends
	IfHost  = "eth0" // the one interface of a client or backend
	IfBr    = "br"   // the bridge of a switch
)

// Names of the standard topologies, for Standard.
const (
	TopoBasic   = "basic"
	TopoClients = "clients"
	TopoECMP    = "ecmp"
	TopoL2      = "l2"
	TopoDR      = "dr"
)

// addr and pfx parse literals of the address plan; they panic on a typo.
func addr(s string) netip.Addr        { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix       { return netip.MustParsePrefix(s) }
func def4() netip.Prefix              { return netip.PrefixFrom(netip.IPv4Unspecified(), 0) }
func def6() netip.Prefix              { return netip.PrefixFrom(netip.IPv6Unspecified(), 0) }
func host4(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
func host6(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 128) }

// on returns a with the on-link prefix length of net n.
func on(a string, n netip.Prefix) netip.Prefix { return netip.PrefixFrom(addr(a), n.Bits()) }

// forwarding are the sysctls of a router.
func forwarding() []Sysctl {
	return []Sysctl{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
	}
}

// Standard returns a standard topology by name: "basic", "clients" (with n
// clients; n is ignored by the others), "ecmp" or "l2".
func Standard(name string, n int) (*Topology, error) {
	switch name {
	case TopoBasic:
		return Basic(), nil
	case TopoClients:
		return Clients(n)
	case TopoECMP:
		return ECMP(), nil
	case TopoL2:
		return L2(), nil
	case TopoDR:
		return DR(), nil
	}
	return nil, fmt.Errorf("netlab: unknown topology %q: want %s, %s, %s, %s or %s", name, TopoBasic, TopoClients, TopoECMP, TopoL2, TopoDR)
}

// basicPlan is the address plan shared by the standard topologies.
func basicPlan() Plan {
	return Plan{
		Gateways:   []string{HostGW},
		Backends:   []string{"b1", "b2", "b3"},
		VIP4:       addr("198.18.0.10"),
		VIP6:       addr("2001:db8::10"),
		Masq4:      addr("198.18.0.20"),
		Masq6:      addr("2001:db8::20"),
		ClientNet4: pfx("198.18.0.0/24"),
		ClientNet6: pfx("2001:db8::/64"),
		ServerNet4: pfx("198.18.2.0/24"),
		ServerNet6: pfx("2001:db8:2::/64"),
		GatewayOut: IfGWOut,
		GatewayIn:  IfGWIn,
	}
}

// backendSide adds the switch, the backends and the gateways' inside
// links to t: gateway i's kernel gets host address first+i (.first /
// ::first). The backends' default route is via host address via (.via /
// ::via): .1, a kernel gateway's address or on "l2" one that vsgate owns;
// on "ecmp" the inside router's.
func backendSide(t *Topology, gws []string, first, via int) {
	p := t.Plan
	t.Hosts = append(t.Hosts, HostSpec{Name: HostSwitch, Bridges: []BridgeSpec{{Name: IfBr}}})
	for i, gw := range gws {
		t.Links = append(t.Links, LinkSpec{
			A: Endpoint{Host: gw, Name: IfGWIn, Addrs: []netip.Prefix{
				on(fmt.Sprintf("198.18.2.%d", first+i), p.ServerNet4),
				on(fmt.Sprintf("2001:db8:2::%d", first+i), p.ServerNet6),
			}},
			B: Endpoint{Host: HostSwitch, Name: gw, Master: IfBr},
		})
	}
	for i, b := range p.Backends {
		t.Hosts = append(t.Hosts, HostSpec{Name: b, Routes: []Route{
			{Dst: def4(), Via: []netip.Addr{addr(fmt.Sprintf("198.18.2.%d", via))}},
			{Dst: def6(), Via: []netip.Addr{addr(fmt.Sprintf("2001:db8:2::%d", via))}},
		}, Sysctls: []Sysctl{
			// The inside router of "ecmp" forwards on the link it heard
			// from; a redirect must not teach a backend to bypass it.
			{"net.ipv4.conf.all.accept_redirects", "0"},
			{"net.ipv6.conf.all.accept_redirects", "0"},
		}})
		t.Links = append(t.Links, LinkSpec{
			A: Endpoint{Host: b, Name: IfHost, Addrs: []netip.Prefix{
				on(fmt.Sprintf("198.18.2.%d", 11+i), p.ServerNet4),
				on(fmt.Sprintf("2001:db8:2::%d", 11+i), p.ServerNet6),
			}},
			B: Endpoint{Host: HostSwitch, Name: b, Master: IfBr},
		})
	}
}

// VIPName is the virtual server's host name in the labs' hosts files: the
// virtual-server handbook's own, www.fuancn.cn (its real servers, on a private
// /24 there, are the plan's 198.18.2.11.. and are named rs1, rs2, ...).
const VIPName = "www.fuancn.cn"

// labHosts are the hosts-file lines of a lab's client and gateway: the
// handbook's name for the VIP (both families) and rsN for each real
// server (both families).
func labHosts(p Plan) []HostsEntry {
	h := []HostsEntry{{Addr: p.VIP4, Names: []string{VIPName}}, {Addr: p.VIP6, Names: []string{VIPName}}}
	for i := range p.Backends {
		n := fmt.Sprintf("rs%d", i+1)
		h = append(h,
			HostsEntry{Addr: addr(fmt.Sprintf("198.18.2.%d", 11+i)), Names: []string{n}},
			HostsEntry{Addr: addr(fmt.Sprintf("2001:db8:2::%d", 11+i)), Names: []string{n}})
	}
	return h
}

// clientRoutes are a client's routes: the VIP (inside the on-link client
// subnet, so it needs its own route) and the default via the gateway.
func clientRoutes(p Plan) []Route {
	gw4, gw6 := addr("198.18.0.1"), addr("2001:db8::1")
	return []Route{
		{Dst: host4(p.VIP4), Via: []netip.Addr{gw4}},
		{Dst: host6(p.VIP6), Via: []netip.Addr{gw6}},
		{Dst: def4(), Via: []netip.Addr{gw4}},
		{Dst: def6(), Via: []netip.Addr{gw6}},
	}
}

// gatewayOutAddrs are the gateway's outside addresses: .1 and the
// masquerade address.
func gatewayOutAddrs(p Plan) []netip.Prefix {
	return []netip.Prefix{
		on("198.18.0.1", p.ClientNet4), netip.PrefixFrom(p.Masq4, p.ClientNet4.Bits()),
		on("2001:db8::1", p.ClientNet6), netip.PrefixFrom(p.Masq6, p.ClientNet6.Bits()),
	}
}

// Basic is one client, one gateway, and three backends on a bridge behind
// the gateway. See the package doc for the address plan.
//
//	+----------------+     +-------------------------+     +---------------+
//	| client         |     | gw                      |     | sw            |     +---------------+
//	| eth0           +-----+ out             in      +-----+ gw   [br]  b1 +-----+ b1 eth0       |
//	| 198.18.0.2/24  |     | 198.18.0.1/24   .2.1/24 |     |            b2 +--   | 198.18.2.11   |
//	| 2001:db8::2/64 |     | 198.18.0.20 (masq)      |     |            b3 +--   | 2001:db8:2::11|
//	+----------------+     | 2001:db8::1, ::20       |     +---------------+     +---------------+
//	  VIP 198.18.0.10      | 2001:db8:2::1/64        |       b2 .12 / ::12, b3 .13 / ::13
//	  2001:db8::10 via gw  +-------------------------+
func Basic() *Topology {
	t := &Topology{Name: TopoBasic, Plan: basicPlan()}
	t.Plan.Clients = []string{HostClient}
	t.Hosts = []HostSpec{
		{Name: HostClient, Routes: clientRoutes(t.Plan), Hosts: labHosts(t.Plan)},
		{Name: HostGW, Sysctls: forwarding(), Hosts: labHosts(t.Plan)},
	}
	t.Links = []LinkSpec{{
		A: Endpoint{Host: HostClient, Name: IfHost, Addrs: []netip.Prefix{
			on("198.18.0.2", t.Plan.ClientNet4), on("2001:db8::2", t.Plan.ClientNet6)}},
		B: Endpoint{Host: HostGW, Name: IfGWOut, Addrs: gatewayOutAddrs(t.Plan)},
	}}
	backendSide(t, []string{HostGW}, 1, 1)
	return t
}

// MaxClients is the most clients Clients accepts: they use 198.18.0.101 up
// to 198.18.0.200 and 2001:db8::101 up to 2001:db8::200 (hex).
const MaxClients = 100

// Clients is Basic with n clients c1..cn on a client-side switch.
//
//	+-----------------+     +-------------------+
//	| c1 198.18.0.101 +--+  | csw               |     +----+     +----+     +----+
//	| c2 198.18.0.102 +--+--+ c1 c2 .. [br]  gw +-----+ gw +-----+ sw +-----+ b1 | b2 b3
//	| ...             |  |  +-------------------+     +----+     +----+     +----+
//	| cn              +--+   (2001:db8::101 ...)       as in Basic
//	+-----------------+
func Clients(n int) (*Topology, error) {
	if n < 1 || n > MaxClients {
		return nil, fmt.Errorf("netlab: clients topology: n = %d, want 1..%d", n, MaxClients)
	}
	t := &Topology{Name: TopoClients, Plan: basicPlan()}
	t.Hosts = []HostSpec{
		{Name: HostCSW, Bridges: []BridgeSpec{{Name: IfBr}}},
		{Name: HostGW, Sysctls: forwarding()},
	}
	t.Links = []LinkSpec{{
		A: Endpoint{Host: HostGW, Name: IfGWOut, Addrs: gatewayOutAddrs(t.Plan)},
		B: Endpoint{Host: HostCSW, Name: HostGW, Master: IfBr},
	}}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("c%d", i)
		t.Plan.Clients = append(t.Plan.Clients, name)
		t.Hosts = append(t.Hosts, HostSpec{Name: name, Routes: clientRoutes(t.Plan)})
		t.Links = append(t.Links, LinkSpec{
			A: Endpoint{Host: name, Name: IfHost, Addrs: []netip.Prefix{
				on(fmt.Sprintf("198.18.0.%d", 100+i), t.Plan.ClientNet4),
				on(fmt.Sprintf("2001:db8::%x", 0x100+i), t.Plan.ClientNet6)}},
			B: Endpoint{Host: HostCSW, Name: name, Master: IfBr},
		})
	}
	backendSide(t, []string{HostGW}, 1, 1)
	return t, nil
}

// ECMP is several gateways behind real routers: the "ecmp" topology of
// the scale-out work. An upstream router (rtr, running FRR: Host.StartFRR
// with ECMPRouterConf) spreads the client's flows over the gateways by
// ECMP on an L4 hash, from the VIP routes the gateways announce by BGP;
// the gateways share the real servers' LAN, where an inside router (rin,
// FRR with ECMPInsideConf) is the real servers' default gateway and
// spreads their answers over the gateways likewise, from the default
// routes the gateways announce to it. A gateway that stops announcing (it
// died, or stops) leaves both routers' multipath routes within a second,
// so neither direction of a flow needs the gateway that saw it begin.
// Nothing routes the VIP until a gateway announces it. gw3 is there for a
// gateway that joins later. No masquerade address.
//
//	                               +--------------------------+
//	                          +----+ gw1 out 198.18.4.2  in .2.1 +--+
//	+--------+   +---------+  |    +--------------------------+  |   +-----+
//	| client +---+ rtr  g1 +--+----+ gw2 out 198.18.5.2  in .2.2 +--+---+ sw  +-- b1 b2 b3 (.2.11-.13,
//	| .0.2   |   | c .0.1 g2|  |    +--------------------------+  |   | [br]|     default via .2.254)
//	+--------+   |  AS 65000|  +----+ gw3 out 198.18.6.2  in .2.3 +--+   |     +-- rin .2.254 (AS 65001)
//	             +---------+       +--------------------------+      +-----+
//	  rtr g1..g3 198.18.4.1, .5.1, .6.1 /24; IPv6 2001:db8:4::/64 ... 2001:db8:6::/64
//	  the gateways are AS 65010 (ECMPGatewayAS)
func ECMP() *Topology {
	p := basicPlan()
	p.Gateways = []string{"gw1", "gw2", "gw3"}
	p.Router = HostRouter
	p.InsideRouter = HostInside
	p.Clients = []string{HostClient}
	p.Masq4, p.Masq6 = netip.Addr{}, netip.Addr{}
	t := &Topology{Name: TopoECMP, Plan: p}
	l4hash := []Sysctl{
		{"net.ipv4.fib_multipath_hash_policy", "1"},
		{"net.ipv6.fib_multipath_hash_policy", "1"},
	}
	t.Hosts = []HostSpec{
		{Name: HostClient, Routes: clientRoutes(p)},
		{Name: HostRouter, Sysctls: append(forwarding(), l4hash...)},
	}
	t.Links = []LinkSpec{{
		A: Endpoint{Host: HostClient, Name: IfHost, Addrs: []netip.Prefix{
			on("198.18.0.2", p.ClientNet4), on("2001:db8::2", p.ClientNet6)}},
		B: Endpoint{Host: HostRouter, Name: "c", Addrs: []netip.Prefix{
			on("198.18.0.1", p.ClientNet4), on("2001:db8::1", p.ClientNet6)}},
	}}
	for i, gw := range p.Gateways {
		out4, out6 := p.GatewayUplink(i)
		t.Hosts = append(t.Hosts, HostSpec{Name: gw, Sysctls: forwarding(), Hosts: labHosts(p), Routes: []Route{
			{Dst: def4(), Via: []netip.Addr{out4.Peer}},
			{Dst: def6(), Via: []netip.Addr{out6.Peer}},
		}})
		t.Links = append(t.Links, LinkSpec{
			A: Endpoint{Host: HostRouter, Name: fmt.Sprintf("g%d", i+1), Addrs: []netip.Prefix{
				netip.PrefixFrom(out4.Peer, 24), netip.PrefixFrom(out6.Peer, 64)}},
			B: Endpoint{Host: gw, Name: IfGWOut, Addrs: []netip.Prefix{
				netip.PrefixFrom(out4.Self, 24), netip.PrefixFrom(out6.Self, 64)}},
		})
	}
	backendSide(t, p.Gateways, 1, 254)
	// The inside router, on the backend switch. It forwards back out of
	// the interface it heard from, so it sends no redirects.
	t.Hosts = append(t.Hosts, HostSpec{Name: HostInside, Sysctls: append(append(forwarding(), l4hash...),
		Sysctl{"net.ipv4.conf.all.send_redirects", "0"},
		Sysctl{"net.ipv4.conf.default.send_redirects", "0"})})
	t.Links = append(t.Links, LinkSpec{
		A: Endpoint{Host: HostInside, Name: IfHost, Addrs: []netip.Prefix{
			on("198.18.2.254", p.ServerNet4), on("2001:db8:2::254", p.ServerNet6)}},
		B: Endpoint{Host: HostSwitch, Name: HostInside, Master: IfBr},
	})
	return t
}

// AS numbers of "ecmp".
const (
	ECMPRouterAS  = 65000 // rtr
	ECMPInsideAS  = 65001 // rin
	ECMPGatewayAS = 65010 // every gateway
)

// Uplink is one end of a link: the host's own address and the other
// end's.
type Uplink struct{ Self, Peer netip.Addr }

// GatewayUplink is gateway i's link to the upstream router of "ecmp", in
// each family.
func (p Plan) GatewayUplink(i int) (v4, v6 Uplink) {
	return Uplink{addr(fmt.Sprintf("198.18.%d.2", 4+i)), addr(fmt.Sprintf("198.18.%d.1", 4+i))},
		Uplink{addr(fmt.Sprintf("2001:db8:%d::2", 4+i)), addr(fmt.Sprintf("2001:db8:%d::1", 4+i))}
}

// GatewayInside is gateway i's address on the backend LAN of "ecmp", in
// each family, with the inside router's as Peer.
func (p Plan) GatewayInside(i int) (v4, v6 Uplink) {
	return Uplink{addr(fmt.Sprintf("198.18.2.%d", 1+i)), addr("198.18.2.254")},
		Uplink{addr(fmt.Sprintf("2001:db8:2::%d", 1+i)), addr("2001:db8:2::254")}
}

// ECMPRouterConf is the upstream router's bgpd configuration for "ecmp":
// a session with every gateway in each family (1 s keepalive, 3 s hold,
// BFD with the profile FRRBFDProfile beside it), only the VIPs' host
// routes taken from them, and multipath over all of them.
func ECMPRouterConf(p Plan) string {
	var nb4, nb6 []netip.Addr
	for i := range p.Gateways {
		v4, v6 := p.GatewayUplink(i)
		nb4, nb6 = append(nb4, v4.Self), append(nb6, v6.Self)
	}
	accept4 := fmt.Sprintf("%v le 32", p.ClientNet4)
	accept6 := fmt.Sprintf("%v le 128", p.ClientNet6)
	return frrBGPConf("rtr", addr("198.18.0.1"), ECMPRouterAS, nb4, nb6, []string{accept4}, []string{accept6})
}

// ECMPInsideConf is the inside router's bgpd configuration for "ecmp":
// sessions with every gateway's inside address, and only the default
// routes and host routes of the client side (a gateway's own FULLNAT
// address) taken from them, with multipath.
func ECMPInsideConf(p Plan) string {
	var nb4, nb6 []netip.Addr
	for i := range p.Gateways {
		v4, v6 := p.GatewayInside(i)
		nb4, nb6 = append(nb4, v4.Self), append(nb6, v6.Self)
	}
	return frrBGPConf("rin", addr("198.18.2.254"), ECMPInsideAS, nb4, nb6,
		[]string{"0.0.0.0/0", fmt.Sprintf("%v ge 32", p.ClientNet4)}, []string{"::/0", fmt.Sprintf("%v ge 128", p.ClientNet6)})
}

// frrBGPConf is a bgpd configuration: AS as, eBGP sessions with the
// gateways (ECMPGatewayAS) at nb4 and nb6, each family taking only the
// prefixes that match accept4 / accept6 (prefix-list entries), multipath.
func frrBGPConf(name string, id netip.Addr, as int, nb4, nb6 []netip.Addr, accept4, accept6 []string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("frr defaults datacenter")
	w("hostname %s", name)
	w("log stdout informational")
	for i, a := range accept4 {
		w("ip prefix-list from-gateways seq %d permit %s", 5*(i+1), a)
	}
	for i, a := range accept6 {
		w("ipv6 prefix-list from-gateways6 seq %d permit %s", 5*(i+1), a)
	}
	w("router bgp %d", as)
	w(" bgp router-id %v", id)
	w(" no bgp ebgp-requires-policy")
	w(" no bgp default ipv4-unicast")
	w(" bgp bestpath as-path multipath-relax")
	for _, n := range append(append([]netip.Addr{}, nb4...), nb6...) {
		w(" neighbor %v remote-as %d", n, ECMPGatewayAS)
		w(" neighbor %v timers 1 3", n)
		w(" neighbor %v timers connect 1", n)
		w(" neighbor %v bfd profile %s", n, FRRBFDProfile)
	}
	for _, af := range []struct {
		name, list string
		nbs        []netip.Addr
	}{{"ipv4", "from-gateways", nb4}, {"ipv6", "from-gateways6", nb6}} {
		w(" address-family %s unicast", af.name)
		w("  maximum-paths 16")
		for _, n := range af.nbs {
			w("  neighbor %v activate", n)
			w("  neighbor %v prefix-list %s in", n, af.list)
		}
		w(" exit-address-family")
	}
	return b.String()
}

// L2 is Basic for vsgate's AF_PACKET mode: the gateway does not route;
// vsgate owns its two interfaces' gateway addresses (198.18.0.1 and
// 198.18.2.1, 2001:db8::1 and 2001:db8:2::1: Plan.Owned), the VIPs and the
// masquerade addresses, and answers ARP/ND for them itself. The gateway's
// kernel keeps addresses of its own (.3 and ::3 on each side) for the
// host's traffic — health checks, the L7 proxy's connections — and
// forwards nothing. The client reaches the VIP on-link (it resolves it to
// vsgate's MAC) and everything else via 198.18.0.1, and accepts
// gratuitous ARP (arp_accept); the backends route via 198.18.2.1, as in
// Basic.
//
//	+----------------+     +----------------------------+     +----------+
//	| client         |     | gw (no forwarding)         |     | sw       |
//	| eth0           +-----+ out              in        +-----+ [br]     +-- b1 b2 b3
//	| 198.18.0.2/24  |     | kernel .0.3/24   .2.3/24   |     |          |   .2.11-.13
//	| 2001:db8::2/64 |     | vsgate .0.1 .10 .20 .30    |     +----------+   default via
//	| default via .1 |     |        .2.1 (AF_PACKET)    |                    198.18.2.1
//	+----------------+     +----------------------------+
func L2() *Topology {
	t := &Topology{Name: TopoL2, Plan: basicPlan()}
	t.Plan.Clients = []string{HostClient}
	gw4, gw6 := addr("198.18.0.1"), addr("2001:db8::1")
	t.Plan.Owned = []netip.Addr{gw4, gw6, addr("198.18.2.1"), addr("2001:db8:2::1")}
	t.Hosts = []HostSpec{
		// arp_accept: a gratuitous ARP creates an entry, so the client
		// shows which announcements it heard.
		{Name: HostClient, Sysctls: []Sysctl{{"net.ipv4.conf.all.arp_accept", "1"}}, Routes: []Route{
			{Dst: def4(), Via: []netip.Addr{gw4}},
			{Dst: def6(), Via: []netip.Addr{gw6}},
		}},
		{Name: HostGW, Hosts: labHosts(t.Plan)},
	}
	t.Links = []LinkSpec{{
		A: Endpoint{Host: HostClient, Name: IfHost, Addrs: []netip.Prefix{
			on("198.18.0.2", t.Plan.ClientNet4), on("2001:db8::2", t.Plan.ClientNet6)}},
		B: Endpoint{Host: HostGW, Name: IfGWOut, Addrs: []netip.Prefix{
			on("198.18.0.3", t.Plan.ClientNet4), on("2001:db8::3", t.Plan.ClientNet6)}},
	}}
	backendSide(t, []string{HostGW}, 3, 1)
	return t
}

// DR is direct routing's topology (ipvsadm -g): the client, the gateway
// and the real servers on one switch, one IPv4 subnet. vsgate (AF_PACKET
// on the gateway's one interface) owns the VIP and answers ARP for it;
// it sends the client's packets on unchanged to a real server's MAC.
// Each real server holds the VIP on lo, answering no ARP for it
// (arp_ignore=1) and never announcing it (arp_announce=2), and answers
// the client itself, on the switch: the gateway's link carries the
// requests, not the replies. The gateway's kernel has .3 for itself.
//
//	+---------------+     +----------------------------------------+
//	| client .0.2   +-----+ sw [br]                                |
//	+---------------+     |  gw  out .0.3 (vsgate owns .0.10)       |
//	                      |  b1 .0.11, b2 .0.12, b3 .0.13 (lo .0.10)|
//	                      +----------------------------------------+
func DR() *Topology {
	p := basicPlan()
	p.Clients = []string{HostClient}
	p.Masq4, p.Masq6 = netip.Addr{}, netip.Addr{}
	p.ServerNet4 = p.ClientNet4
	t := &Topology{Name: TopoDR, Plan: p}
	lan := func(host, ifc string, a string) LinkSpec {
		return LinkSpec{A: Endpoint{Host: host, Name: ifc, Addrs: []netip.Prefix{on(a, p.ClientNet4)}},
			B: Endpoint{Host: HostSwitch, Name: host, Master: IfBr}}
	}
	t.Hosts = []HostSpec{
		{Name: HostSwitch, Bridges: []BridgeSpec{{Name: IfBr}}},
		{Name: HostClient},
		{Name: HostGW},
	}
	t.Links = []LinkSpec{lan(HostClient, IfHost, "198.18.0.2"), lan(HostGW, IfGWOut, "198.18.0.3")}
	for i, b := range p.Backends {
		t.Hosts = append(t.Hosts, HostSpec{Name: b, Sysctls: []Sysctl{
			{"net.ipv4.conf.all.arp_ignore", "1"},
			{"net.ipv4.conf.all.arp_announce", "2"},
		}, Loopback: []netip.Prefix{netip.PrefixFrom(p.VIP4, 32)}})
		t.Links = append(t.Links, lan(b, IfHost, fmt.Sprintf("198.18.0.%d", 11+i)))
	}
	return t
}
