// Package netlab builds network-namespace topologies for demos, end-to-end
// tests and benchmarks: hosts (one network namespace each), veth links,
// bridges, IPv4 and IPv6 addresses, routes, policy rules and per-namespace
// sysctls, built with netlink (vishvananda/netlink and netns), never by
// running `ip`. It also runs built-in test servers inside hosts, runs Go
// functions and commands inside hosts, and sets up a kernel reference
// gateway (nftables DNAT + masquerade) that every scenario passes against
// before vsgate has to.
//
// # Use
//
//	if err := netlab.Check(); err != nil {
//		t.Skip(err)
//	}
//	lab, err := netlab.Build(ctx, netlab.Basic(), netlab.Options{})
//	t.Cleanup(func() { lab.Close() })
//	lab.StartBackends()                       // HTTP :80, UDP echo :53, TCP echo :7
//	client := lab.MustHost(netlab.HostClient)
//	resp, err := client.HTTPClient(5*time.Second).Get("http://198.18.0.10/")
//	err = client.Do(func() error { ... })    // any Go code, inside the client
//	out, err := client.Run(ctx, "curl", "-s", "http://198.18.0.10/")
//
//	// the system under test goes into lab.MustHost(netlab.HostGW) here;
//	// lab.StartKernelRef(ctx, ref) is the reference (ref from KernelRefFor).
//	_, err = lab.ScenarioHTTPRoundRobin(ctx, lab.Topo.Plan.VIP4, 10) // 10/10/10
//	err = lab.ScenarioUDP(ctx, lab.Topo.Plan.VIP6)
//	err = lab.ScenarioTCPEcho(ctx, lab.Topo.Plan.VIP4)
//	err = lab.ScenarioMasquerade(ctx, lab.Topo.Plan.Masq4)
//
// # Names
//
// Every run has a prefix, "vsg" and five hex digits (NewPrefix). Namespaces
// are named prefix-host ("vsg1a2b3-client", bind-mounted in /var/run/netns
// so `ip netns exec` works) and every interface prefix+suffix
// ("vsg1a2b3eth0"). Close removes every namespace, and with them every link,
// address, route and nftables rule; Clean removes what a crashed run left,
// found by prefix.
//
// # Address plan (basic)
//
//	+----------------+     +-------------------------+     +------------+     +----------------+
//	| client         |     | gw                      |     | sw  [br]   |     | b1             |
//	| eth0           +-----+ out             in      +-----+ gw      b1 +-----+ eth0           |
//	| 198.18.0.2/24  |     | 198.18.0.1/24           |     |         b2 +---  | 198.18.2.11/24 |
//	| 2001:db8::2/64 |     | 198.18.0.20 masquerade  |     |         b3 +---  | 2001:db8:2::11 |
//	+----------------+     | 2001:db8::1, ::20 masq  |     +------------+     +----------------+
//	                       | 198.18.2.1/24           |                       b2 .12 ::12
//	                       | 2001:db8:2::1/64        |                       b3 .13 ::13
//	                       +-------------------------+
//
//	VIP           198.18.0.10        2001:db8::10   (client routes VIP/32 and default via gw)
//	masquerade    198.18.0.20        2001:db8::20   (secondary addresses on gw out)
//	client side   198.18.0.0/24      2001:db8::/64  ("clients": c1..cn at .101.. / ::101..)
//	server side   198.18.2.0/24      2001:db8:2::/64 (backends route default via gw)
//	ecmp          gateway uplinks 198.18.4.0/24 .. 198.18.6.0/24, 2001:db8:4::/64 ..
//	              2001:db8:6::/64; gateways .2.1-.2.3 inside; the inside router
//	              198.18.2.254 / 2001:db8:2::254 is the backends' default there
//	l2 gateway    kernel .0.3 / ::3 and .2.3 / 2001:db8:2::3, no forwarding;
//	              .0.1, ::1, .2.1 and 2001:db8:2::1 are vsgate's (AF_PACKET)
//
// IPv6 duplicate address detection is off in every lab namespace, so
// addresses are usable as soon as Build returns. The gateway forwards
// (ip_forward, ipv6 forwarding) but does nothing else until a system under
// test (the kernel reference, vsgate) is set up in it. In "l2" it does not
// forward: vsgate in AF_PACKET mode does.
//
// # Routers
//
// Host.StartFRR runs FRR (zebra and bgpd, Debian's frr package) in a host
// with a configuration of its own, under FRR's pathspace named after the
// namespace (its files in FRRRunDir/NAMESPACE): "ecmp"'s two routers learn
// the gateways' routes by BGP from ECMPRouterConf and ECMPInsideConf. The
// lab's Close stops the daemons and removes the directory; Clean does the
// same for a crashed run.
//
// # Namespaces and threads
//
// Host.Do runs a function on a locked OS thread switched into the host
// (STYLE.md 17): sockets opened there stay in the host and can be used from
// any goroutine afterwards, which is how the built-in servers and the test
// clients work. All netlink work uses a handle bound to the namespace
// (netlink.NewHandleAt), so the caller's thread never moves for it. External
// programs run through `ip netns exec`.
//
// # What it must not do
//
// Change anything in the root namespace (no link, address, route, rule or
// sysctl: veth pairs are created inside a lab namespace with the peer
// created directly in the other one), use addresses outside 198.18.0.0/15
// and 2001:db8::/32 (Validate rejects them), leave anything behind, or
// signal any process it did not start itself.
package netlab
