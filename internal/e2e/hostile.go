package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vsgate/vsgate/internal/netlab"
)

// Hostile traffic from the client's namespace: packets written whole,
// their IP header included (a raw IPPROTO_RAW socket), so their source may
// be any address: what an attacker on the internet sends. Every flood here
// is bounded in count.

// rawTCP builds an IPv4 TCP segment from src to dst; badSum spoils its
// checksum.
func rawTCP(src, dst netip.AddrPort, flags uint8, seq, ack uint32, badSum bool) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: 64240,
		SYN: flags&0x02 != 0, ACK: flags&0x10 != 0, RST: flags&0x04 != 0}
	_ = t.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, t); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	if badSum {
		b[20+16] ^= 0x5a
	}
	return b
}

// rawSend writes IP packets, headers included, from inside host h: an
// IPPROTO_RAW socket of each packet's family, which takes the header
// whole (for IPv6 too: IPPROTO_RAW implies IPV6_HDRINCL).
func rawSend(h *netlab.Host, pkts [][]byte) error {
	return h.Do(func() error {
		var fds [2]int // IPv4, IPv6; 0: not opened
		defer func() {
			for _, fd := range fds {
				if fd > 0 {
					unix.Close(fd)
				}
			}
		}()
		for _, p := range pkts {
			v6 := p[0]>>4 == 6
			fam, i := unix.AF_INET, 0
			if v6 {
				fam, i = unix.AF_INET6, 1
			}
			if fds[i] == 0 {
				fd, err := unix.Socket(fam, unix.SOCK_RAW, unix.IPPROTO_RAW)
				if err != nil {
					return fmt.Errorf("raw socket: %w", err)
				}
				fds[i] = fd
			}
			var sa unix.Sockaddr
			if v6 {
				sa = &unix.SockaddrInet6{Addr: [16]byte(p[24:40])}
			} else {
				sa = &unix.SockaddrInet4{Addr: [4]byte(p[16:20])}
			}
			if err := unix.Sendto(fds[i], p, 0, sa); err != nil {
				return fmt.Errorf("raw send: %w", err)
			}
		}
		return nil
	})
}

// flowStates counts the gateway's flows by state (vsgate adm -L -c -n),
// those whose source is in from only.
func (e *Env) flowStates(ctx context.Context, from netip.Prefix) (map[string]int, error) {
	out, err := e.Adm(ctx, "-L", "-n", "-c")
	if err != nil {
		return nil, err
	}
	states := map[string]int{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != "TCP" && f[0] != "UDP") {
			continue
		}
		if src, err := netip.ParseAddrPort(f[3]); err == nil && from.Contains(src.Addr()) {
			states[f[2]]++
		}
	}
	return states, nil
}

// stepSpoofedHandshakes: 2,000 spoofed sources each send a SYN and then an
// ACK (half with a bad checksum, half with a good one that acknowledges a
// guess): no flow of theirs becomes ESTABLISHED, and a real client gets
// its answers while they come.
func stepSpoofedHandshakes(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 80)
	spoofed := netip.MustParsePrefix("198.18.0.128/25")
	r := rand.New(rand.NewPCG(7, 17))
	const sources = 2000
	var syns, acks [][]byte
	for i := range sources {
		a := spoofed.Addr().As4()
		a[3] = byte(128 + r.IntN(127))
		src := netip.AddrPortFrom(netip.AddrFrom4(a), uint16(10000+i))
		seq := r.Uint32()
		syns = append(syns, rawTCP(src, vip, 0x02, seq, 0, false))
		acks = append(acks, rawTCP(src, vip, 0x10, seq+1, r.Uint32(), i%2 == 0))
	}
	done := make(chan error, 1)
	go func() {
		if err := rawSend(e.client, syns); err != nil {
			done <- err
			return
		}
		done <- rawSend(e.client, acks)
	}()
	// The real client, while the flood runs.
	var served int
	for i := range 10 {
		if _, err := e.get(ctx, "http://"+vip.String()+"/during-flood"); err != nil {
			return "", fmt.Errorf("a real client's request %d during the flood: %w", i+1, err)
		}
		served++
	}
	if err := <-done; err != nil {
		return "", err
	}
	time.Sleep(200 * time.Millisecond) // the last SYN-ACKs and ACKs through
	states, err := e.flowStates(ctx, spoofed)
	if err != nil {
		return "", err
	}
	bad, _ := e.metricValue(ctx, `vsgate_drops_total{reason="bad_checksum"}`)
	out, _ := e.metricValue(ctx, `vsgate_drops_total{reason="tcp_out_of_window"}`)
	detail := fmt.Sprintf("%d spoofed SYN+ACK pairs; the spoofed sources' flows by state: %v; drops: bad_checksum %v, tcp_out_of_window %v; the real client got %d of 10 answers meanwhile",
		sources, states, bad, out, served)
	if states["ESTABLISHED"] != 0 {
		return detail, fmt.Errorf("%d spoofed flows ESTABLISHED", states["ESTABLISHED"])
	}
	// Some bad-checksum ACKs reach vsgate marked as checked: veth hands
	// on a packet sent without a checksum offload as CHECKSUM_UNNECESSARY
	// (virtio-net DATA_VALID), as a NIC that checked it would, and vsgate
	// trusts the kernel's word as conntrack does. They still establish
	// nothing: the real server drops them.
	if bad+out == 0 {
		return detail, fmt.Errorf("no bad-checksum or blind ACK was counted")
	}
	return detail, nil
}

// stepBlindRSTs: 22 live connections to the line service, 10,000 RSTs with
// random sequence numbers at their 4-tuples: every connection still
// answers.
func stepBlindRSTs(ctx context.Context, e *Env) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 7)
	type conn struct {
		c  net.Conn
		rd *bufio.Reader
	}
	var conns []conn
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	var rsts [][]byte
	r := rand.New(rand.NewPCG(3, 5))
	for range 22 {
		c, err := e.client.DialContext(ctx, "tcp", vip.String())
		if err != nil {
			return "", err
		}
		conns = append(conns, conn{c, bufio.NewReader(c)})
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		for range 10000 / 22 {
			rsts = append(rsts, rawTCP(netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), vip, 0x04, r.Uint32(), 0, false))
		}
	}
	say := func(c conn, line string) error {
		_ = c.c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c.c, line+"\n"); err != nil {
			return err
		}
		got, err := c.rd.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasSuffix(strings.TrimSpace(got), line) {
			return fmt.Errorf("answer %q", got)
		}
		return nil
	}
	for i, c := range conns {
		if err := say(c, fmt.Sprintf("before %d", i)); err != nil {
			return "", fmt.Errorf("connection %d before the RSTs: %w", i, err)
		}
	}
	if err := rawSend(e.client, rsts); err != nil {
		return "", err
	}
	time.Sleep(100 * time.Millisecond)
	broken := 0
	for i, c := range conns {
		if err := say(c, fmt.Sprintf("after %d", i)); err != nil {
			broken++
		}
	}
	out, _ := e.metricValue(ctx, `vsgate_drops_total{reason="tcp_out_of_window"}`)
	detail := fmt.Sprintf("%d RSTs with random sequence numbers at 22 live connections; broken: %d; tcp_out_of_window drops now %v", len(rsts), broken, out)
	if broken != 0 {
		return detail, fmt.Errorf("%d connections broken", broken)
	}
	return detail, nil
}

// stepDrops: every drop is visible in one place: vsgate adm drops lists
// the engine's drops by reason (the floods above made some) and the
// device's own loss counters, which /metrics exports too.
func stepDrops(ctx context.Context, e *Env) (string, error) {
	out, err := e.Adm(ctx, "drops")
	if err != nil {
		return out, err
	}
	m, err := e.metrics(ctx)
	if err != nil {
		return out, err
	}
	want := "ring_full"
	if !e.opts.AFPacket {
		want = "tx_dropped"
	}
	if !strings.Contains(out, "tcp_out_of_window") || !strings.Contains(out, want) {
		return out, fmt.Errorf("vsgate adm drops lacks tcp_out_of_window or %s", want)
	}
	if e.opts.XDP {
		// Which data path each interface took is on /metrics too.
		for _, ifc := range []string{e.Lab.IfName(e.Lab.Topo.Plan.GatewayOut), e.Lab.IfName(e.Lab.Topo.Plan.GatewayIn)} {
			if series := `vsgate_device_data_path{interface="` + ifc + `",path="afxdp-copy"} 1`; !strings.Contains(m, series) {
				return out, fmt.Errorf("/metrics has no %s", series)
			}
		}
		// A socket and a worker per queue of each interface, and by now
		// every one of them has read packets: the flows spread.
		read := 0.0
		for w := range 2 * xdpQueues {
			n, err := e.metricValue(ctx, fmt.Sprintf(`vsgate_worker_packets_total{worker="%d"}`, w))
			if err != nil {
				return out, err
			}
			if n == 0 {
				return out, fmt.Errorf("worker %d of %d (one per queue of the two interfaces) read no packet", w, 2*xdpQueues)
			}
			read += n
		}
		// Forwarded frames left from the chunks they arrived in: what
		// was copied to be sent is what vsgate made itself.
		copied, err := e.samples(ctx, "vsgate_device_frames_copied_total")
		if err != nil {
			return out, err
		}
		total := 0.0
		for _, v := range copied {
			total += v
		}
		if len(copied) != 2 || total*100 > read {
			return out, fmt.Errorf("frames copied to be sent %v, of %v read: forwarded frames are to be sent from where they arrived", copied, read)
		}
	}
	if !strings.Contains(m, `vsgate_device_drops_total{counter="`+want+`"`) {
		return out, fmt.Errorf("/metrics has no vsgate_device_drops_total{counter=%q}", want)
	}
	return out, nil
}

// rawUDPFragments cuts a UDP datagram from src to dst into fragments
// carrying at most size bytes of data each: IPv4 fragments, or IPv6 ones
// with a fragment header (RFC 8200 §4.5), by the addresses' family.
func rawUDPFragments(src, dst netip.AddrPort, payload []byte, size int, id uint32) [][]byte {
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice()), Id: uint16(id)}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	if src.Addr().Is4() {
		_ = u.SetNetworkLayerForChecksum(ip4)
	} else {
		_ = u.SetNetworkLayerForChecksum(&layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, SrcIP: ip6.SrcIP, DstIP: ip6.DstIP})
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, u, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	body := buf.Bytes()
	var out [][]byte
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		fb := gopacket.NewSerializeBuffer()
		if src.Addr().Is4() {
			fip := *ip4
			fip.FragOffset = uint16(off / 8)
			if end < len(body) {
				fip.Flags = layers.IPv4MoreFragments
			}
			_ = gopacket.SerializeLayers(fb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, &fip, gopacket.Payload(body[off:end]))
		} else {
			fr := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: uint16(off / 8), MoreFragments: end < len(body), Identification: id}
			fip := *ip6
			_ = gopacket.SerializeLayers(fb, gopacket.SerializeOptions{FixLengths: true}, &fip, fr, gopacket.Payload(body[off:end]))
		}
		out = append(out, append([]byte(nil), fb.Bytes()...))
	}
	return out
}

// udpAsk sends the fragments (built for the socket's local port) with
// rawSend and waits for the echo on the socket.
func (e *Env) udpAsk(ctx context.Context, pc net.PacketConn, frags [][]byte, want string, wait time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := rawSend(e.client, frags); err != nil {
		return 0, err
	}
	_ = pc.SetReadDeadline(start.Add(wait))
	buf := make([]byte, 9000)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return time.Since(start), fmt.Errorf("no answer within %v: %w", wait, err)
		}
		if strings.HasSuffix(string(buf[:n]), want) {
			return time.Since(start), nil
		}
	}
}

// reassembled reads a real server's IPv4 reassembly counter (ReasmReqds:
// fragments its kernel received for reassembly).
func reassembled(ctx context.Context, h *netlab.Host) (int, error) {
	return snmpCounter(ctx, h, "Ip:", "ReasmReqds")
}

// snmpCounter reads counter name of section ("Ip:", "Tcp:", ...) from
// host h's /proc/net/snmp.
func snmpCounter(ctx context.Context, h *netlab.Host, section, name string) (int, error) {
	out, err := h.Run(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != section {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				var v int
				_, err := fmt.Sscan(f[i], &v)
				return v, err
			}
		}
	}
	return 0, fmt.Errorf("no %s %s in /proc/net/snmp", section, name)
}

// stepFragments: a datagram whose fragments come in reverse order is
// answered; then a storm of 20,000 incomplete datagrams (random
// identifiers, sources in 200 /24s) with a real fragmented request in the middle:
// the request is answered within 1 s, and the real servers' reassembly
// sees no fragment of the storm.
func stepFragments(ctx context.Context, e *Env) (string, error) { return e.fragments(ctx, false) }

// stepFragments6 is stepFragments over IPv6: sources in 200 /64s, the
// real servers' Ip6ReasmReqds.
func stepFragments6(ctx context.Context, e *Env) (string, error) { return e.fragments(ctx, true) }

// fragments runs stepFragments in one family.
func (e *Env) fragments(ctx context.Context, v6 bool) (string, error) {
	vip := netip.AddrPortFrom(e.Lab.Topo.Plan.VIP4, 53)
	network, local, fam, nets := "udp4", "198.18.0.2:0", "", "/24s"
	// From 200 prefixes other than the client's: the storm of the many
	// (one prefix's share of the pool is a sixteenth of it).
	source := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{198, 18, byte(10 + i%200), byte(1 + i/200%250)})
	}
	reasm := func(h *netlab.Host) (int, error) { return reassembled(ctx, h) }
	if v6 {
		vip = netip.AddrPortFrom(e.Lab.Topo.Plan.VIP6, 53)
		network, local, fam, nets = "udp6", "[2001:db8::2]:0", "IPv6 ", "/64s"
		source = func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, byte(10 + i%200), 0, 0, 0, 0, 0, 0, 0, byte(1 + i/200%100)})
		}
		reasm = func(h *netlab.Host) (int, error) { return snmp6Counter(ctx, h, "Ip6ReasmReqds") }
	}
	pc, err := e.client.ListenPacket(network, local)
	if err != nil {
		return "", err
	}
	defer pc.Close()
	me := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	me = netip.AddrPortFrom(me.Addr().Unmap(), me.Port())
	payload := strings.Repeat("r", 3000)
	f := rawUDPFragments(me, vip, []byte(payload), 1200, 4242)
	slices.Reverse(f)
	took, err := e.udpAsk(ctx, pc, f, payload, 3*time.Second)
	if err != nil {
		return "", fmt.Errorf("reversed %sfragments: %w", fam, err)
	}
	detail := fmt.Sprintf("a 3000-byte %sdatagram in %d fragments, last first: answered in %v", fam, len(f), took.Round(time.Millisecond))

	before := map[string]int{}
	for _, b := range e.Lab.Topo.Plan.Backends {
		if before[b], err = reasm(e.Lab.MustHost(b)); err != nil {
			return detail, err
		}
	}
	r := rand.New(rand.NewPCG(11, 13))
	var storm [][]byte
	for i := range 20000 {
		src := netip.AddrPortFrom(source(i), uint16(20000+i%1000))
		storm = append(storm, rawUDPFragments(src, vip, []byte(strings.Repeat("s", 1000)), 600, r.Uint32())[0])
	}
	half := len(storm) / 2
	if err := rawSend(e.client, storm[:half]); err != nil {
		return detail, err
	}
	// The storm's first half is in vsgate's fragment store, not queued in
	// front of the real request: the raw sender writes faster than a
	// device queue drains (an AF_PACKET ring holds 128 frames), and what
	// is measured is the store, not the queue.
	time.Sleep(100 * time.Millisecond)
	legit := "in the storm " + strings.Repeat("x", 2500)
	took, err = e.udpAsk(ctx, pc, rawUDPFragments(me, vip, []byte(legit), 1200, 777), legit, time.Second)
	if err != nil {
		return detail, fmt.Errorf("the real %srequest in the storm: %w", fam, err)
	}
	if err := rawSend(e.client, storm[half:]); err != nil {
		return detail, err
	}
	time.Sleep(100 * time.Millisecond)
	var seen []string
	for _, b := range e.Lab.Topo.Plan.Backends {
		n, err := reasm(e.Lab.MustHost(b))
		if err != nil {
			return detail, err
		}
		seen = append(seen, fmt.Sprintf("%s +%d", b, n-before[b]))
		if n-before[b] > 2*3 { // the real request's fragments, and its answer's are not counted here
			return detail, fmt.Errorf("%s reassembled %d %sfragments during the storm", b, n-before[b], fam)
		}
	}
	inc, _ := e.metricValue(ctx, `vsgate_drops_total{reason="fragment_incomplete"}`)
	bud, _ := e.metricValue(ctx, `vsgate_drops_total{reason="fragment_budget"}`)
	detail += fmt.Sprintf("\n20,000 incomplete %sdatagrams from 200 %s, a real fragmented request in the middle: answered in %v; real servers' reassembly during the storm: %s; held fragments given up so far: %v incomplete, %v over budget",
		fam, nets, took.Round(time.Millisecond), strings.Join(seen, ", "), inc, bud)
	return detail, nil
}

// snmp6Counter reads counter name from host h's /proc/net/snmp6.
func snmp6Counter(ctx context.Context, h *netlab.Host, name string) (int, error) {
	out, err := h.Run(ctx, "cat", "/proc/net/snmp6")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			var v int
			_, err := fmt.Sscan(f[1], &v)
			return v, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/net/snmp6", name)
}
