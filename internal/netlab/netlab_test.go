package netlab

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireNamespaces skips the test unless this process is root, and
// fails it if as root no lab can be built (labtest.Require's rule; that
// package imports this one).
func requireNamespaces(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: netlab builds network namespaces")
	}
	if err := Check(); err != nil {
		t.Fatalf("running as root, yet no lab can be built: %v", err)
	}
}

// requireCommand skips without an external program, except in CI, which
// must have installed it (.ci/run).
func requireCommand(t testing.TB, name, pkg string) {
	t.Helper()
	// labtest.Tool's rule (labtest imports this package, so it is not
	// called from here).
	if _, err := exec.LookPath(name); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("%s not found, running as root: make test (or make deps) installs the Debian package %s", name, pkg)
		}
		t.Skipf("%s not found (the Debian package %s; make deps as root installs it)", name, pkg)
	}
}

// buildLab builds topo and registers Close and the leftover check with
// t.Cleanup.
func buildLab(t testing.TB, topo *Topology) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab, err := Build(ctx, topo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
		assertGone(t, lab.Prefix)
	})
	return lab
}

// assertGone fails t if any namespace or root-namespace link with the
// prefix remains, or the root namespace has any lab-range address.
func assertGone(t testing.TB, prefix string) {
	t.Helper()
	if left := Leftovers(prefix); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if left := leftoverEtc(prefix); len(left) > 0 {
		t.Errorf("hosts files left behind in %s: %v", EtcNetnsDir, left)
	}
	links, err := LeftoverLinks(prefix)
	if err != nil {
		t.Error(err)
	}
	if len(links) > 0 {
		t.Errorf("links left in the root namespace: %v", links)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Error(err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && allowedAddr(ip.Unmap()) {
			t.Errorf("lab address in the root namespace: %v on link %d", ip, a.LinkIndex)
		}
	}
}

func TestValidate(t *testing.T) {
	loop := netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 8)
	for _, tc := range []struct {
		name string
		mod  func(*Topology)
	}{
		{"unknown host", func(t *Topology) { t.Links[0].A.Host = "nope" }},
		{"long ifname", func(t *Topology) { t.Links[0].A.Name = "toolongname" }},
		{"non-lab address", func(t *Topology) { t.Links[0].A.Addrs = []netip.Prefix{loop} }},
		{"root sysctl", func(t *Topology) { t.Hosts[0].Sysctls = []Sysctl{{"kernel.panic", "1"}} }},
		{"unknown bridge", func(t *Topology) { t.Links[0].A.Master = "nobr" }},
		{"duplicate host", func(t *Topology) { t.Hosts = append(t.Hosts, t.Hosts[0]) }},
		{"hosts entry outside the lab's ranges", func(t *Topology) {
			t.Hosts[0].Hosts = []HostsEntry{{Addr: loop.Addr(), Names: []string{"x"}}}
		}},
		{"hosts entry without a name", func(t *Topology) { t.Hosts[0].Hosts = []HostsEntry{{Addr: t.Plan.VIP4}} }},
		{"hosts entry with a space", func(t *Topology) {
			t.Hosts[0].Hosts = []HostsEntry{{Addr: t.Plan.VIP4, Names: []string{"a b"}}}
		}},
		{"route via non-lab", func(t *Topology) {
			t.Hosts[0].Routes = []Route{{Dst: def4(), Via: []netip.Addr{loop.Addr()}}}
		}},
	} {
		topo := Basic()
		if err := topo.Validate(); err != nil {
			t.Fatalf("Basic: %v", err)
		}
		tc.mod(topo)
		if err := topo.Validate(); !errors.Is(err, ErrInvalidTopology) {
			t.Errorf("%s: Validate = %v, want ErrInvalidTopology", tc.name, err)
		}
	}
	for _, name := range []string{TopoBasic, TopoClients, TopoECMP, TopoL2} {
		topo, err := Standard(name, MaxClients)
		if err != nil {
			t.Fatal(err)
		}
		if err := topo.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Clients(MaxClients + 1); err == nil {
		t.Error("Clients(MaxClients+1) succeeded")
	}
}

func TestPrefix(t *testing.T) {
	p, err := NewPrefix()
	if err != nil {
		t.Fatal(err)
	}
	if !validPrefix(p) || len(p) != PrefixLen {
		t.Errorf("NewPrefix = %q, not a valid prefix", p)
	}
	for _, bad := range []string{"", "vsg", "vsg12345x", "vsgABCDE", "abc12345", "vsg1234"} {
		if validPrefix(bad) {
			t.Errorf("validPrefix(%q) = true", bad)
		}
	}
}

// TestBuildTeardown builds every standard topology, checks a path through
// it, and (in Cleanup) that nothing with the prefix remains.
func TestBuildTeardown(t *testing.T) {
	requireNamespaces(t)
	clients3, err := Clients(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, topo := range []*Topology{Basic(), clients3, ECMP(), L2()} {
		t.Run(topo.Name, func(t *testing.T) {
			start := time.Now()
			lab := buildLab(t, topo)
			t.Logf("built %s (%d hosts) as %s in %v", topo.Name, len(topo.Hosts), lab.Prefix, time.Since(start))
			for _, h := range lab.Hosts() {
				if _, err := os.Stat(NetnsDir + "/" + h.NSName); err != nil {
					t.Errorf("host %s: %v", h.Name, err)
				}
			}
			// Every backend answers its gateway over the switch, IPv4 and IPv6.
			gw := lab.MustHost(topo.Plan.Gateways[0])
			for i, b := range topo.Plan.Backends {
				h := lab.MustHost(b)
				if _, err := h.StartTCPEcho(b, ":7"); err != nil {
					t.Fatal(err)
				}
				addrs, err := h.Addrs()
				if err != nil || len(addrs) != 2 {
					t.Fatalf("%s addresses %v, %v", b, addrs, err)
				}
				for _, a := range addrs {
					got := echo(t, gw, netip.AddrPortFrom(a, 7).String(), "hi")
					if want := b + ": hi"; got != want {
						t.Errorf("backend %d %v: got %q want %q", i, a, got, want)
					}
				}
			}
			if topo.Name == TopoECMP {
				checkECMP(t, lab)
			}
		})
	}
}

// checkECMP checks what "ecmp" leaves to BGP and what it sets itself:
// no route for the VIPs at the router until a gateway announces them,
// the L4 hash on both routers, and the backends' default route through
// the inside router.
func checkECMP(t *testing.T, lab *Lab) {
	p := lab.Topo.Plan
	rtr := lab.MustHost(HostRouter)
	for _, vip := range []netip.Addr{p.VIP4, p.VIP6} {
		routes, err := rtr.Netlink().RouteListFiltered(family(vip),
			&netlink.Route{Dst: ipNet(host4or6(vip))}, netlink.RT_FILTER_DST)
		if err != nil {
			t.Fatal(err)
		}
		if len(routes) != 0 {
			t.Errorf("router route to %v: %+v, want none before a gateway announces it", vip, routes)
		}
	}
	for _, h := range []string{p.Router, p.InsideRouter} {
		for _, k := range []string{"net.ipv4.fib_multipath_hash_policy", "net.ipv6.fib_multipath_hash_policy"} {
			if v, err := lab.MustHost(h).Sysctl(k); err != nil || v != "1" {
				t.Errorf("%s %s = %q, %v; want 1", h, k, v, err)
			}
		}
	}
	routes, err := lab.MustHost(p.Backends[0]).Netlink().RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	via := ""
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			via = r.Gw.String()
		}
	}
	if via != "198.18.2.254" {
		t.Errorf("backend %s default route via %q, want the inside router's 198.18.2.254", p.Backends[0], via)
	}
	routes, err = lab.MustHost(p.Backends[0]).Netlink().RouteList(nil, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	via = ""
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			via = r.Gw.String()
		}
	}
	if via != "2001:db8:2::254" {
		t.Errorf("backend %s IPv6 default route via %q, want the inside router's 2001:db8:2::254", p.Backends[0], via)
	}
}

func host4or6(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return host4(a)
	}
	return host6(a)
}

// echo sends one line to a TCP echo server from host h and returns the
// answer without its newline.
func echo(t testing.TB, h *Host, addr, line string) string {
	t.Helper()
	got, err := echoLine(context.Background(), h, addr, line)
	if err != nil {
		t.Fatalf("from %s to %s: %v", h.Name, addr, err)
	}
	return got
}

// TestBuildFailureCleansUp makes Build fail after namespaces, links and
// addresses exist (a route via an unreachable next hop) and checks that
// nothing remains.
func TestBuildFailureCleansUp(t *testing.T) {
	requireNamespaces(t)
	topo := Basic()
	// 198.18.9.9 is not on any of b3's links: RouteAdd fails (ENETUNREACH).
	last := &topo.Hosts[len(topo.Hosts)-1]
	last.Routes = append(last.Routes, Route{Dst: pfx("198.18.8.0/24"), Via: []netip.Addr{addr("198.18.9.9")}})
	prefix, err := NewPrefix()
	if err != nil {
		t.Fatal(err)
	}
	lab, err := Build(context.Background(), topo, Options{Prefix: prefix})
	if err == nil {
		lab.Close()
		t.Fatal("Build succeeded, want a route error")
	}
	if !strings.Contains(err.Error(), "route") {
		t.Errorf("error %q does not name the route", err)
	}
	assertGone(t, prefix)
}

// TestFailingTestCleansUp runs a test (in a child process) that builds a
// lab, starts servers and then fails; the child's t.Cleanup must remove
// everything.
func TestFailingTestCleansUp(t *testing.T) {
	if os.Getenv("NETLAB_FAIL_PREFIX") != "" {
		t.Skip("child")
	}
	requireNamespaces(t)
	prefix, err := NewPrefix()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFailMidway$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NETLAB_FAIL_PREFIX="+prefix)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "failing on purpose") {
		t.Fatalf("child test did not fail as planned: %v\n%s", err, out)
	}
	assertGone(t, prefix)
}

// TestHelperFailMidway is the child of TestFailingTestCleansUp.
func TestHelperFailMidway(t *testing.T) {
	prefix := os.Getenv("NETLAB_FAIL_PREFIX")
	if prefix == "" {
		t.Skip("only as the child of TestFailingTestCleansUp")
	}
	lab, err := Build(context.Background(), Basic(), Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	if err := lab.StartBackends(); err != nil {
		t.Fatal(err)
	}
	t.Fatal("failing on purpose, midway")
}

func TestClean(t *testing.T) {
	requireNamespaces(t)
	prefix, err := NewPrefix()
	if err != nil {
		t.Fatal(err)
	}
	lab, err := Build(context.Background(), Basic(), Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: drop the Lab without Close (release only our fds).
	for _, h := range lab.Hosts() {
		h.close()
	}
	lab.lock.Close()
	if n := len(Leftovers(prefix)); n != len(Basic().Hosts) {
		t.Fatalf("%d namespaces before Clean, want %d", n, len(Basic().Hosts))
	}
	removed, err := Clean(prefix)
	if err != nil {
		t.Fatal(err)
	}
	withHostsFile := 0
	for _, h := range Basic().Hosts {
		if len(h.Hosts) > 0 {
			withHostsFile++
		}
	}
	if len(removed) != len(Basic().Hosts)+withHostsFile {
		t.Errorf("Clean removed %v, want %d namespaces and %d hosts files", removed, len(Basic().Hosts), withHostsFile)
	}
	assertGone(t, prefix)
	if _, err := os.Stat(RunDir + "/" + prefix + ".lock"); err == nil {
		t.Error("Clean left the lock file")
	}
	live := buildLab(t, Basic())
	if removed, err := Clean(live.Prefix); err != nil || len(removed) != 0 {
		t.Errorf("Clean of a live run removed %v, %v", removed, err)
	}
	if n := len(Leftovers(live.Prefix)); n != len(Basic().Hosts) {
		t.Errorf("live run has %d namespaces after Clean, want %d", n, len(Basic().Hosts))
	}
	if _, err := Clean("notours"); err == nil {
		t.Error("Clean accepted a prefix without vsg")
	}
}

// TestDoRestores checks that Do leaves the calling thread in its own
// namespace, also when fn panics.
func TestDoRestores(t *testing.T) {
	requireNamespaces(t)
	lab := buildLab(t, Basic())
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	var inside netns.NsHandle
	_ = lab.MustHost(HostClient).Do(func() error {
		inside, err = netns.Get()
		return err
	})
	defer inside.Close()
	if inside.Equal(before) {
		t.Error("Do did not enter the host's namespace")
	}
	func() {
		defer func() { _ = recover() }()
		_ = lab.MustHost(HostClient).Do(func() error { panic("on purpose") })
	}()
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Error("thread left in the host's namespace after a panic in Do")
	}
}

// TestECMPSpreads gives every gateway of "ecmp" the VIP as a local
// address with a TCP echo on it, and the router a multipath route for the
// VIP over all of them (what FRR installs from their announcements):
// connections from the client (different source ports) must reach every
// gateway.
func TestECMPSpreads(t *testing.T) {
	requireNamespaces(t)
	lab := buildLab(t, ECMP())
	p := lab.Topo.Plan
	rtr := lab.MustHost(p.Router)
	for _, vip := range []netip.Addr{p.VIP4, p.VIP6} {
		var hops []netip.Addr
		for i := range p.Gateways {
			v4, v6 := p.GatewayUplink(i)
			hops = append(hops, map[bool]netip.Addr{true: v4.Self, false: v6.Self}[vip.Is4()])
		}
		if err := rtr.addRoute(Route{Dst: host4or6(vip), Via: hops}); err != nil {
			t.Fatal(err)
		}
	}
	for _, gw := range p.Gateways {
		h := lab.MustHost(gw)
		lo, err := h.Netlink().LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		for _, vip := range []netip.Addr{p.VIP4, p.VIP6} {
			if err := h.Netlink().AddrAdd(lo, &netlink.Addr{IPNet: ipNet(host4or6(vip)), Flags: unix.IFA_F_NODAD}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.StartTCPEcho(gw, ":7"); err != nil {
			t.Fatal(err)
		}
	}
	client := lab.MustHost(HostClient)
	for _, vip := range []netip.Addr{p.VIP4, p.VIP6} {
		seen := map[string]int{}
		for range 32 {
			got := echo(t, client, netip.AddrPortFrom(vip, 7).String(), "x")
			seen[strings.TrimSuffix(got, ": x")]++
		}
		if len(seen) != len(p.Gateways) {
			t.Errorf("VIP %v: 32 connections reached %v, want every gateway", vip, seen)
		}
	}
}

// TestFRR starts FRR on both routers of "ecmp" with their configurations:
// each has a session configured with every gateway in each family (none
// is up: no gateway speaks BGP here), vtysh reaches each instance on its
// own, and Close stops the daemons and removes their directories.
func TestFRR(t *testing.T) {
	requireNamespaces(t)
	requireCommand(t, "vtysh", "frr")
	lab := buildLab(t, ECMP())
	p := lab.Topo.Plan
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var dirs []string
	for host, conf := range map[string]string{p.Router: ECMPRouterConf(p), p.InsideRouter: ECMPInsideConf(p)} {
		f, err := lab.MustHost(host).StartFRR(ctx, conf)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, f.dir)
		ns, err := f.Neighbors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 2*len(p.Gateways) {
			t.Errorf("%s: neighbours %v, want one per gateway and family", host, ns)
		}
		for i := range p.Gateways {
			v4, v6 := p.GatewayUplink(i)
			if host == p.InsideRouter {
				v4, v6 = p.GatewayInside(i)
			}
			for _, a := range []netip.Addr{v4.Self, v6.Self} {
				if st, ok := ns[a.String()]; !ok || st == "Established" {
					t.Errorf("%s: neighbour %v: %q (configured %t), want configured and not up", host, a, st, ok)
				}
			}
		}
		out, err := f.VTY(ctx, "show running-config")
		if err != nil || !strings.Contains(out, "hostname "+host) {
			t.Errorf("%s: vtysh reached another instance (%v):\n%s", host, err, out)
		}
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left after Close: %v", d, err)
		}
	}
	out, _ := exec.Command("pgrep", "-f", "--", "-N "+lab.Prefix).Output()
	if len(out) > 0 {
		t.Errorf("FRR daemons of the lab still run after Close: %s", out)
	}
}

// TestRulesAndTables builds a custom topology with a policy rule and a
// route in another table, as the TUN gateway will need.
func TestRulesAndTables(t *testing.T) {
	requireNamespaces(t)
	topo := &Topology{
		Name: "custom",
		Hosts: []HostSpec{
			{Name: "a", Sysctls: []Sysctl{{"net.ipv4.ip_forward", "1"}},
				Routes: []Route{{Dst: def4(), Dev: "ab", Table: 100}},
				Rules:  []Rule{{Priority: 100, From: pfx("198.18.6.0/24"), IIF: "ab", Table: 100}}},
			{Name: "b"},
		},
		Links: []LinkSpec{{
			A: Endpoint{Host: "a", Name: "ab", Addrs: []netip.Prefix{pfx("198.18.6.1/24")}},
			B: Endpoint{Host: "b", Name: "ba", Addrs: []netip.Prefix{pfx("198.18.6.2/24")}},
		}},
	}
	lab := buildLab(t, topo)
	a := lab.MustHost("a")
	rules, err := a.Netlink().RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rules {
		if r.Table == 100 && r.Priority == 100 && r.IifName == lab.IfName("ab") && r.Src != nil && r.Src.String() == "198.18.6.0/24" {
			found = true
		}
	}
	if !found {
		t.Errorf("rule not found in %v", rules)
	}
	routes, err := a.Netlink().RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 100}, netlink.RT_FILTER_TABLE)
	if err != nil || len(routes) != 1 {
		t.Errorf("table 100: %v, %v", routes, err)
	}
	if v, err := a.Sysctl("net.ipv4.ip_forward"); v != "1" || err != nil {
		t.Errorf("ip_forward = %q, %v", v, err)
	}
}

// TestHostsFile: a host's hosts file is what `ip netns exec` shows as
// /etc/hosts inside it, the lab's names resolve there (IPv4 and IPv6), and
// the file goes with the lab.
func TestHostsFile(t *testing.T) {
	requireNamespaces(t)
	requireCommand(t, "getent", "libc-bin")
	lab := buildLab(t, Basic())
	gw := lab.MustHost(HostGW)
	if gw.HostsFile() == "" {
		t.Fatal("the gateway has no hosts file")
	}
	out, err := gw.Run(context.Background(), "getent", "ahosts", VIPName)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"198.18.0.10", "2001:db8::10"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("getent ahosts %s in the gateway's namespace:\n%s\nlacks %s", VIPName, out, want)
		}
	}
	if out, err := gw.Run(context.Background(), "getent", "hosts", "rs2"); err != nil || !strings.Contains(string(out), "198.18.2.12") && !strings.Contains(string(out), "2001:db8:2::12") {
		t.Errorf("rs2: %v %s", err, out)
	}
	if lab.MustHost("b1").HostsFile() != "" {
		t.Error("a real server got a hosts file it was not given")
	}
}

// TestDRTopology: "dr" puts everyone on one switch; every real server
// holds the VIP on lo, answers no ARP for it and is reached from the
// gateway's kernel address; the client reaches the real servers on the
// link.
func TestDRTopology(t *testing.T) {
	requireNamespaces(t)
	lab := buildLab(t, DR())
	p := lab.Topo.Plan
	gw, client := lab.MustHost(HostGW), lab.MustHost(HostClient)
	for i, b := range p.Backends {
		h := lab.MustHost(b)
		lo, err := h.Netlink().LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := h.Netlink().AddrList(lo, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.Equal(p.VIP4.AsSlice()) }) {
			t.Errorf("%s: lo has %v, not the VIP %v", b, addrs, p.VIP4)
		}
		if v, err := h.Sysctl("net.ipv4.conf.all.arp_ignore"); v != "1" || err != nil {
			t.Errorf("%s arp_ignore = %q, %v", b, v, err)
		}
		if _, err := h.StartTCPEcho(b, ":7"); err != nil {
			t.Fatal(err)
		}
		rs := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}), 7).String()
		for _, from := range []*Host{gw, client} {
			if got := echo(t, from, rs, "hi"); got != b+": hi" {
				t.Errorf("%s from %s: %q", rs, from.Name, got)
			}
		}
	}
}
