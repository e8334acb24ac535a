package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/internal/netlab"
)

// stepRefusedChanges: changes vsgate must refuse — a VIP on loopback, a
// VIP that is the gateway's own address — are refused whole: vsgate adm
// -S is byte for byte what it was, the VIPs still answer, and the next
// valid change (a new service, then its removal) works.
func stepRefusedChanges(ctx context.Context, e *Env) (string, error) {
	before, err := e.Adm(ctx, "-S", "-n")
	if err != nil {
		return "", err
	}
	p := e.Lab.Topo.Plan
	var lines []string
	for _, bad := range [][]string{
		{"-A", "-t", "[::1]:80", "-s", "rr"},
		{"-A", "-t", "127.0.0.1:80", "-s", "rr"},
		{"-A", "-t", "[fe80::1]:80", "-s", "rr"},
		{"-A", "-t", "198.18.0.1:80", "-s", "rr"}, // the gateway's own client-side address
	} {
		out, err := e.Adm(ctx, bad...)
		if err == nil {
			return out, fmt.Errorf("vsgate adm %s was accepted", strings.Join(bad, " "))
		}
		after, aerr := e.Adm(ctx, "-S", "-n")
		if aerr != nil {
			return "", aerr
		}
		if after != before {
			return after, fmt.Errorf("vsgate adm %s was refused, but -S changed:\n%s\nwas:\n%s", strings.Join(bad, " "), after, before)
		}
		if _, err := e.get(ctx, fmt.Sprintf("http://%s/after-refused", netip.AddrPortFrom(p.VIP4, 80))); err != nil {
			return "", fmt.Errorf("after vsgate adm %s was refused, the VIP does not answer: %w", strings.Join(bad, " "), err)
		}
		lines = append(lines, fmt.Sprintf("vsgate adm %s: refused (%s); -S unchanged; the VIP answers", strings.Join(bad, " "), firstLine(err.Error())))
	}
	// The next valid change works, and so does undoing it.
	next := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.11"), 80)
	if out, err := e.Adm(ctx, "-A", "-t", next.String(), "-s", "rr"); err != nil {
		return out, err
	}
	if out, err := e.Adm(ctx, "-a", "-t", next.String(), "-r", "198.18.2.11:80", "-m"); err != nil {
		return out, err
	}
	dropsBefore, err := e.dropCounts(ctx)
	if err != nil {
		return "", err
	}
	rep, err := e.get(ctx, fmt.Sprintf("http://%s/new-service", next))
	if err != nil {
		// What the client knew of the new VIP's address, and what vsgate
		// dropped meanwhile: where the request was lost.
		neigh, _ := e.client.Run(ctx, "ip", "neigh", "show", next.Addr().String())
		drops := e.dropsSince(ctx, dropsBefore)
		return fmt.Sprintf("the client's neighbour entry: %q; vsgate's drops meanwhile: %s", strings.TrimSpace(string(neigh)), drops),
			fmt.Errorf("the valid change after the refused ones: %w", err)
	}
	if out, err := e.Adm(ctx, "-D", "-t", next.String()); err != nil {
		return out, err
	}
	if after, _ := e.Adm(ctx, "-S", "-n"); after != before {
		return after, errors.New("adding a service and deleting it again did not give -S back")
	}
	if _, err := e.get(ctx, fmt.Sprintf("http://%s/after", netip.AddrPortFrom(p.VIP4, 80))); err != nil {
		return "", err
	}
	lines = append(lines, fmt.Sprintf("then vsgate adm -A -t %v (answered by %s) and -D: -S as before, the VIP answers", next, rep.Backend))
	return strings.Join(lines, "\n"), nil
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// stepClosedToOutside: from the client, straight at the inside — every
// port from 1 to 1024 and a few above, TCP SYN and UDP, and an ICMP echo,
// at every real server's IPv4 and IPv6 address (not a VIP), written raw —
// once with default: pass and once with default: drop. tcpdump on every
// real server's link sees none of it; every probe is accounted for by
// what stopped it (on a TUN the gateway's kernel would forward it, and
// vsgate's nftables guard drops it, forward_guard; on AF_PACKET vsgate
// drops it, inbound_unsolicited); and the masquerade still works
// outbound.
func stepClosedToOutside(ctx context.Context, e *Env) (string, error) {
	p := e.Lab.Topo.Plan
	clientAddrs, err := e.client.Addrs()
	if err != nil {
		return "", err
	}
	var from4, from6 netip.Addr
	for _, a := range clientAddrs {
		switch {
		case a.Is4() && p.ClientNet4.Contains(a):
			from4 = a
		case a.Is6() && p.ClientNet6.Contains(a):
			from6 = a
		}
	}
	var targets []netip.Addr
	for _, b := range p.Backends {
		addrs, err := e.Lab.MustHost(b).Addrs()
		if err != nil {
			return "", err
		}
		for _, a := range addrs {
			if p.ServerNet4.Contains(a) || p.ServerNet6.Contains(a) {
				targets = append(targets, a)
			}
		}
	}
	if !from4.IsValid() || !from6.IsValid() || len(targets) < 2*len(p.Backends) {
		return "", fmt.Errorf("client %v %v, inside addresses %v: the lab is not the one this step knows", from4, from6, targets)
	}
	ports := []uint16{1161, 3306, 8080, 33000, 50000, 65535}
	for port := uint16(1); port <= 1024; port++ {
		ports = append(ports, port)
	}
	var probes [][]byte
	for _, dst := range targets {
		src := from4
		if dst.Is6() {
			src = from6
		}
		for _, port := range ports {
			probes = append(probes, rawProbe(src, dst, layers.IPProtocolTCP, port), rawProbe(src, dst, layers.IPProtocolUDP, port))
		}
		probes = append(probes, rawProbe(src, dst, layers.IPProtocolICMPv4, 0))
	}
	// What stops a probe is counted: the guard on a TUN; vsgate, or a
	// full ring before it, on AF_PACKET.
	stopped := func() (float64, error) {
		if !e.opts.AFPacket {
			return e.metricValue(ctx, `vsgate_device_drops_total{counter="forward_guard",device="kernel"}`)
		}
		n, err := e.metricValue(ctx, `vsgate_drops_total{reason="inbound_unsolicited"}`)
		if err != nil {
			return 0, err
		}
		ring, err := e.metricSum(ctx, "vsgate_device_drops_total{", `counter="ring_full"`)
		return n + ring, err
	}
	var lines []string
	original, err := os.ReadFile(e.Config)
	if err != nil {
		return "", err
	}
	defer func() {
		// The demo's own configuration again, whatever happened.
		if err := os.WriteFile(e.Config, original, 0o600); err == nil {
			e.admCommand(ctx, "reload")
		}
	}()
	for _, def := range []string{"pass", "drop"} {
		if err := os.WriteFile(e.Config, append([]byte("default: "+def+"\n"), original...), 0o600); err != nil {
			return "", err
		}
		if out, err := e.admCommand(ctx, "reload"); err != nil {
			return out, err
		}
		// The probes' own packets, not the masquerade's flows of the pass
		// before (the client's HTTP server on 8080 may still close one).
		caps, err := e.captureBackends(ctx, fmt.Sprintf("(src host %s or src host %s) and not tcp src port 8080", from4, from6))
		if err != nil {
			return "", err
		}
		before, err := stopped()
		if err != nil {
			caps.stop()
			return "", err
		}
		if err := rawSendPaced(e.client, probes); err != nil {
			caps.stop()
			return "", err
		}
		// Every probe counted, then the captures end: nothing is still
		// on its way to a real server.
		var n float64
		for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			now, err := stopped()
			if err != nil {
				caps.stop()
				return "", err
			}
			if n = now - before; n >= float64(len(probes)) {
				break
			}
			if time.Since(start) > 10*time.Second {
				caps.stop()
				return strings.Join(lines, "\n"), fmt.Errorf("default %s: %d probes sent, %v counted as stopped: the rest went somewhere", def, len(probes), n)
			}
		}
		got, err := caps.stop()
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		for b, c := range got {
			if len(c) != 0 {
				return strings.Join(lines, "\n"), fmt.Errorf("default %s: %d of the client's packets reached real server %s, the first %s", def, len(c), b, c[0].Summary)
			}
		}
		lines = append(lines, fmt.Sprintf("default %s: %d probes (TCP SYN and UDP to ports 1-1024 and %v, ICMP echo) at %v; %v counted as stopped; none of the client's packets on the real servers' links",
			def, len(probes), ports[:6], targets, n))
		for _, m := range []netip.Addr{p.Masq4, p.Masq6} {
			if err := e.Lab.ScenarioMasquerade(ctx, m); err != nil {
				return strings.Join(lines, "\n"), fmt.Errorf("default %s: masquerade outbound: %w", def, err)
			}
		}
		lines = append(lines, fmt.Sprintf("default %s: the masquerade still works outbound (%v, %v)", def, p.Masq4, p.Masq6))
	}
	return strings.Join(lines, "\n"), nil
}

// rawProbe builds an IP packet from src to dst: a TCP SYN or a UDP
// datagram to port, or (proto ICMPv4, either family) an echo request.
func rawProbe(src, dst netip.Addr, proto layers.IPProtocol, port uint16) []byte {
	var ip gopacket.NetworkLayer
	var net []gopacket.SerializableLayer
	if dst.Is4() {
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ip, net = l, []gopacket.SerializableLayer{l}
	} else {
		if proto == layers.IPProtocolICMPv4 {
			proto = layers.IPProtocolICMPv6
		}
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ip, net = l, []gopacket.SerializableLayer{l}
	}
	var top []gopacket.SerializableLayer
	switch proto {
	case layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), Seq: 1, SYN: true, Window: 64240}
		_ = t.SetNetworkLayerForChecksum(ip)
		top = []gopacket.SerializableLayer{t}
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
		_ = u.SetNetworkLayerForChecksum(ip)
		top = []gopacket.SerializableLayer{u, gopacket.Payload("probe")}
	case layers.IPProtocolICMPv4:
		top = []gopacket.SerializableLayer{&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}}
	case layers.IPProtocolICMPv6:
		i := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		_ = i.SetNetworkLayerForChecksum(ip)
		top = []gopacket.SerializableLayer{i, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1}}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, append(net, top...)...); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// rawSendPaced is rawSend in bursts of 64 a millisecond apart: a steady
// stream the gateway reads as it comes, not one burst that overruns a
// queue before anything counts it.
func rawSendPaced(h *netlab.Host, pkts [][]byte) error {
	for len(pkts) > 0 {
		n := min(64, len(pkts))
		if err := rawSend(h, pkts[:n]); err != nil {
			return err
		}
		pkts = pkts[n:]
		time.Sleep(time.Millisecond)
	}
	return nil
}

// stepWiringFault (TUN): a reload that adds two health-checked services on
// new VIPs, refused because a step of its network wiring really fails: a
// route it must add is taken (the test plants one in the gateway's
// namespace), once at the first VIP's route and once at the second's,
// after the first VIP's wiring was made. Each time: the error names the
// step; adm -S, the routes, rules, proxy neighbour entries and nftables,
// and the health checks' targets (/metrics) are as before; and a probe
// that requests every VIP (L4 v4 and v6, L7) all along never fails. With
// the planted route gone the same reload goes through, and reloading the
// old file takes it all back.
func stepWiringFault(ctx context.Context, e *Env) (string, error) {
	p := e.Lab.Topo.Plan
	orig, err := os.ReadFile(e.Config)
	if err != nil {
		return "", err
	}
	defer os.WriteFile(e.Config, orig, 0o600)
	added := ""
	vips := []string{"198.18.0.12", "198.18.0.13"}
	for i, v := range vips {
		added += fmt.Sprintf("  - name: fault-%d\n    proto: tcp\n    vip: %s:80\n    scheduler: rr\n"+
			"    health: {type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}\n    backends: [{addr: 198.18.2.%d:80}]\n", i, v, 11+i)
	}
	changed := strings.Replace(string(orig), "masquerade:\n", added+"masquerade:\n", 1)
	if changed == string(orig) {
		return "", errors.New("demo config: no masquerade section to add services before")
	}
	snapshot := func() (string, error) {
		s, err := e.Adm(ctx, "-S", "-n")
		if err != nil {
			return "", err
		}
		wiring, err := e.gw.Run(ctx, "sh", "-c", "ip -4 route show table all; ip -6 route show table all | grep -v fe80; "+
			"ip -4 rule; ip -6 rule; ip neigh show proxy; nft list ruleset")
		if err != nil {
			return "", err
		}
		m, err := e.metrics(ctx)
		if err != nil {
			return "", err
		}
		var health []string
		for l := range strings.Lines(m) {
			if strings.HasPrefix(l, "vsgate_health_check_up{") {
				health = append(health, l)
			}
		}
		if len(health) == 0 {
			return "", errors.New("/metrics lists no health check target: the demo's checks should be there")
		}
		lines := strings.Split(string(wiring), "\n")
		slices.Sort(lines)
		slices.Sort(health)
		return s + "--\n" + strings.Join(lines, "\n") + "--\n" + strings.Join(health, ""), nil
	}
	// The probe: every VIP, one after another, until the step ends.
	targets := []string{fmt.Sprintf("http://%s/probe", netip.AddrPortFrom(p.VIP4, 80)),
		fmt.Sprintf("http://%s/probe", netip.AddrPortFrom(p.VIP6, 80)),
		fmt.Sprintf("http://%s/sales/probe", netip.AddrPortFrom(p.VIP4, 81))}
	stop := make(chan struct{})
	type probeResult struct {
		ok     int
		failed []string
	}
	probed := make(chan probeResult, 1)
	go func() {
		var r probeResult
		defer func() { probed <- r }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// A request that is answered counts, however long it took
			// (a SYN lost and sent again costs 1 s): the probe asks
			// whether traffic flows, not how fast.
			if _, err := e.getWithin(ctx, targets[i%len(targets)], newConnBound); err != nil {
				r.failed = append(r.failed, err.Error())
			} else {
				r.ok++
			}
		}
	}()
	stopProbe := func() probeResult {
		close(stop)
		return <-probed
	}
	var lines []string
	for i, v := range vips {
		planted := v + "/32"
		if out, err := e.gw.Run(ctx, "ip", "route", "add", "blackhole", planted); err != nil {
			stopProbe()
			return string(out), err
		}
		before, err := snapshot()
		if err != nil {
			stopProbe()
			return "", err
		}
		if err := os.WriteFile(e.Config, []byte(changed), 0o600); err != nil {
			stopProbe()
			return "", err
		}
		out, rerr := e.admCommand(ctx, "reload")
		after, err := snapshot()
		if _, derr := e.gw.Run(ctx, "ip", "route", "del", "blackhole", planted); derr != nil && err == nil {
			err = derr
		}
		if err != nil {
			stopProbe()
			return "", err
		}
		step := "route " + v + " dev vsg0"
		if rerr == nil || !strings.Contains(rerr.Error(), step) || !strings.Contains(rerr.Error(), "file exists") {
			stopProbe()
			return out, fmt.Errorf("the reload with %s taken: want it refused naming %q (file exists), got %v", v, step, rerr)
		}
		if after != before {
			stopProbe()
			return "", fmt.Errorf("the reload refused at %q changed the gateway:\n%s\nwas:\n%s", step, after, before)
		}
		why := rerr.Error()
		if k := strings.Index(why, step); k >= 0 {
			why = firstLine(why[k:])
		}
		where := "the first new VIP's route"
		if i > 0 {
			where = "the second new VIP's route, after the first one's wiring was made"
		}
		lines = append(lines, fmt.Sprintf("%s taken, failing %s: refused (%s); -S, wiring and health targets as before", v, where, why))
	}
	if err := os.WriteFile(e.Config, []byte(changed), 0o600); err != nil {
		stopProbe()
		return "", err
	}
	if out, err := e.admCommand(ctx, "reload"); err != nil {
		stopProbe()
		return out, fmt.Errorf("the reload with nothing in its way: %w", err)
	}
	for i, v := range vips {
		rep, err := e.get(ctx, "http://"+v+":80/fault")
		if err != nil || rep.Backend != fmt.Sprintf("b%d", i+1) {
			stopProbe()
			return "", fmt.Errorf("new VIP %s: answered by %q, want b%d: %v", v, rep.Backend, i+1, err)
		}
	}
	if err := os.WriteFile(e.Config, orig, 0o600); err != nil {
		stopProbe()
		return "", err
	}
	if out, err := e.admCommand(ctx, "reload"); err != nil {
		stopProbe()
		return out, fmt.Errorf("reloading the old file: %w", err)
	}
	r := stopProbe()
	if len(r.failed) > 0 {
		return strings.Join(lines, "\n"), fmt.Errorf("the probe failed %d times (%d answered): %s", len(r.failed), r.ok, r.failed[0])
	}
	lines = append(lines, fmt.Sprintf("then the same reload with nothing in the way: %s and %s answer; the old file back; the probe of every VIP answered %d times, failed none", vips[0], vips[1], r.ok))
	return strings.Join(lines, "\n"), nil
}
