package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vsgate/vsgate/internal/netlab"
)

// The handbook replay: the virtual-server handbook's own command lines,
// typed into `vsgate adm` as it writes them. Only the addresses are mapped
// into the lab's ranges: its real servers, .1, .2 and .3 of a private /24,
// are 198.18.2.11, .12, .13 (rs1..rs3), that /24 is
// 198.18.2.0/24, and its www.fuancn.cn is the VIP, named so in the
// client's and the gateway's hosts files (netlab writes them; `ip netns
// exec` mounts them), so the name resolves as it would have for the
// handbook's reader.

// handbookInside is the address the handbook's "ipchains -A forward -j MASQ
// -d NET" masquerades to: one the real servers reach on their
// link (masquerade_inside in the replay's configuration; ipchains took the
// gateway's inside interface address).
var handbookInside = netip.MustParseAddr("198.18.2.254")

// handbookLines are the handbook's IP-layer commands (method 2), as it
// writes them, with the lab's addresses.
var handbookLines = [][]string{
	{"ipmasqadm", "-A", netlab.VIPName + ":80", "-R", "198.18.2.11:80"},
	{"ipmasqadm", "-A", netlab.VIPName + ":80", "-R", "198.18.2.12:80"},
	{"ipchains", "-A", "forward", "-j", "MASQ", "-s", "198.18.2.0/24"},
	{"ipchains", "-A", "forward", "-j", "MASQ", "-d", "198.18.2.0/24"},
}

// HandbookSteps are the replay's checks, in order.
func HandbookSteps() []Step {
	return []Step{
		{"the handbook's commands typed as written into vsgate adm (ipmasqadm -A www.fuancn.cn:80 -R ... twice, both ipchains lines): accepted, and shown as ipvsadm, ipmasqadm and ipchains show them", stepHandbookTyped},
		{"the handbook's test: (1) the client visits http://www.fuancn.cn/ (2) its packets are rewritten to a real server the scheduler picks (3) the answers come back through the gateway: the client saw only the VIP", stepHandbookTest},
		{"the handbook's telnet case, method 2: ipmasqadm -A www.fuancn.cn:23 over two real servers' line service, balanced", stepHandbookTelnet},
		{"ipchains -s: every real server reaches the client side from the masquerade address", stepHandbookMasqOut},
		{"ipchains -d: a real server with no route back (its default routes removed) still answers through the VIP, and sees the masquerade address", stepHandbookNoRoute},
		{"method 1: ProxyPass /sales, /rd and /head on www.fuancn.cn:81 route by path to the three real servers", stepHandbookProxyPass},
		{"names, v4 and v6: ipmasqadm -A www.fuancn.cn:8080 -R rs3:80 makes a service of each family from the hosts file; -L shows the names, -L -n the numbers", stepHandbookNames},
	}
}

// handbookConfig is the replay's configuration: nothing of method 2 (the
// commands add it), method 1's three ProxyPass lines on the VIP's name,
// and the masquerade addresses the ipchains lines take.
func (e *Env) handbookConfig(p netlab.Plan) string {
	return fmt.Sprintf(`# vsgate handbook replay (written by make demo): the ProxyPass lines of
# the handbook's method 1, as they stand in its httpd.conf, with the lab's
# addresses; method 2 is typed in with vsgate adm.
device: {type: tun, name: vsg0, queues: 2}
services:
  - name: handbook-proxypass
    proto: tcp
    vip: %[1]s:81
    mode: l7
    l7:
      directives: |
        ProxyPass /sales http://198.18.2.11/
        ProxyPass /rd http://198.18.2.12/
        ProxyPass /head http://198.18.2.13/
masquerade_to: %[2]s
masquerade_inside: [%[3]s]
control: {socket: %[4]s}
pcap: {dir: %[4]s.pcap}
metrics: {listen: 127.0.0.1:9100}
`, netlab.VIPName, p.Masq4, handbookInside, e.Socket)
}

// AdmCommand runs `vsgate adm ARGS` in the gateway's namespace through
// `ip netns exec`, as an operator types it there, and returns its
// standard output; an exit status other than 0 is an error carrying the
// standard error.
func (e *Env) AdmCommand(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := e.gw.Command(ctx, e.exe, append([]string{"adm", "--socket", e.Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("vsgate adm %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// resolveOnClient looks name up in the client's namespace (its hosts file,
// through the C library's getent), IPv4 or IPv6: what a browser there
// would connect to.
func (e *Env) resolveOnClient(ctx context.Context, name string, v6 bool) (netip.Addr, error) {
	db := "ahostsv4"
	if v6 {
		db = "ahostsv6"
	}
	out, err := e.client.Run(ctx, "getent", db, name)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, f := range strings.Fields(string(out)) {
		if a, err := netip.ParseAddr(f); err == nil && a.Is4() != v6 {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("getent %s %s: no address in %q", db, name, out)
}

// visit fetches http://NAME:port/path from the client: NAME resolved in
// its namespace, the Host header as a browser sends it. It returns the
// real server's reply and the address the client's connection was to.
func (e *Env) visit(ctx context.Context, name string, port uint16, path string, v6 bool) (netlab.HTTPReply, netip.AddrPort, error) {
	var rep netlab.HTTPReply
	addr, err := e.resolveOnClient(ctx, name, v6)
	if err != nil {
		return rep, netip.AddrPort{}, err
	}
	to := netip.AddrPortFrom(addr, port)
	req, err := newRequest(ctx, "http://"+to.String()+path)
	if err != nil {
		return rep, to, err
	}
	req.Host = fmt.Sprintf("%s:%d", name, port)
	var peer netip.AddrPort
	c := e.client.HTTPClient(3 * time.Second)
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		conn, err := e.client.DialContext(ctx, network, a)
		if err == nil {
			peer = conn.RemoteAddr().(*net.TCPAddr).AddrPort()
		}
		return conn, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return rep, to, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return rep, peer, fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	return rep, peer, json.NewDecoder(resp.Body).Decode(&rep)
}

func stepHandbookTyped(ctx context.Context, e *Env) (string, error) {
	var b strings.Builder
	for _, line := range handbookLines {
		fmt.Fprintf(&b, "# vsgate adm %s\n", strings.Join(line, " "))
		if _, err := e.AdmCommand(ctx, line...); err != nil {
			return b.String(), err
		}
	}
	for _, show := range [][]string{{"-S"}, {"-S", "-n"}, {"ipmasqadm", "portfw", "-l", "-n"}, {"ipchains", "-L", "forward", "-n"}} {
		out, err := e.AdmCommand(ctx, show...)
		fmt.Fprintf(&b, "# vsgate adm %s\n%s", strings.Join(show, " "), out)
		if err != nil {
			return b.String(), err
		}
	}
	// Without -n, -S names ports from the services file, as ipvsadm-save
	// does, and hosts only where a name stands for that address alone:
	// the lab's names have an address of each family, and -R would make
	// a service of each. With -n, numbers.
	for _, tc := range []struct{ args, want string }{
		{"-S", "-A -t 198.18.0.10:http -s wrr\n-a -t 198.18.0.10:http -r 198.18.2.11:http -m -w 10\n-a -t 198.18.0.10:http -r 198.18.2.12:http -m -w 10\n"},
		{"-S -n", "-A -t 198.18.0.10:80 -s wrr\n-a -t 198.18.0.10:80 -r 198.18.2.11:80 -m -w 10\n-a -t 198.18.0.10:80 -r 198.18.2.12:80 -m -w 10\n"},
	} {
		if save, _ := e.AdmCommand(ctx, strings.Fields(tc.args)...); save != tc.want {
			return b.String(), fmt.Errorf("%s shows\n%s\nwant\n%s", tc.args, save, tc.want)
		}
	}
	chain, _ := e.AdmCommand(ctx, "ipchains", "-L", "forward", "-n")
	for _, rule := range []string{
		"MASQ       all  ------  198.18.2.0/24        0.0.0.0/0             n/a => " + e.Lab.Topo.Plan.Masq4.String(),
		"MASQ       all  ------  0.0.0.0/0            198.18.2.0/24         n/a => " + handbookInside.String(),
	} {
		if !strings.Contains(chain, rule) {
			return b.String(), fmt.Errorf("ipchains -L forward -n lacks %q", rule)
		}
	}
	return b.String(), nil
}

func stepHandbookTest(ctx context.Context, e *Env) (string, error) {
	vip := e.Lab.Topo.Plan.VIP4
	counts := map[string]int{}
	seen := map[string]string{} // what each real server saw as the source
	for i := range 20 {
		rep, peer, err := e.visit(ctx, netlab.VIPName, 80, "/", false)
		if err != nil {
			return fmtSpread(counts), fmt.Errorf("visit %d: %w", i+1, err)
		}
		if peer.Addr() != vip {
			return fmtSpread(counts), fmt.Errorf("visit %d: the client's connection was to %v, want the VIP %v only", i+1, peer, vip)
		}
		counts[rep.Backend]++
		seen[rep.Backend] = hostOf(rep.Remote).String()
	}
	detail := fmt.Sprintf("(1) %s resolved on the client to %v; 20 visits\n(2) counts per real server: %s (wrr, preference 10 each)\n(3) every answer came from %v:80 (the client's connection); the real servers saw the source %v",
		netlab.VIPName, vip, fmtSpread(counts), vip, seen)
	if counts["b1"] != 10 || counts["b2"] != 10 {
		return detail, fmt.Errorf("spread %v, want 10 on b1 (198.18.2.11) and 10 on b2 (198.18.2.12)", counts)
	}
	for b, src := range seen {
		if src != handbookInside.String() {
			return detail, fmt.Errorf("%s saw %s, want the -d rule's masquerade address %v", b, src, handbookInside)
		}
	}
	return detail, nil
}

func stepHandbookTelnet(ctx context.Context, e *Env) (string, error) {
	line := []string{"ipmasqadm", "-A", netlab.VIPName + ":23", "-R", "198.18.2.11:7", "-R", "198.18.2.12:7"}
	if _, err := e.AdmCommand(ctx, line...); err != nil {
		return "", err
	}
	seen, err := e.echoSessions(ctx, netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 23), "login", 4)
	if err != nil {
		return fmtSpread(seen), err
	}
	detail := "vsgate adm " + strings.Join(line, " ") + "\nsessions per real server: " + fmtSpread(seen)
	if seen["b1"] != 2 || seen["b2"] != 2 {
		return detail, fmt.Errorf("want 2 sessions on each of b1 and b2")
	}
	return detail, nil
}

func stepHandbookMasqOut(ctx context.Context, e *Env) (string, error) {
	m := e.Lab.Topo.Plan.Masq4
	if err := e.Lab.ScenarioMasquerade(ctx, m); err != nil {
		return "", err
	}
	return fmt.Sprintf("the client saw %v as the source of b1, b2 and b3", m), nil
}

// stepHandbookNoRoute takes b2's default routes away for the step, so b2
// can answer the client only because the -d rule gives its flows a source
// on its own link.
func stepHandbookNoRoute(ctx context.Context, e *Env) (string, error) {
	b2 := e.Lab.MustHost("b2")
	nl := b2.Netlink()
	routes, err := nl.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", err
	}
	var removed []netlink.Route
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if err := nl.RouteDel(&r); err != nil {
				return "", fmt.Errorf("b2: removing its default route: %w", err)
			}
			removed = append(removed, r)
		}
	}
	defer func() {
		for _, r := range removed {
			_ = nl.RouteAdd(&r)
		}
	}()
	if len(removed) == 0 {
		return "", errors.New("b2 had no default route to remove")
	}
	// b2 cannot reach the client at all now: its masquerade check fails.
	if _, err := b2.DialContext(ctx, "tcp", netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), 9).String()); err == nil || !errors.Is(err, syscall.ENETUNREACH) {
		return "", fmt.Errorf("b2 without a default route reached the client side (%v)", err)
	}
	for i := range 4 {
		rep, peer, err := e.visit(ctx, netlab.VIPName, 80, "/no-route", false)
		if err != nil {
			return "", fmt.Errorf("visit %d: %w", i+1, err)
		}
		if rep.Backend == "b2" {
			detail := fmt.Sprintf("b2 has no default route; it answered visit %d through %v, and saw the source %s", i+1, peer, rep.Remote)
			if hostOf(rep.Remote) != handbookInside {
				return detail, fmt.Errorf("b2 saw %s, want %v", rep.Remote, handbookInside)
			}
			return detail, nil
		}
	}
	return "", errors.New("4 visits did not reach b2")
}

func stepHandbookProxyPass(ctx context.Context, e *Env) (string, error) {
	var b strings.Builder
	for _, tc := range []struct{ path, backend, sent string }{
		{"/sales/order", "b1", "//order"},
		{"/rd/plan", "b2", "//plan"},
		{"/head/", "b3", "//"},
	} {
		rep, peer, err := e.visit(ctx, netlab.VIPName, 81, tc.path, false)
		if err != nil {
			return b.String(), err
		}
		fmt.Fprintf(&b, "GET %s -> %s (%s) got %s; the client's connection was to %v\n", tc.path, rep.Backend, rep.Local, rep.Path, peer)
		// Apache maps "ProxyPass /sales http://host/" by replacing the
		// prefix: /sales/order becomes //order, as the handbook's lines do.
		if rep.Backend != tc.backend || rep.Path != tc.sent {
			return b.String(), fmt.Errorf("%s went to %s as %s, want %s as %s", tc.path, rep.Backend, rep.Path, tc.backend, tc.sent)
		}
	}
	return b.String(), nil
}

func stepHandbookNames(ctx context.Context, e *Env) (string, error) {
	var b strings.Builder
	line := []string{"ipmasqadm", "-A", netlab.VIPName + ":8080", "-R", "rs3:80"}
	fmt.Fprintf(&b, "# vsgate adm %s\n", strings.Join(line, " "))
	if _, err := e.AdmCommand(ctx, line...); err != nil {
		return b.String(), err
	}
	for _, v6 := range []bool{false, true} {
		rep, peer, err := e.visit(ctx, netlab.VIPName, 8080, "/named", v6)
		if err != nil {
			return b.String(), err
		}
		fmt.Fprintf(&b, "client -> %v answered by %s\n", peer, rep.Backend)
		if rep.Backend != "b3" {
			return b.String(), fmt.Errorf("%v answered by %s, want b3 (rs3)", peer, rep.Backend)
		}
	}
	named, err := e.AdmCommand(ctx, "-L")
	fmt.Fprintf(&b, "# vsgate adm -L\n%s", named)
	if err != nil {
		return b.String(), err
	}
	// Port names come from the services file, where the machine has one.
	for _, want := range []string{"TCP  www.fuancn.cn:", "TCP  [www.fuancn.cn]:", "  -> rs1:", "  -> rs2:", "  -> [rs3]:"} {
		if !strings.Contains(named, want) {
			return b.String(), fmt.Errorf("-L lacks %q", want)
		}
	}
	numeric, err := e.AdmCommand(ctx, "-L", "-n")
	if err != nil {
		return b.String(), err
	}
	if !strings.Contains(numeric, "TCP  [2001:db8::10]:8080 wrr") || !strings.Contains(numeric, "  -> [2001:db8:2::13]:80") {
		return b.String(), fmt.Errorf("-L -n:\n%s", numeric)
	}
	return b.String(), nil
}
