package nat_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vsgate/vsgate/nat"
	"github.com/vsgate/vsgate/packet"
)

// echo builds an ICMP echo request or reply (v4 or v6).
func echo(src, dst netip.Addr, id, seq uint16, reply bool) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		gopacket.SerializeLayers(buf, opts, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}, gopacket.Payload("ping"))
	} else {
		typ := uint8(layers.ICMPv6TypeEchoRequest)
		if reply {
			typ = layers.ICMPv6TypeEchoReply
		}
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		ic.SetNetworkLayerForChecksum(ip)
		gopacket.SerializeLayers(buf, opts, ip, ic, &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}, gopacket.Payload("ping"))
	}
	return buf.Bytes()
}

// TestICMPEchoMasquerade: a ping from the server subnet leaves from the
// masquerade address with its identifier kept (or changed when taken), and
// the reply comes back to the pinging host with the original identifier.
func TestICMPEchoMasquerade(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	out := outside.Addr()
	var p packet.Parsed
	ping := echo(rips[0], out, 77, 1, false)
	if v := one(w, ping); v != nat.Forward {
		t.Fatalf("ping: %v", v)
	}
	checksumsValid(t, ping)
	packet.Parse(ping, &p)
	if netip.AddrFrom16(p.Src).Unmap() != masqTo || p.ICMPID != 77 {
		t.Fatalf("ping left from %v id %d", netip.AddrFrom16(p.Src).Unmap(), p.ICMPID)
	}
	// A second host with the same identifier gets another one.
	ping2 := echo(rips[1], out, 77, 1, false)
	one(w, ping2)
	packet.Parse(ping2, &p)
	id2 := p.ICMPID
	if id2 == 77 {
		t.Fatalf("two hosts share identifier 77 on the masquerade address")
	}
	checksumsValid(t, ping2)
	// Replies find their way back.
	for _, tc := range []struct {
		id   uint16
		host netip.Addr
	}{{77, rips[0]}, {id2, rips[1]}} {
		r := echo(out, masqTo, tc.id, 1, true)
		if v := one(w, r); v != nat.Forward {
			t.Fatalf("reply id %d: %v", tc.id, v)
		}
		checksumsValid(t, r)
		packet.Parse(r, &p)
		if netip.AddrFrom16(p.Dst).Unmap() != tc.host || p.ICMPID != 77 {
			t.Fatalf("reply id %d went to %v id %d, want %v id 77", tc.id, netip.AddrFrom16(p.Dst).Unmap(), p.ICMPID, tc.host)
		}
	}
}

// TestICMPv6PacketTooBig: a router's "packet too big" about a packet the
// gateway forwarded to a v6 real server reaches the client from the VIP,
// quoting the client's own packet, with the ICMPv6 checksum valid.
func TestICMPv6PacketTooBig(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	b := tcp(client6, vip6, syn, 0)
	one(w, b)
	_, rip := endpoints(t, b)
	quote := tcp(client6, rip, ack, 0)
	router := netip.MustParseAddr("2001:db8:2::1")
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.IP(router.AsSlice()), DstIP: net.IP(client6.Addr().AsSlice())}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic,
		gopacket.Payload(append([]byte{0, 0, 5, 0}, quote...)))
	msg := buf.Bytes()
	if v := one(w, msg); v != nat.Forward {
		t.Fatalf("PTB: %v", v)
	}
	checksumsValid(t, msg)
	var p, in packet.Parsed
	packet.Parse(msg, &p)
	if r := packet.ParseICMPError(msg, &p, &in); r != packet.ReasonNone {
		t.Fatal(r)
	}
	if netip.AddrFrom16(p.Src) != vip6.Addr() || netip.AddrPortFrom(netip.AddrFrom16(in.Dst), in.DstPort) != vip6 {
		t.Fatalf("PTB from %v quoting a packet to %v", netip.AddrFrom16(p.Src), netip.AddrFrom16(in.Dst))
	}
}

// TestIPv6Fragments: a fragmented UDP datagram over IPv6 gets its first
// fragment's translation on the later fragments.
func TestIPv6Fragments(t *testing.T) {
	cfg := nat.Config{Capacity: 64, Services: []nat.Service{{Proto: packet.ProtoUDP, VIP: vip6.Addr(), Port: 53, Scheduler: "rr",
		Backends: []nat.Backend{{Addr: rip6, Port: 5353, Weight: 1}}}}}
	e, err := nat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	whole := udp(client6, netip.AddrPortFrom(vip6.Addr(), 53), 2000)
	body := whole[40:]
	var frags [][]byte
	for off := 0; off < len(body); off += 1232 {
		end := min(off+1232, len(body))
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment,
			SrcIP: net.IP(client6.Addr().AsSlice()), DstIP: net.IP(vip6.Addr().AsSlice())}
		fh := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: uint16(off / 8), MoreFragments: end < len(body), Identification: 99}
		buf := gopacket.NewSerializeBuffer()
		gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ip, fh, gopacket.Payload(body[off:end]))
		frags = append(frags, append([]byte(nil), buf.Bytes()...))
	}
	frags, v := through(w, frags)
	var p packet.Parsed
	for i, f := range frags {
		if v[i] != nat.Forward {
			t.Fatalf("fragment %d: %v", i, v[i])
		}
		packet.Parse(f, &p)
		if netip.AddrFrom16(p.Dst) != rip6 {
			t.Fatalf("fragment %d went to %v", i, netip.AddrFrom16(p.Dst))
		}
	}
	// The datagram reassembled from the translated fragments checks out.
	var re []byte
	for _, f := range frags {
		packet.Parse(f, &p)
		re = append(re, f[p.L4Off:p.End]...)
	}
	hdr := append([]byte(nil), frags[0][:40]...)
	hdr[6] = byte(layers.IPProtocolUDP)
	hdr[4], hdr[5] = byte(len(re)>>8), byte(len(re))
	checksumsValid(t, append(hdr, re...))
}

// timeExceeded builds an ICMPv4 time exceeded from router to dst quoting
// the packet quote (as sent, translated).
func timeExceeded(router, dst netip.Addr, quote []byte) []byte {
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeTimeExceeded, 0)}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP(router.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic, gopacket.Payload(quote))
	return buf.Bytes()
}

// TestICMPErrorFromRouter: an error from a router on the way, not from
// the flow's peer, gets only the address translation its direction has,
// as Linux's NAT gives it. Behind the masquerade, a traceroute's time
// exceeded keeps the router as its source (only the destination goes back
// to the inside host), so traceroute shows the hops. Through a NAT
// service, an error from a router between gateway and real server about a
// client's packet reaches the client from the VIP, as the server's own
// packets do.
func TestICMPErrorFromRouter(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	router := netip.MustParseAddr("198.19.0.1")

	host := netip.AddrPortFrom(rips[0], 33434)
	far := netip.MustParseAddrPort("198.19.9.9:33435")
	probe := udp(host, far, 8)
	if v := one(w, probe); v != nat.Forward {
		t.Fatalf("probe: %v", v)
	}
	msg := timeExceeded(router, masqTo, probe)
	if v := one(w, msg); v != nat.Forward {
		t.Fatalf("time exceeded: %v", v)
	}
	checksumsValid(t, msg)
	var p packet.Parsed
	packet.Parse(msg, &p)
	if src, dst := netip.AddrFrom16(p.Src).Unmap(), netip.AddrFrom16(p.Dst).Unmap(); src != router || dst != rips[0] {
		t.Fatalf("masquerade: error goes %v -> %v, want %v -> %v", src, dst, router, rips[0])
	}

	syn := tcp(client, vip, packet.TCPFlagSYN, 0)
	one(w, syn) // now client -> real server, as the router quotes it
	msg = timeExceeded(router, client.Addr(), syn)
	if v := one(w, msg); v != nat.Forward {
		t.Fatalf("time exceeded on the reply path: %v", v)
	}
	checksumsValid(t, msg)
	packet.Parse(msg, &p)
	if src, dst := netip.AddrFrom16(p.Src).Unmap(), netip.AddrFrom16(p.Dst).Unmap(); src != vip.Addr() || dst != client.Addr() {
		t.Fatalf("NAT: error goes %v -> %v, want %v -> %v", src, dst, vip.Addr(), client.Addr())
	}
}

// TestICMPFragNeeded: a router between gateway and real server reports
// "fragmentation needed" for a reply the server sent; the client must get
// it from the VIP about its own connection (client <- VIP:80), so path-MTU
// discovery works through the gateway.
func TestICMPFragNeeded(t *testing.T) {
	e := engine(t, nat.ModeNAT, 64)
	w := e.NewWorker()
	b := tcp(client, vip, syn, 0)
	one(w, b)
	_, rip := endpoints(t, b)
	// The gateway forwarded client -> rip; a router on the way reports
	// "fragmentation needed" back to the client, quoting that packet.
	quote := tcp(client, rip, ack, 0)
	router := netip.MustParseAddr("198.18.2.1")
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4}
	ip.SrcIP, ip.DstIP = net.IP(router.AsSlice()), net.IP(client.Addr().AsSlice())
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic, gopacket.Payload(quote))
	msg := buf.Bytes()
	if v := one(w, msg); v != nat.Forward {
		t.Fatalf("ICMP error verdict %v, drops %d", v, e.Drops(nat.DropICMPNoFlow))
	}
	checksumsValid(t, msg)
	var p, in packet.Parsed
	packet.Parse(msg, &p)
	if r := packet.ParseICMPError(msg, &p, &in); r != packet.ReasonNone {
		t.Fatal(r)
	}
	outerSrc := netip.AddrFrom16(p.Src).Unmap()
	innerDst := netip.AddrPortFrom(netip.AddrFrom16(in.Dst).Unmap(), in.DstPort)
	innerSrc := netip.AddrPortFrom(netip.AddrFrom16(in.Src).Unmap(), in.SrcPort)
	if outerSrc != vip.Addr() || innerDst != vip || innerSrc != client {
		t.Fatalf("ICMP error: outer from %v, quote %v > %v; want from %v, quote %v > %v", outerSrc, innerSrc, innerDst, vip.Addr(), client, vip)
	}
	// An error about nothing we track is dropped.
	quote = tcp(client, netip.MustParseAddrPort("198.18.2.99:1"), ack, 0)
	buf = gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic, gopacket.Payload(quote))
	if v := one(w, buf.Bytes()); v != nat.Drop || e.Drops(nat.DropICMPNoFlow) != 1 {
		t.Fatalf("stray ICMP error: verdict %v", v)
	}
}
